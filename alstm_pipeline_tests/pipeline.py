"""Build the real Dagster definitions against a temporary home, for tests."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from alstm_pipeline.definitions import build_definitions
from alstm_pipeline.defs.resources import MarketDataResource, ModelStoreResource, WarehouseResource
from alstm_pipeline.runner import materialize
from alstm_pipeline.warehouse import Warehouse


class TestPipeline:
    """The project's assets, schedules and sensors with resources pointing into ``home``."""

    __test__ = False  # not a pytest class

    def __init__(self, home: Path, source: Path, universe: Path | None = None, warehouse: Warehouse | None = None) -> None:
        self.home = home
        self.warehouse = warehouse or Warehouse(home / "warehouse.duckdb")
        self.defs = build_definitions({
            "warehouse": WarehouseResource.of(self.warehouse),
            "market_data": MarketDataResource(source_path=str(source), universe_path=str(universe or "")),
            "model_store": ModelStoreResource(root=str(home / "models")),
        })
        self.instance = dg.DagsterInstance.ephemeral()

    def _materialize(self, select, first, last, vintage, run_config, tags=None):
        weekdays = (first, last) if first is not None else None
        return materialize(self.defs, select, self.instance, weekdays, vintage, run_config, tags=tags)

    def run(self, select: str, first: str | None = None, last: str | None = None, run_config: dict | None = None,
            vintage: str | None = None, tags: dict | None = None):
        """Materialise ``select``; returns the last run's result (raises on a failed step)."""
        results = self._materialize(select, first, last, vintage, run_config, tags)
        failed = [result for result in results if not result.success]
        if failed:
            failures = [e for e in failed[0].all_events if e.event_type_value == "STEP_FAILURE"]
            raise AssertionError(failures[0].event_specific_data.error.to_string() if failures else "run failed")
        return Results(results)

    def run_expecting_failure(self, select: str, first: str | None = None, last: str | None = None,
                              run_config: dict | None = None, vintage: str | None = None) -> str:
        results = self._materialize(select, first, last, vintage, run_config)
        assert not results[-1].success, "the run was expected to fail"
        failures = [e for e in results[-1].all_events if e.event_type_value == "STEP_FAILURE"]
        return failures[0].event_specific_data.error.to_string()

    def materialization(self, result, asset: str) -> list[dg.AssetMaterialization]:
        return [m for run in result.runs for m in run.asset_materializations_for_node(asset)]

    def check_results(self, result, asset: str) -> dict[str, dg.AssetCheckEvaluation]:
        return {
            e.event_specific_data.check_name: e.event_specific_data
            for run in result.runs for e in run.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.asset_key.to_user_string() == asset
        }


class Results:
    """The runs one materialisation made (one per partitions kind)."""

    def __init__(self, runs) -> None:
        self.runs = runs

    @property
    def success(self) -> bool:
        return all(run.success for run in self.runs)
