"""Which warehouse a deployment uses, from one setting (``ALSTM_PIPELINE_WAREHOUSE``).

| value | warehouse |
|---|---|
| unset (default) | the single DuckDB file ``<home>/warehouse.duckdb``: one writing process |
| ``ducklake`` | DuckLake, SQLite catalog ``<home>/lake/catalog.sqlite``: many processes of one machine |
| ``ducklake:sqlite:/x/catalog.sqlite`` | DuckLake, that SQLite catalog |
| ``ducklake:postgres:dbname=… host=… user=…`` | DuckLake, catalog in Postgres (libpq's ``PG*`` variables apply): many machines |
| ``ducklake:/x/catalog.ducklake`` | DuckLake, a DuckDB-file catalog: one process at a time, as the embedded file |

DuckLake's data (Parquet) goes to ``ALSTM_PIPELINE_WAREHOUSE_DATA``: a folder, or an
object-store URL DuckDB's httpfs reads (``s3://bucket/prefix/``), ``<home>/lake/data/``
by default. Nothing is opened here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from alstm_pipeline.warehouse.ducklake import DuckLakeWarehouse
from alstm_pipeline.warehouse.store import Warehouse

EMBEDDED_FILE = "warehouse.duckdb"
PREFIX = "ducklake"


def check_spec(spec: str) -> None:
    """Refuse a value of ``ALSTM_PIPELINE_WAREHOUSE`` that names no backend."""
    if spec in ("", "duckdb", PREFIX):
        return
    if not spec.startswith(f"{PREFIX}:") or not spec[len(PREFIX) + 1:]:
        raise ValueError(
            f"ALSTM_PIPELINE_WAREHOUSE={spec!r} names no warehouse. Use nothing (the DuckDB file), 'ducklake', "
            "'ducklake:sqlite:/path/catalog.sqlite', 'ducklake:postgres:dbname=… host=…' or "
            "'ducklake:/path/catalog.ducklake'."
        )


def ducklake_parts(spec: str, home: Path, data: str = "") -> tuple[str, str] | None:
    """(catalog, data path) of a DuckLake setting, None for the embedded DuckDB file."""
    check_spec(spec)
    if spec in ("", "duckdb"):
        return None
    catalog = spec[len(PREFIX) + 1:] if spec.startswith(f"{PREFIX}:") else f"sqlite:{home / 'lake' / 'catalog.sqlite'}"
    data = data or str(home / "lake" / "data")
    # DuckLake joins file names onto the data path: a folder needs its trailing separator.
    return catalog, data if data.endswith("/") else data + "/"


def open_warehouse(spec: str, home: Path, data: str = "", on_wait=None) -> Warehouse:
    """The warehouse a setting names (see the module's table)."""
    parts = ducklake_parts(spec, home, data)
    if parts is None:
        return Warehouse(home / EMBEDDED_FILE, on_wait=on_wait)
    catalog, data_path = parts
    return DuckLakeWarehouse(path=home, catalog=catalog, data_path=data_path, on_wait=on_wait)


def location(store: Warehouse) -> dict[str, str]:
    """What another process (a worker, a step's pod) needs to open the same warehouse:
    plain strings, so it travels as JSON."""
    if isinstance(store, DuckLakeWarehouse):
        return {"path": str(store.path), "catalog": store.catalog, "data_path": store.data_path}
    return {"path": str(store.path)}


def reopen(where: Mapping[str, str], on_wait=None) -> Warehouse:
    """The warehouse ``location`` described."""
    if where.get("catalog"):
        return DuckLakeWarehouse(path=Path(where["path"]), catalog=where["catalog"], data_path=where["data_path"],
                                 on_wait=on_wait)
    return Warehouse(Path(where["path"]), on_wait=on_wait)
