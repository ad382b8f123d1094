"""A job the multiprocess executor can rebuild in its step processes (reconstructable):
the project's own data_days job, with resources and executor from the environment."""

from __future__ import annotations

import dagster as dg

DATA_ASSETS = ["universe", "raw_ohlcv", "trading_calendar", "alpha158_features", "labels"]


def data_job() -> dg.JobDefinition:
    from alstm_pipeline.definitions import build_definitions

    return build_definitions().resolve_job_def("data_days")
