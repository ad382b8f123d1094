"""The warehouse backends tests run against: the embedded DuckDB file and DuckLake with
each kind of catalog (SQLite, a DuckDB file, a real Postgres server in a temp dir).

``warehouse_backend`` is parametrised over them; a test asks ``make_warehouse(folder)``
for a fresh, empty warehouse of that backend. DuckLake needs the ``ducklake`` extra's
extension wheels: without them those cases skip with the reason (the dev extra has them).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alstm_pipeline.warehouse import Warehouse
from alstm_pipeline.warehouse.backends import open_warehouse
from alstm_pipeline_tests.postgres import Postgres, postgres_or_skip, server_bindir

BACKENDS = ("duckdb", "ducklake-sqlite", "ducklake-duckdb", "ducklake-postgres")
_databases = itertools.count()


def ducklake_available() -> bool:
    try:
        import duckdb_extension_ducklake  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """The project's real Postgres (postgres.py), one for the session's DuckLake catalogs."""
    yield from postgres_or_skip()


def postgres_catalog(server: Postgres) -> str:
    """A new, empty database on the server, as a DuckLake catalog string."""
    name = f"lake_{os.getpid()}_{next(_databases)}"
    subprocess.run([str(server_bindir() / "createdb"), "-h", server.host, "-p", str(server.port), "-U", server.user, name],
                   check=True, capture_output=True, env={**os.environ, "PGPASSWORD": server.password})
    return f"postgres:dbname={name} host={server.host} port={server.port} user={server.user} password={server.password}"


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
