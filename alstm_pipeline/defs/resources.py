"""Dagster resources: the warehouse file and the market-data source, from settings."""

from pathlib import Path

import dagster as dg

from alstm_pipeline.settings import load_settings
from alstm_pipeline.sources import Source, Universe, open_source
from alstm_pipeline.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB file every asset reads and writes (one writer at a time)."""

    path: str

    def get(self) -> Warehouse:
        return Warehouse(Path(self.path))


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
        return Universe.everything(source)


class ModelStoreResource(dg.ConfigurableResource):
    """The folder that holds versioned model checkpoints."""

    root: str

    def path(self) -> Path:
        return Path(self.root)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources built from the environment (see ``alstm_pipeline.settings``)."""
    settings = load_settings()
    return {
        "warehouse": WarehouseResource(path=str(settings.warehouse_path)),
        "market_data": MarketDataResource(
            source_path=str(settings.source),
            universe_path=str(settings.universe) if settings.universe else "",
        ),
        "model_store": ModelStoreResource(root=str(settings.models_dir)),
    }
