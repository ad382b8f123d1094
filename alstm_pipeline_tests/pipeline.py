"""Build the real Dagster definitions against a temporary warehouse, for tests."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from alstm_pipeline.definitions import defs as project_defs
from alstm_pipeline.defs.resources import MarketDataResource, ModelStoreResource, WarehouseResource
from alstm_pipeline.runner import materialize_range
from alstm_pipeline.warehouse import Warehouse


class TestPipeline:
    """The project's assets, schedules and sensors with resources pointing into ``home``."""

    __test__ = False  # not a pytest class

    def __init__(self, home: Path, source: Path, universe: Path | None = None) -> None:
        self.home = home
        self.warehouse = Warehouse(home / "warehouse.duckdb")
        resources = {
            "warehouse": WarehouseResource(path=str(self.warehouse.path)),
            "market_data": MarketDataResource(source_path=str(source), universe_path=str(universe or "")),
            "model_store": ModelStoreResource(root=str(home / "models")),
        }
        self.defs = dg.Definitions(
            assets=list(project_defs.assets or []),
            jobs=list(project_defs.jobs or []),
            schedules=list(project_defs.schedules or []),
            sensors=list(project_defs.sensors or []),
            resources=resources,
            executor=dg.in_process_executor,
        )
        self.instance = dg.DagsterInstance.ephemeral()

    def run(self, select: str, first: str | None = None, last: str | None = None, run_config: dict | None = None):
        result = materialize_range(self.defs, select, first, last, self.instance, run_config=run_config)
        if not result.success:
            failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            raise AssertionError(failures[0].event_specific_data.error.to_string() if failures else "run failed")
        return result

    def run_expecting_failure(self, select: str, first: str | None = None, last: str | None = None) -> str:
        result = materialize_range(self.defs, select, first, last, self.instance)
        assert not result.success, "the run was expected to fail"
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        return failures[0].event_specific_data.error.to_string()

    def materialization(self, result, asset: str) -> list[dg.AssetMaterialization]:
        return [m for m in result.asset_materializations_for_node(asset)]

    def check_results(self, result, asset: str) -> dict[str, dg.AssetCheckEvaluation]:
        return {
            e.event_specific_data.check_name: e.event_specific_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.asset_key.to_user_string() == asset
        }
