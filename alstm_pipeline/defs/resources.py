"""Dagster resources: the warehouse file, the market-data source and the model store."""

from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd

from alstm_pipeline.dead_runs import PID_TAG, process_tags, reap_dead_runs, settle_dead_holder
from alstm_pipeline.settings import load_settings
from alstm_pipeline.sources import Source, Universe, open_source
from alstm_pipeline.warehouse import Warehouse, writer_lock
from alstm_pipeline.warehouse.backends import EMBEDDED_FILE
from alstm_pipeline.warehouse.ducklake import DuckLakeWarehouse, catalog_kind
from alstm_pipeline.warehouse.store import DEFAULT_LOCK_WAIT_SECONDS


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse every asset reads and writes: the DuckDB file ``path``, or DuckLake
    when ``ducklake_catalog`` is set. A run on the DuckDB file (or a DuckDB-file catalog)
    holds the home's writer lock from the resource's setup to its teardown, so those runs
    never write at once; with a Postgres or SQLite catalog, runs write side by side."""

    path: str
    ducklake_catalog: str = ""
    ducklake_data: str = ""
    # How long a write waits for another process holding the file (a reader) before it
    # fails naming that process's pid.
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS

    @classmethod
    def of(cls, store: Warehouse) -> "WarehouseResource":
        if isinstance(store, DuckLakeWarehouse):
            return cls(path=str(store.path / EMBEDDED_FILE), ducklake_catalog=store.catalog, ducklake_data=store.data_path)
        return cls(path=str(store.path))

    def get(self, log=None) -> Warehouse:
        if self.ducklake_catalog:
            return DuckLakeWarehouse(path=self.home, catalog=self.ducklake_catalog, data_path=self.ducklake_data,
                                     lock_wait_seconds=self.lock_wait_seconds, on_wait=log)
        return Warehouse(Path(self.path), lock_wait_seconds=self.lock_wait_seconds, on_wait=log)

    @property
    def home(self) -> Path:
        """The pipeline's home: the DuckDB file's folder (unused by DuckLake, whose
        resource keeps the path for the home: the writer lock, the MLflow store)."""
        return Path(self.path).parent

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext):
        run_id = context.run.run_id if context.run else "unknown"
        instance, on_stale = context.instance, None
        if instance is not None and context.run is not None:
            # A run that died before this one (kill -9) would otherwise stay STARTED forever:
            # this run notices it, marks it failed and goes on (dead_runs.py).
            if PID_TAG not in context.run.tags:
                instance.add_run_tags(run_id, process_tags())
            reap_dead_runs(instance, self.home, f"run {run_id}", log=context.log.warning if context.log else None)

            def on_stale(holder: dict) -> None:  # the holder we waited for died holding the lock
                settle_dead_holder(instance, holder, f"run {run_id}")
        if self.ducklake_catalog and catalog_kind(self.ducklake_catalog) != "duckdb":
            yield self  # the catalog orders concurrent commits (DuckLakeWarehouse.transaction)
            return
        with writer_lock(self.home, run_id, on_wait=context.log.info if context.log else None, on_stale=on_stale):
            yield self


ALL_TIME = ("1900-01-01", "2199-12-31")


class MarketDataResource(dg.ConfigurableResource):
    """Where raw bars come from: a Parquet file/folder, a CSV folder or a Qlib provider dir."""

    source_path: str
    universe_path: str = ""

    def open(self) -> Source:
        return open_source(self.source_path)

    def universe(self, source: Source) -> Universe:
        """The instrument list with membership spans; every instrument of the source by default."""
        if self.universe_path:
            return Universe.from_file(self.universe_path)
        # Every instrument over all time: its rows exist only inside its own data range
        # anyway, and listing names reads no bars, so bad files surface in raw_ohlcv's
        # report, all at once, rather than here.
        names = source.instruments()
        return Universe(spans=pd.DataFrame({"instrument": names, "start": pd.Timestamp(ALL_TIME[0]),
                                            "end": pd.Timestamp(ALL_TIME[1])}))


class ModelStoreResource(dg.ConfigurableResource):
    """The folder that holds the vintages' checkpoints (registered in model_registry)."""

    root: str

    def path(self) -> Path:
        return Path(self.root)


def project_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources from the settings (paths only; nothing is opened here)."""
    settings = load_settings()
    return {
        "warehouse": WarehouseResource.of(settings.open_warehouse()),
        "market_data": MarketDataResource(
            source_path=str(settings.source),
            universe_path=str(settings.universe) if settings.universe else "",
        ),
        "model_store": ModelStoreResource(root=str(settings.models_dir)),
    }
