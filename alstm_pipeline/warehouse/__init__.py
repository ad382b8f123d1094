"""The data-access layer: the DuckDB warehouse and every SQL statement of the project.

``store`` opens the file and writes partitions atomically; ``tables`` and ``registry`` are
typed readers and writers the assets, schedules, sensor and CLI call; ``writer_lock`` keeps
runs on one home one after another. Nothing outside this package writes SQL.
"""

from alstm_pipeline.warehouse import registry, tables
from alstm_pipeline.warehouse.store import Warehouse, WarehouseError, duckdb_type
from alstm_pipeline.warehouse.writer_lock import writer_lock

__all__ = ["Warehouse", "WarehouseError", "duckdb_type", "registry", "tables", "writer_lock"]
