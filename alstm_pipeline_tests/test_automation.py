"""Schedules, rolling vintages and the raw-backfill sensor produce the right requests."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from alstm_pipeline import vintages
from alstm_pipeline.defs.automation import (
    BACKFILL_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    SCORE_AFTER_TAG,
    daily_update_schedule,
    follow_raw_backfill,
    retrain_request,
    score_new_days,
)
from alstm_pipeline.settings import load_settings
from alstm_pipeline.warehouse import Warehouse, registry
from alstm_pipeline_tests.conftest import SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

NEW_YORK = ZoneInfo("America/New_York")


def _range(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]


def test_daily_update_covers_today_and_the_days_whose_label_just_completed():
    # Wednesday 2021-04-21, 18:30 in New York: today's bars are in.
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2021, 4, 21, 18, 30, tzinfo=NEW_YORK))
    request = daily_update_schedule(context)
    # Today, and back far enough that the label of 2021-04-19 (needs 04-20 and 04-21) is redone.
    assert _range(request) == ("2021-04-15", "2021-04-21")
    assert request.run_key == "daily_update-2021-04-21"
    # The data run asks score_new_days to score the same days afterwards.
    assert request.tags[SCORE_AFTER_TAG] == "predictions,ic_daily,backtest_daily"


def test_daily_update_on_a_monday_reaches_back_over_the_weekend():
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2021, 4, 19, 18, 30, tzinfo=NEW_YORK))
    assert _range(daily_update_schedule(context)) == ("2021-04-13", "2021-04-19")


def _qlib_rolling_windows(calendar, test_start, test_end, step, train_days, valid_days, trunc_days):
    """Qlib's RollingGen(step, rtype=ROLL_SD, trunc_days), written out from its semantics:
    the base task's test segment starts at the first trading day of the period; task k
    shifts every segment by k·step trading days; train and valid are then truncated so
    they end ``trunc_days`` trading days before the task's test start (TimeAdjuster.truncate);
    the last task's test runs to the end of the period."""
    days = list(calendar)
    first = days.index(calendar[calendar >= pd.Timestamp(test_start)][0])
    last = days.index(calendar[calendar <= pd.Timestamp(test_end)][-1])
    windows = []
    for test_at in range(first, last + 1, step):
        valid_end = test_at - trunc_days
        valid_start = valid_end - valid_days + 1
        train_start, train_end = valid_start - train_days, valid_start - 1
        windows.append({
            "test": (days[test_at], days[min(test_at + step - 1, last)]),
            "train": (days[train_start], days[train_end]),
            "valid": (days[valid_start], days[valid_end]),
        })
    return windows


def test_rolling_vintages_follow_qlib_rollinggen_windows():
    calendar = pd.DatetimeIndex(pd.read_parquet(SAMPLE_PATH, columns=["date"])["date"].unique()).sort_values()
    expected = _qlib_rolling_windows(calendar, "2017-01-01", "2017-06-30", step=20, train_days=250, valid_days=60, trunc_days=2)
    keys = vintages.rolling_keys(calendar, "2017-01-01", "2017-06-30", step=20)
    assert len(keys) == len(expected) == 7
    for key, window in zip(keys, expected):
        plan = vintages.rolling_plan(key, calendar, train_days=250, valid_days=60, trunc_days=2)
        assert pd.Timestamp(plan.serves_from) == window["test"][0]
        assert (pd.Timestamp(plan.train_start), pd.Timestamp(plan.train_end)) == window["train"]
        assert (pd.Timestamp(plan.valid_start), pd.Timestamp(plan.valid_end)) == window["valid"]
        assert plan.fit_start == plan.train_start and plan.fit_end == plan.train_end
        assert plan.trained_through < plan.serves_from


def test_serving_picks_the_newest_promoted_vintage_serving_from_the_day():
    registry_frame = pd.DataFrame({
        "version": ["fixed", "v2", "v3-rejected", "v4"],
        "serves_from": pd.to_datetime(["2017-01-01", "2017-02-01", "2017-03-01", "2017-04-03"]),
        "trained_through": pd.to_datetime(["2016-12-30", "2017-01-27", "2017-02-24", "2017-03-29"]),
        "created_at": pd.to_datetime(["2021-01-01", "2021-01-05", "2021-01-06", "2021-01-02"]),
        "status": ["promoted", "promoted", "rejected", "promoted"],
    })
    days = pd.to_datetime(["2016-12-30", "2017-01-03", "2017-02-01", "2017-03-15", "2017-04-03"])
    chosen = vintages.serving_versions(days, registry_frame).tolist()
    assert chosen == [None, "fixed", "v2", "v2", "v4"]  # the rejected vintage never serves


def test_promotion_gate_rules():
    assert vintages.promotion_gate(1.0, 0.02, None, None, 0.05, 0.02).passed
    assert vintages.promotion_gate(1.04, 0.02, 1.0, 0.03, 0.05, 0.02).passed
    worse_loss = vintages.promotion_gate(1.06, 0.03, 1.0, 0.03, 0.05, 0.02)
    assert not worse_loss.passed and "validation loss" in worse_loss.reason
    worse_ic = vintages.promotion_gate(1.0, 0.005, 1.0, 0.03, 0.05, 0.02)
    assert not worse_ic.passed and "validation IC" in worse_ic.reason


def test_a_vintage_may_not_end_on_or_after_its_first_day():
    calendar = pd.bdate_range("2015-01-01", "2016-12-30")
    with pytest.raises(vintages.VintageError, match="not before the first day"):
        vintages.fixed_plan("2016-06-01", calendar, ("2015-01-01", "2015-12-31"), ("2016-01-01", "2016-12-31"),
                            ("2015-01-01", "2015-12-31"), "2015-01-01")


def _labelled_warehouse(path, days, store: Warehouse | None = None) -> Warehouse:
    store = store or Warehouse(path / "warehouse.duckdb")
    raw = pd.DataFrame({"instrument": "AAPL", "date": days, "close": np.float32(1.0)})
    store.replace_date_range("raw_ohlcv", raw, days[0], days[-1])
    labels = pd.DataFrame({"instrument": "AAPL", "date": days, "LABEL0": np.float32(0.01)})
    store.replace_date_range("labels", labels, days[0], days[-1])
    with store.transaction() as con:
        con.execute("CREATE VIEW trading_calendar AS SELECT DISTINCT date FROM raw_ohlcv ORDER BY date")
    return store


def test_retrain_request_is_tonights_rolling_vintage_then_waits_a_step(tmp_path, make_warehouse):
    settings = load_settings()
    days = pd.bdate_range("2010-01-04", "2019-06-28")
    store = _labelled_warehouse(tmp_path, days, make_warehouse(tmp_path))
    request = retrain_request(store, pd.Timestamp("2019-06-28"), settings)
    assert request.partition_key == "2019-07-01"  # serves from the next weekday
    config = request.run_config["ops"]["alstm_model"]["config"]
    assert config["mode"] == "rolling" and config["trunc_days"] == settings.trunc_days

    plan = vintages.rolling_plan("2019-07-01", days, settings.train_days, settings.valid_days, settings.trunc_days)
    assert plan.trained_through == "2019-06-26"  # labels of 06-26 need 06-27 and 06-28: known that evening
    registry.register_vintage(store, {
        "version": "v1", "vintage": "2019-07-01", **plan.to_dict(), "created_at": pd.Timestamp("2019-06-28 20:00"),
        "status": "promoted", "checkpoint": "unused", "sha256": "0" * 64,
    }, pd.DataFrame({"feature": ["KMID"], "median": [0.0], "scale": [1.0]}))
    skip = retrain_request(store, pd.Timestamp("2019-07-03"), settings)
    assert isinstance(skip, dg.SkipReason) and "RETRAIN_STEP" in skip.skip_message


def test_retrain_waits_for_labels(tmp_path, make_warehouse):
    store = make_warehouse(tmp_path)
    assert isinstance(retrain_request(store, pd.Timestamp("2021-04-21")), dg.SkipReason)


def test_sensor_follows_a_raw_only_run_and_ignores_full_runs(tmp_path):
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


def test_sensor_leaves_alone_a_multi_run_backfill_that_recomputes_features(tmp_path):
    """A UI backfill runs raw_ohlcv and alpha158_features as separate runs sharing the
    dagster/backfill tag: the raw run alone must not trigger a second recomputation."""
    pipeline = TestPipeline(tmp_path, SAMPLE_PATH)
    pipeline.run("universe,raw_ohlcv,trading_calendar", "2016-03-01", "2016-03-04")
    context = dg.build_sensor_context(instance=pipeline.instance)
    follow_raw_backfill(context)
    tag = {BACKFILL_TAG: "bkfl1"}
    pipeline.run("raw_ohlcv", "2016-03-01", "2016-03-04", tags=tag)
    pipeline.run("alpha158_features", "2016-03-01", "2016-03-04", tags=tag)
    context = dg.build_sensor_context(instance=pipeline.instance, cursor=context.cursor)
    assert isinstance(follow_raw_backfill(context), dg.SkipReason)

    pipeline.run("raw_ohlcv", "2016-03-02", "2016-03-02", tags={BACKFILL_TAG: "bkfl2"})  # raw only
    context = dg.build_sensor_context(instance=pipeline.instance, cursor=context.cursor)
    assert _range(follow_raw_backfill(context))[0] == "2016-02-25"


def _score_new_days_after(pipeline: TestPipeline, tags: dict[str, str]):
    """What score_new_days answers to a successful data_days run with ``tags``."""
    job = pipeline.defs.resolve_job_def("data_days")
    result = job.execute_in_process(instance=pipeline.instance, asset_selection=[dg.AssetKey("universe")], tags=tags)
    assert result.success
    context = dg.build_run_status_sensor_context(
        sensor_name="score_new_days", dagster_event=result.get_run_success_event(),
        dagster_instance=pipeline.instance, dagster_run=result.dagster_run,
    )
    return score_new_days(context)


def test_scoring_follows_a_scheduled_data_run_but_not_a_cli_run(tmp_path):
    pipeline = TestPipeline(tmp_path, SAMPLE_PATH)
    days = {RANGE_START_TAG: "2016-03-01", RANGE_END_TAG: "2016-03-04"}
    request = _score_new_days_after(pipeline, {**days, SCORE_AFTER_TAG: "predictions,ic_daily"})
    assert isinstance(request, dg.RunRequest)
    assert _range(request) == ("2016-03-01", "2016-03-04")
    assert request.asset_selection == [dg.AssetKey("predictions"), dg.AssetKey("ic_daily")]
    # The CLI scores in its own next run: its data runs carry no such tag.
    assert isinstance(_score_new_days_after(pipeline, days), dg.SkipReason)
