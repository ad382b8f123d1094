"""The warehouse backends tests run against: the embedded DuckDB file and DuckLake with
each kind of catalog (SQLite, a DuckDB file, a real Postgres server in a temp dir).

``warehouse_backend`` is parametrised over them; a test asks ``make_warehouse(folder)``
for a fresh, empty warehouse of that backend. DuckLake needs the ``ducklake`` extra's
extension wheels: without them those cases skip with the reason (the dev extra has them).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alstm_pipeline.warehouse import Warehouse
from alstm_pipeline.warehouse.backends import open_warehouse

BACKENDS = ("duckdb", "ducklake-sqlite", "ducklake-duckdb", "ducklake-postgres")
PG_BIN = Path(os.environ.get("ALSTM_PG_BIN", "/usr/lib/postgresql/15/bin"))
_databases = itertools.count()


def ducklake_available() -> bool:
    try:
        import duckdb_extension_ducklake  # noqa: F401
        return True
    except ImportError:
        return False


@contextlib.contextmanager
def running_postgres() -> Iterator[dict[str, str]]:
    """A real Postgres on 127.0.0.1 in a temp dir, stopped and removed at the end: libpq
    settings (host, port, user)."""
    folder = Path(tempfile.mkdtemp(prefix="alstm_pg_"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:  # initdb refuses root
        shutil.chown(folder, "postgres")
    with contextlib.closing(socket.socket()) as probe:  # a port free now on 127.0.0.1
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    run = lambda *args: subprocess.run([*as_postgres, *args], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(PG_BIN / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres")
    try:
        run(str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "log"), "-w",
            "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start")
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"Postgres did not start: {(folder / 'log').read_text()[-2000:]}") from error
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "postgres"}
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


# TODO(lead): replace by the shared Postgres fixture when it is merged; this one is
# deliberately small: initdb + pg_ctl as user postgres on 127.0.0.1, stopped at the end.
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict[str, str]]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL binaries at {PG_BIN} (set ALSTM_PG_BIN)")
    with running_postgres() as server:
        yield server


def postgres_catalog(server: dict[str, str]) -> str:
    """A new, empty database on the server, as a DuckLake catalog string."""
    name = f"lake_{os.getpid()}_{next(_databases)}"
    subprocess.run([str(PG_BIN / "createdb"), "-h", server["host"], "-p", server["port"], "-U", server["user"], name],
                   check=True, capture_output=True)
    return f"postgres:dbname={name} host={server['host']} port={server['port']} user={server['user']}"


def warehouse_spec(backend: str, folder: Path, request: pytest.FixtureRequest) -> str:
    """The ALSTM_PIPELINE_WAREHOUSE value of ``backend`` for a home at ``folder``."""
    if backend == "duckdb":
        return ""
    if not ducklake_available():
        pytest.skip("DuckLake's extension wheels are not installed (pip install -e '.[ducklake]')")
    if backend == "ducklake-sqlite":
        return f"ducklake:sqlite:{folder / 'lake' / 'catalog.sqlite'}"
    if backend == "ducklake-duckdb":
        return f"ducklake:{folder / 'lake' / 'catalog.ducklake'}"
    return f"ducklake:{postgres_catalog(request.getfixturevalue('postgres_server'))}"


@pytest.fixture(params=BACKENDS)
def warehouse_backend(request) -> str:
    return request.param


@pytest.fixture()
def make_warehouse(warehouse_backend, request) -> Callable[[Path], Warehouse]:
    """A fresh warehouse of the parametrised backend with its home at a folder."""
    def make(folder: Path) -> Warehouse:
        return open_warehouse(warehouse_spec(warehouse_backend, folder, request), folder)
    return make
