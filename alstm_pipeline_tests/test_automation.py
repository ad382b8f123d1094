"""Schedules and the raw-backfill sensor produce the right run requests."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import pandas as pd
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from alstm_pipeline.defs.automation import (
    daily_retrain_schedule,
    daily_update_schedule,
    follow_raw_backfill,
    rolling_segments,
)
from alstm_pipeline.warehouse import Warehouse
from alstm_pipeline_tests.conftest import SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

NEW_YORK = ZoneInfo("America/New_York")


def _range(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]


def test_daily_update_covers_today_and_the_days_whose_label_just_completed():
    # Wednesday 2021-04-21, 18:30 in New York: today's bars are in.
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2021, 4, 21, 18, 30, tzinfo=NEW_YORK))
    request = daily_update_schedule(context)
    # Today, and back far enough that the label of 2021-04-19 (needs 04-20 and 04-21) is redone.
    assert _range(request) == ("2021-04-15", "2021-04-21")
    assert request.run_key == "daily_update-2021-04-21"


def test_daily_update_on_a_monday_reaches_back_over_the_weekend():
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2021, 4, 19, 18, 30, tzinfo=NEW_YORK))
    assert _range(daily_update_schedule(context)) == ("2021-04-13", "2021-04-19")


def test_rolling_segments_end_at_the_last_labelled_day():
    segments = rolling_segments(pd.Timestamp("2021-04-16"), train_years=7, valid_years=2)
    assert segments == {
        "train_segment": {"start": "2012-04-17", "end": "2019-04-16", "handler_start": "2012-04-17"},
        "valid_segment": {"start": "2019-04-17", "end": "2021-04-16", "handler_start": "2012-04-17"},
    }


def test_retrain_skips_until_labels_exist_then_requests_rolling_segments(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path))
    when = datetime(2021, 4, 21, 20, 0, tzinfo=NEW_YORK)
    assert isinstance(daily_retrain_schedule(dg.build_schedule_context(scheduled_execution_time=when)), dg.SkipReason)

    days = pd.to_datetime(["2021-04-15", "2021-04-16", "2021-04-19"])
    labels = pd.DataFrame({"instrument": "AAPL", "date": days, "LABEL0": np.array([0.01, 0.02, np.nan], dtype="float32")})
    Warehouse(tmp_path / "warehouse.duckdb").replace_date_range("labels", labels, days[0], days[-1])
    request = daily_retrain_schedule(dg.build_schedule_context(scheduled_execution_time=when))
    assert request.partition_key == "2021-04-21"
    ops = request.run_config["ops"]
    assert ops["valid_segment"]["config"]["end"] == "2021-04-16"  # 04-19's label is not known yet
    assert ops["alstm_model"]["config"] == {"warm_start": True, "n_epochs": 5}


def test_sensor_follows_a_raw_only_backfill_and_ignores_full_runs(tmp_path):
    pipeline = TestPipeline(tmp_path, SAMPLE_PATH)
    pipeline.run("universe,raw_ohlcv,trading_calendar,alpha158_features", "2016-03-01", "2016-03-04")
    context = dg.build_sensor_context(instance=pipeline.instance)
    assert isinstance(follow_raw_backfill(context), dg.SkipReason)  # features were computed in the same run

    pipeline.run("raw_ohlcv", "2016-03-03", "2016-03-03")  # a late correction of one day
    context = dg.build_sensor_context(instance=pipeline.instance, cursor=context.cursor)
    request = follow_raw_backfill(context)
    first, last = _range(request)
    assert first == "2016-02-26"  # labels of the two trading days before 03-03 change
    assert last > "2016-06-01"  # features of the following ~60 trading days read 03-03
    again = dg.build_sensor_context(instance=pipeline.instance, cursor=context.cursor)
    assert isinstance(follow_raw_backfill(again), dg.SkipReason)  # the cursor moved on
