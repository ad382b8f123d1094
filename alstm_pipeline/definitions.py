"""The one Definitions object: ``dagster dev`` finds it through workspace.yaml."""

from __future__ import annotations

import dagster as dg

from alstm_pipeline.defs import automation, features, ingest, model, serving
from alstm_pipeline.defs.resources import default_resources

ALL_ASSETS_JOB = "all_assets"

defs = dg.Definitions(
    assets=[
        ingest.universe,
        ingest.raw_ohlcv,
        ingest.trading_calendar,
        features.alpha158_features,
        features.labels,
        model.feature_normalizer,
        model.train_segment,
        model.valid_segment,
        model.test_segment,
        model.alstm_model,
        serving.daily_predictions,
        serving.ic_report,
        serving.backtest_report,
    ],
    jobs=[
        dg.define_asset_job(ALL_ASSETS_JOB, selection=dg.AssetSelection.all(), description="every asset, in dependency order"),
        automation.daily_update_job,
        automation.retrain_job,
        automation.downstream_job,
    ],
    schedules=[automation.daily_update_schedule, automation.daily_retrain_schedule],
    sensors=[automation.follow_raw_backfill],
    resources=default_resources(),
    # One process writes the DuckDB file at a time (DESIGN.md, known costs): steps of a
    # run execute one after another in the run's process, which on a 2-core machine is
    # also faster than a process per step.
    executor=dg.in_process_executor,
)
