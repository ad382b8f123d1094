"""The DuckDB file: short-lived connections, transactions, partition writes that replace.

Everything DuckDB-file specific lives here (DESIGN.md "one data-access module"): opening
the file, waiting out another process's lock, and the generic write patterns. The typed
readers and writers in ``tables.py`` and ``registry.py`` are the only other SQL; a
multi-writer store (DuckLake) would replace this module and keep their signatures.

Every partitioned table has a ``date`` column. Writing a date range deletes that range
and inserts the new rows inside one transaction, so a re-run never duplicates rows and a
run killed half-way leaves the previous rows.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

# DuckDB type of each numpy dtype we store. float32 stays REAL: Qlib stores and computes
# its fields in float32 (semantics §1.5), widening would change nothing but size.
_DUCKDB_TYPES = {
    np.dtype("float32"): "REAL",
    np.dtype("float64"): "DOUBLE",
    np.dtype("int64"): "BIGINT",
    np.dtype("int32"): "INTEGER",
    np.dtype("bool"): "BOOLEAN",
}

# How long a connection waits for another process to let go of the file. DuckDB allows one
# writing process, and a reader in another process (a notebook, the duckdb CLI) blocks it:
# short-lived readers are waited out; one that holds the file longer gets named.
DEFAULT_LOCK_WAIT_SECONDS = 120.0


class WarehouseError(RuntimeError):
    """A read or write of the warehouse that cannot be done (missing table, busy file)."""


def duckdb_type(series: pd.Series) -> str:
    """The DuckDB column type used to store ``series``."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return "DATE" if series.name == "date" else "TIMESTAMP"
    return _DUCKDB_TYPES.get(series.dtype, "VARCHAR")


def date_condition(start, end) -> tuple[str, list]:
    """SQL condition and parameters for ``start <= date <= end``, either end open when None.
    (No sentinel dates: a DATE sentinel overflows a TIMESTAMP_NS column.)"""
    clauses, params = ["TRUE"], []
    if start is not None:
        clauses.append("date >= ?")
        params.append(pd.Timestamp(start).date())
    if end is not None:
        clauses.append("date <= ?")
        params.append(pd.Timestamp(end).date())
    return " AND ".join(clauses), params


def _holder(error: Exception) -> str:
    """The PID DuckDB names in a lock conflict, as text for a message."""
    found = re.search(r"PID (\d+)", str(error))
    return f"process {found.group(1)}" if found else "another process"


@dataclass(frozen=True)
class Warehouse:
    """A DuckDB file holding the pipeline's tables."""

    path: Path
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    # Called with a message while waiting for the file (the run's logger in assets).
    on_wait: Callable[[str], None] | None = field(default=None, compare=False)

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file for one unit of work and close it again.

        Connections are short-lived on purpose: holding one across a run would lock the UI,
        the schedules and readers out. A file held by another process is retried until
        ``lock_wait_seconds`` have passed, then the error names the holder.
        """
        if read_only and not self.path.exists():
            raise WarehouseError(f"{self.path}: the warehouse does not exist yet; materialise universe and raw_ohlcv first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._open(read_only)
        try:
            yield connection
        finally:
            connection.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_wait_seconds
        delay, told = 0.05, 0.0
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise WarehouseError(f"{self.path}: cannot open the warehouse ({error})") from error
                waited = self.lock_wait_seconds - (deadline - time.monotonic())
                if time.monotonic() >= deadline:
                    raise WarehouseError(
                        f"{self.path}: held by {_holder(error)} for more than {self.lock_wait_seconds:.0f} s. "
                        "Fix: close that connection (a notebook or duckdb shell should open the file "
                        "read-only and briefly, or read a copy), then re-run."
                    ) from error
                if self.on_wait is not None and waited - told >= 10:
                    self.on_wait(f"waiting for {self.path.name}: held by {_holder(error)} ({waited:.0f} s so far)")
                    told = waited
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

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
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> int:
        """Replace the rows of ``table`` with ``start <= date <= end`` by ``frame``, atomically.

        ``frame`` must hold only dates inside the range (a row outside it would survive the
        next re-run of its own partition as a duplicate). Creates the table from the
        frame's dtypes on first use. With ``con`` the write joins that open transaction.
        Returns the number of rows written.
        """
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        if len(frame):
            dates = pd.to_datetime(frame["date"])
            if dates.min() < start or dates.max() > end:
                raise WarehouseError(
                    f"{table}: rows dated {dates.min().date()}..{dates.max().date()} fall outside the "
                    f"partition range {start.date()}..{end.date()} being written"
                )
        if con is None:
            with self.transaction() as own:
                return self.replace_date_range(table, frame, start, end, key, own)
        columns = ", ".join(f'"{name}" {duckdb_type(frame[name])}' for name in frame.columns)
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({columns}, PRIMARY KEY ({", ".join(key)}))')
        con.execute(f'DELETE FROM "{table}" WHERE date BETWEEN ? AND ?', [start.date(), end.date()])
        if len(frame):
            con.register("incoming_rows", frame)
            names = ", ".join(f'"{name}"' for name in frame.columns)
            con.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM incoming_rows')
            con.unregister("incoming_rows")
        return len(frame)

    def replace_table(self, table: str, frame: pd.DataFrame, con: duckdb.DuckDBPyConnection | None = None) -> int:
        """Replace the whole of an unpartitioned table by ``frame`` in one transaction."""
        if con is None:
            with self.transaction() as own:
                return self.replace_table(table, frame, own)
        con.register("incoming_rows", frame)
        con.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM incoming_rows')
        con.unregister("incoming_rows")
        return len(frame)

    def query(self, sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        """Run a read-only query and return its rows as a DataFrame."""
        with self.connect(read_only=True) as con:
            try:
                return con.execute(sql, list(params)).df()
            except duckdb.CatalogException as error:
                raise WarehouseError(f"{self.path}: {error}") from error

    @property
    def location(self) -> str:
        """Where the warehouse is, for messages."""
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def as_of(self, when) -> Warehouse:
        """The warehouse as it stood at a time or snapshot: the DuckLake backend only."""
        raise WarehouseError(f"{self.location}: a single DuckDB file keeps no snapshots; dated views "
                             "need the DuckLake warehouse (ALSTM_PIPELINE_WAREHOUSE=ducklake...)")

    def read_dates(
        self, table: str, start: pd.Timestamp | None, end: pd.Timestamp | None, columns: str = "*"
    ) -> pd.DataFrame:
        """Rows of ``table`` with ``start <= date <= end`` (open bounds when None), sorted."""
        where, params = date_condition(start, end)
        frame = self.query(f'SELECT {columns} FROM "{table}" WHERE {where} ORDER BY instrument, date', params)
        if "date" in frame:
            frame["date"] = pd.to_datetime(frame["date"])
        return frame
