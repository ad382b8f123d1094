"""A job the multiprocess executor can rebuild in its step processes (reconstructable):
the data assets of the project's definitions, resources and executor from the environment."""

from __future__ import annotations

import dagster as dg

DATA_ASSETS = ["universe", "raw_ohlcv", "trading_calendar", "alpha158_features", "labels"]


def data_job() -> dg.JobDefinition:
    from alstm_pipeline.definitions import build_definitions

    job = dg.define_asset_job("data_days", selection=DATA_ASSETS)
    return dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job])).resolve_job_def("data_days")
