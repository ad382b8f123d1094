"""The DuckDB warehouse: one file, one table per asset, partition writes that replace.

Pure storage code (no Dagster): the Dagster resource in ``defs/resources.py`` wraps it.

Every partitioned table has a ``date`` column. Writing a date range deletes that range
and inserts the new rows inside one transaction, so a re-run never duplicates rows and a
run killed half-way leaves the previous rows (DESIGN.md, "Writes of a partition").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

# DuckDB type of each numpy dtype kind we store. float32 stays REAL: Qlib stores and
# computes its fields in float32 (semantics §1.5), widening would change nothing but size.
_DUCKDB_TYPES = {
    np.dtype("float32"): "REAL",
    np.dtype("float64"): "DOUBLE",
    np.dtype("int64"): "BIGINT",
    np.dtype("int32"): "INTEGER",
    np.dtype("bool"): "BOOLEAN",
}


class WarehouseError(RuntimeError):
    """A read or write of the warehouse that cannot be done (missing table, busy file)."""


def duckdb_type(series: pd.Series) -> str:
    """The DuckDB column type used to store ``series``."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return "DATE" if series.name == "date" else "TIMESTAMP"
    return _DUCKDB_TYPES.get(series.dtype, "VARCHAR")


@dataclass(frozen=True)
class Warehouse:
    """A DuckDB file holding the pipeline's tables."""

    path: Path

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file for one unit of work and close it again.

        Connections are short-lived on purpose: DuckDB lets one process write a file at a
        time, so holding a connection across a run would lock the UI and other runs out.
        """
        if read_only and not self.path.exists():
            raise WarehouseError(f"{self.path}: the warehouse does not exist yet; materialise raw_ohlcv first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as error:
            raise WarehouseError(
                f"{self.path}: cannot open the warehouse ({error}). Another process (a second run or a "
                "notebook) holds it; the pipeline writes from one process at a time."
            ) from error
        try:
            yield connection
        finally:
            connection.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection whose statements commit together or not at all."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def table_exists(self, table: str) -> bool:
        if not self.path.exists():
            return False
        with self.connect(read_only=True) as con:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()
        return bool(found and found[0])

    def replace_date_range(
        self,
        table: str,
        frame: pd.DataFrame,
        start: pd.Timestamp,
        end: pd.Timestamp,
        key: Sequence[str] = ("instrument", "date"),
    ) -> int:
        """Replace the rows of ``table`` with ``start <= date <= end`` by ``frame``, atomically.

        ``frame`` must hold only dates inside the range (a row outside it would survive the
        next re-run of its own partition as a duplicate). Creates the table from the
        frame's dtypes on first use. Returns the number of rows written.
        """
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        if len(frame):
            dates = pd.to_datetime(frame["date"])
            if dates.min() < start or dates.max() > end:
                raise WarehouseError(
                    f"{table}: rows dated {dates.min().date()}..{dates.max().date()} fall outside the "
                    f"partition range {start.date()}..{end.date()} being written"
                )
        columns = ", ".join(f'"{name}" {duckdb_type(frame[name])}' for name in frame.columns)
        with self.transaction() as con:
            con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({columns}, PRIMARY KEY ({", ".join(key)}))')
            con.execute(f'DELETE FROM "{table}" WHERE date BETWEEN ? AND ?', [start.date(), end.date()])
            if len(frame):
                con.register("incoming_rows", frame)
                names = ", ".join(f'"{name}"' for name in frame.columns)
                con.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM incoming_rows')
        return len(frame)

    def replace_table(self, table: str, frame: pd.DataFrame) -> int:
        """Replace the whole of an unpartitioned table by ``frame`` in one transaction."""
        with self.transaction() as con:
            con.register("incoming_rows", frame)
            con.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM incoming_rows')
        return len(frame)

    def query(self, sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        """Run a read-only query and return its rows as a DataFrame."""
        with self.connect(read_only=True) as con:
            try:
                return con.execute(sql, list(params)).df()
            except duckdb.CatalogException as error:
                raise WarehouseError(f"{self.path}: {error}") from error

    def read_dates(
        self, table: str, start: pd.Timestamp | None, end: pd.Timestamp | None, columns: str = "*"
    ) -> pd.DataFrame:
        """Rows of ``table`` with ``start <= date <= end`` (open bounds when None), sorted."""
        clauses, params = [], []
        if start is not None:
            clauses.append("date >= ?")
            params.append(pd.Timestamp(start).date())
        if end is not None:
            clauses.append("date <= ?")
            params.append(pd.Timestamp(end).date())
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        frame = self.query(f'SELECT {columns} FROM "{table}" {where} ORDER BY instrument, date', params)
        if "date" in frame:
            frame["date"] = pd.to_datetime(frame["date"])
        return frame
