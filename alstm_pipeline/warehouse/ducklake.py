"""The DuckLake warehouse: the same tables as Parquet files under a data path, their
catalog in Postgres (deployments), SQLite or a DuckDB file (one machine).

It keeps ``Warehouse``'s API, so ``tables`` and ``registry`` run unchanged on it. What
differs from the single DuckDB file, and why:

- **Many writers.** Any number of processes attach a Postgres or SQLite catalog at once, so
  runs writing different partitions proceed side by side, and readers see the last
  committed snapshot while a run writes (a DuckDB-file catalog, like the embedded file,
  admits one process at a time).
- **Conflicts are retried.** A partition write is ``DELETE range; INSERT`` in one catalog
  transaction. DuckLake checks at commit whether another transaction changed the same
  table since ours began, and two writers of different date ranges of one table do
  conflict (Postgres: "Transaction conflict"; SQLite: "database is locked"): it keeps
  files, not rows, under watch. The losing transaction is rolled back whole, so replaying
  its statements on the new snapshot is exactly the write it meant; ``transaction``
  records them and replays them with a jittered, doubling wait until ``lock_wait_seconds``.
- **No keys.** DuckLake has no PRIMARY KEY or UNIQUE: the keys the shared DDL declares are
  dropped here, and uniqueness comes from the write path (a write replaces its whole key
  range, and a frame repeating a key is refused before anything is written).
- **Snapshots.** Every commit is a dated snapshot; ``as_of`` gives a read-only warehouse as
  it stood at a time or snapshot id, on which every typed reader works.

The extension binaries come from the ``ducklake`` extra (wheels built for duckdb 1.5.5,
see pyproject.toml); without them ``LOAD`` falls back to DuckDB's own extension folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from alstm_pipeline.warehouse.store import Warehouse, WarehouseError

ALIAS = "lake"
# Error texts of a commit that lost to another writer, or of a catalog busy committing one:
# retried. Anything else (a bad statement, a missing table) fails at once.
_RETRYABLE = ("conflict", "database is locked", "could not serialize", "failed to commit", "deadlock detected",
              # two processes creating a new catalog at once; a DuckDB-file catalog another process holds
              "failed to initialize ducklake", "duplicate key value", "could not set lock")
_KEYS = (re.compile(r",\s*PRIMARY KEY\s*\([^)]*\)", re.IGNORECASE), re.compile(r"\s+PRIMARY KEY\b", re.IGNORECASE))


def _without_keys(sql: str) -> str:
    """The statement with PRIMARY KEY clauses removed from a CREATE TABLE (DuckLake has none)."""
    if not sql.lstrip().upper().startswith("CREATE"):
        return sql
    for pattern in _KEYS:
        sql = pattern.sub("", sql)
    return sql


def _retryable(error: Exception) -> bool:
    text = str(error).lower()
    return isinstance(error, duckdb.Error) and any(marker in text for marker in _RETRYABLE)


def catalog_kind(catalog: str) -> str:
    """``postgres``, ``sqlite`` or ``duckdb`` for a DuckLake catalog string."""
    head = catalog.split(":", 1)[0].lower()
    return head if head in ("postgres", "sqlite") else "duckdb"


def _extension(db: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD an extension from its wheel (the ``ducklake`` extra), else from DuckDB's folder."""
    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
        binary = next(Path(module.__file__).parent.glob("extensions/*/*.duckdb_extension"))
    except (ImportError, StopIteration):
        binary = None
    try:
        db.execute(f"LOAD '{binary}'" if binary else f"LOAD {name}")
    except duckdb.Error as error:
        raise WarehouseError(
            f"DuckLake needs DuckDB's {name} extension, which duckdb {duckdb.__version__} cannot load ({error}). "
            "Fix: pip install 'alstm_pipeline[ducklake]' (its wheels are built for duckdb 1.5.5)."
        ) from error


def _write_ahead_log(file: Path) -> None:
    """Put a SQLite catalog in WAL mode (kept in the file). In SQLite's default rollback
    mode an open DuckLake transaction's catalog read blocks every other writer's commit
    until it ends, so two writers in flight fail each other ("database is locked") until
    one gives up; with WAL readers never block the writer, and the later of two writers
    fails fast at commit and is replayed (measured with DuckLake 1.5.5)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(file)) as catalog:
        catalog.execute("PRAGMA journal_mode=WAL").fetchall()


class _Replayable:
    """The connection a DuckLake transaction's body sees: each statement runs at once and is
    remembered, so a commit that loses to another writer can be replayed whole."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._calls: list[tuple[str, tuple]] = []

    def execute(self, sql: str, parameters: Sequence[object] | None = None):
        sql = _without_keys(sql)
        args = (sql,) if parameters is None else (sql, list(parameters))
        self._calls.append(("execute", args))
        return self._con.execute(*args)

    def register(self, name: str, frame: pd.DataFrame):
        self._calls.append(("register", (name, frame)))
        return self._con.register(name, frame)

    def unregister(self, name: str):
        self._calls.append(("unregister", (name,)))
        return self._con.unregister(name)

    def replay(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        for method, args in self._calls:
            getattr(con, method)(*args)


# One in-memory DuckDB per process and attachment: extensions load once (~0.2 s) and the
# catalog stays attached; each unit of work gets its own cursor (its own transaction).
_DATABASES: dict[tuple, duckdb.DuckDBPyConnection] = {}
_DATABASES_LOCK = threading.Lock()


@dataclass(frozen=True)
class DuckLakeWarehouse(Warehouse):
    """The pipeline's tables in a DuckLake: ``catalog`` in DuckLake's ATTACH syntax without
    the ``ducklake:`` prefix (``postgres:dbname=… host=…``, ``sqlite:/x/catalog.sqlite`` or
    ``/x/catalog.ducklake``), Parquet under ``data_path`` (a folder or an object-store URL).
    ``path`` is the pipeline's home folder (messages name ``location``)."""

    catalog: str = ""
    data_path: str = ""
    # A snapshot id (int) or a UTC time: a read-only view of the warehouse as it stood then.
    snapshot: int | str | None = None

    @property
    def location(self) -> str:
        dated = f" as of {self.snapshot}" if self.snapshot is not None else ""
        return f"ducklake:{self.catalog}{dated}"

    @property
    def concurrent(self) -> bool:
        """Whether several processes may attach at once (Postgres and SQLite catalogs)."""
        return catalog_kind(self.catalog) != "duckdb"

    def exists(self) -> bool:
        if catalog_kind(self.catalog) == "postgres":
            return True  # a server: its reachability shows on first use, with the server's message
        file = self.catalog.split(":", 1)[1] if catalog_kind(self.catalog) == "sqlite" else self.catalog
        return Path(file).exists()

    # --- connections ------------------------------------------------------------------

    def _attach_sql(self) -> str:
        options = [f"DATA_PATH '{self.data_path}'"] if self.data_path else []
        if isinstance(self.snapshot, int):
            options += [f"SNAPSHOT_VERSION {self.snapshot}", "READ_ONLY"]
        elif self.snapshot is not None:
            options += [f"SNAPSHOT_TIME '{self.snapshot}'", "READ_ONLY"]
        catalog = self.catalog.replace("'", "''")
        return f"ATTACH 'ducklake:{catalog}' AS {ALIAS}" + (f" ({', '.join(options)})" if options else "")

    def _new_database(self) -> duckdb.DuckDBPyConnection:
        db = duckdb.connect()
        _extension(db, "ducklake")
        kind = catalog_kind(self.catalog)
        if kind != "duckdb":
            _extension(db, f"{kind}_scanner")
        if "://" in self.data_path:
            # s3://, gs://, az://…: credentials come from DuckDB's secrets (a persistent
            # secret the operator creates once, CREATE PERSISTENT SECRET …).
            _extension(db, "httpfs")
        elif self.data_path:
            Path(self.data_path).mkdir(parents=True, exist_ok=True)
        if kind == "sqlite":
            _write_ahead_log(Path(self.catalog.split(":", 1)[1]))
        # Processes attaching a new catalog at the same moment race to create its tables;
        # the losers find them created on the next try. A DuckDB-file catalog held by
        # another process is waited for, as the embedded file is.
        self._retry(lambda: db.execute(self._attach_sql()), "attach")
        return db

    @contextlib.contextmanager
    def _database(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # A DuckDB-file catalog admits one process: hold it only for the unit of work. Dated
        # views are opened per use too, so a process reading many dates keeps none of them.
        if not self.concurrent or self.snapshot is not None:
            db = self._new_database()
            try:
                yield db
            finally:
                db.close()
            return
        key = (os.getpid(), self.catalog, self.data_path, self.snapshot)
        with _DATABASES_LOCK:
            if key not in _DATABASES:
                _DATABASES[key] = self._new_database()
            db = _DATABASES[key]
        yield db

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the attached lake for one unit of work (snapshot views are read-only)."""
        if self.snapshot is not None and not read_only:
            raise WarehouseError(f"{self.location}: a dated view is read-only")
        with self._database() as db:
            cursor = db.cursor()
            try:
                cursor.execute(f"USE {ALIAS}")
                yield cursor
            finally:
                cursor.close()

    def _retry(self, attempt, what: str):
        """Run ``attempt`` until it does not fail on a conflict or a busy catalog."""
        deadline = time.monotonic() + self.lock_wait_seconds
        delay, tries = 0.02, 0
        while True:
            try:
                return attempt()
            except duckdb.Error as error:
                tries += 1
                if not _retryable(error):
                    raise
                if time.monotonic() >= deadline:
                    raise WarehouseError(
                        f"{self.location}: {what} still conflicts after {tries} tries in "
                        f"{self.lock_wait_seconds:.0f} s ({error})"
                    ) from error
                if self.on_wait is not None and tries % 10 == 0:
                    self.on_wait(f"{self.location}: {what} retried {tries} times on conflicts ({error})")
                # Full jitter: writers that collided once do not collide again in step.
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 1.0)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Replayable]:
        """Statements that commit together or not at all; a commit that conflicts with
        another writer is replayed on the newer snapshot (see the module's docstring).

        Results read inside the body come from the first try: read what a decision needs
        outside the transaction."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            body = _Replayable(con)
            try:
                yield body
            except BaseException:
                con.execute("ROLLBACK")
                raise
            try:
                con.execute("COMMIT")
                return
            except duckdb.Error as error:
                if not _retryable(error):
                    raise
                first_error = error
        if self.on_wait is not None:
            self.on_wait(f"{self.location}: commit conflicted with another writer, replaying ({first_error})")

        def replay() -> None:
            with self.connect() as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    body.replay(con)
                    con.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(duckdb.Error):
                        con.execute("ROLLBACK")
                    raise

        self._retry(replay, "commit")

    # --- the Warehouse API on top ---------------------------------------------------------

    def table_exists(self, table: str) -> bool:
        if not self.exists():
            return False
        found = self.query("SELECT count(*) AS n FROM information_schema.tables WHERE table_catalog = ? "
                           "AND table_name = ?", [ALIAS, table])
        return bool(found["n"].iloc[0])

    def replace_date_range(self, table, frame, start, end, key=("instrument", "date"), con=None) -> int:
        repeated = frame[frame.duplicated(list(key), keep=False)]
        if len(repeated):
            sample = repeated[list(key)].drop_duplicates().head(5).to_dict("records")
            raise WarehouseError(f"{table}: {len(repeated)} incoming rows duplicate a key {tuple(key)}, e.g. {sample}")
        return super().replace_date_range(table, frame, start, end, key, con)

    def query(self, sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
        def read() -> pd.DataFrame:
            with self.connect(read_only=True) as con:
                return con.execute(sql, list(params)).df()
        try:
            return self._retry(read, "read")
        except duckdb.CatalogException as error:
            raise WarehouseError(f"{self.location}: {error}") from error

    # --- snapshots --------------------------------------------------------------------

    def as_of(self, when: int | str | pd.Timestamp) -> DuckLakeWarehouse:
        """The warehouse as it stood at ``when``: a snapshot id, or a time (naive = UTC).
        Read-only; every typed reader works on it."""
        if isinstance(when, int):
            snapshot: int | str = when
        else:
            stamp = pd.Timestamp(when)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            snapshot = stamp.strftime("%Y-%m-%d %H:%M:%S.%f+00")
        dated = dataclasses.replace(self, snapshot=snapshot)
        try:
            with dated.connect(read_only=True):
                pass
        except duckdb.Error as error:
            raise WarehouseError(f"{dated.location}: no such snapshot ({error})") from error
        return dated

    def maintain(self, keep_since: str | pd.Timestamp) -> pd.DataFrame:
        """Merge the small files partition writes leave, forget the snapshots older than
        ``keep_since`` (UTC) and delete the files only they used; returns the snapshots
        left. Time travel reaches back to ``keep_since`` afterwards, no further."""
        stamp = pd.Timestamp(keep_since)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")

        def run() -> None:
            with self.connect() as con:
                con.execute(f"CALL ducklake_merge_adjacent_files('{ALIAS}')")
                con.execute(f"CALL ducklake_expire_snapshots('{ALIAS}', older_than => ?::TIMESTAMPTZ)",
                            [stamp.strftime("%Y-%m-%d %H:%M:%S.%f+00")])
                con.execute(f"CALL ducklake_cleanup_old_files('{ALIAS}', cleanup_all => true)")
        self._retry(run, "maintenance")
        return self.snapshots()

    def snapshots(self) -> pd.DataFrame:
        """Every commit: snapshot_id, snapshot_time (UTC) and what it changed."""
        frame = self.query(f"SELECT snapshot_id, snapshot_time, changes FROM {ALIAS}.snapshots() ORDER BY snapshot_id")
        frame["snapshot_time"] = pd.to_datetime(frame["snapshot_time"], utc=True)
        return frame
