"""raw_ohlcv through the real Dagster assets into a DuckDB file in a temp dir."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from alstm_pipeline.warehouse import Warehouse, WarehouseError
from alstm_pipeline_tests.conftest import REPO_ROOT, SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

# 2016-07-04 is Independence Day, a weekday with no trading.
RANGE = ("2016-06-27", "2016-07-08")


@pytest.fixture()
def sample_pipeline(tmp_path, make_warehouse) -> TestPipeline:
    """On each warehouse backend (backends.py)."""
    return TestPipeline(tmp_path, SAMPLE_PATH, warehouse=make_warehouse(tmp_path))


def _raw_counts(store: Warehouse) -> pd.DataFrame:
    return store.query("SELECT date, count(*) AS n FROM raw_ohlcv GROUP BY date ORDER BY date")


def test_range_backfill_writes_each_trading_day_once_and_reruns_identically(sample_pipeline):
    sample_pipeline.run("universe,raw_ohlcv,trading_calendar", *RANGE)
    first = sample_pipeline.warehouse.read_dates("raw_ohlcv", None, None)
    sample_pipeline.run("raw_ohlcv", *RANGE)
    second = sample_pipeline.warehouse.read_dates("raw_ohlcv", None, None)

    expected = pd.read_parquet(SAMPLE_PATH, filters=[("date", ">=", pd.Timestamp(RANGE[0]).date()), ("date", "<=", pd.Timestamp(RANGE[1]).date())])
    assert len(first) == len(expected) == 9 * 100
    pd.testing.assert_frame_equal(first, second)
    assert not first.duplicated(["instrument", "date"]).any()
    assert pd.Timestamp("2016-07-04") not in set(first["date"])
    calendar = sample_pipeline.warehouse.query("SELECT date FROM trading_calendar")
    assert len(calendar) == 9


def test_stored_fields_follow_qlib_adjustment(sample_pipeline):
    sample_pipeline.run("universe,raw_ohlcv", "2016-06-27", "2016-06-27")
    stored = sample_pipeline.warehouse.read_dates("raw_ohlcv", None, None).set_index("instrument")
    source = pd.read_parquet(SAMPLE_PATH, filters=[("date", "==", pd.Timestamp("2016-06-27").date())]).set_index("instrument")
    factor = source["adj_close"] / source["close"]
    assert stored["factor"].to_numpy() == pytest.approx(factor.loc[stored.index].to_numpy(), rel=1e-6)
    assert stored["close"].to_numpy() == pytest.approx((source["close"] * factor).loc[stored.index].to_numpy(), rel=1e-6)
    assert stored["volume"].to_numpy() == pytest.approx((source["volume"] / factor).loc[stored.index].to_numpy(), rel=1e-6)
    assert stored["vwap"].isna().all()


def test_holiday_partition_succeeds_with_zero_rows_and_says_so(sample_pipeline):
    result = sample_pipeline.run("universe,raw_ohlcv", "2016-07-04", "2016-07-04")
    (event,) = sample_pipeline.materialization(result, "raw_ohlcv")
    assert event.metadata["dagster/row_count"].value == 0
    assert "holiday" in event.metadata["note"].value


def test_checks_pass_on_real_bars(sample_pipeline):
    result = sample_pipeline.run("universe,raw_ohlcv", *RANGE)
    checks = sample_pipeline.check_results(result, "raw_ohlcv")
    assert set(checks) == {"prices_ordered", "instrument_count_stable", "no_adjusted_price_jumps"}
    assert all(check.passed for check in checks.values())


def _write_panel(path, frame):
    frame.to_parquet(path, index=False)
    return path


def test_price_order_check_fails_and_names_the_rows(tmp_path):
    bars = pd.read_parquet(SAMPLE_PATH, filters=[("date", ">=", pd.Timestamp("2016-06-27").date()), ("date", "<=", pd.Timestamp("2016-06-28").date())])
    broken = bars.copy()
    row = broken.index[(broken["instrument"] == broken["instrument"].iloc[0])][0]
    broken.loc[row, "high"] = broken.loc[row, "low"] * 0.5  # a high below the low
    pipeline = TestPipeline(tmp_path, _write_panel(tmp_path / "bars.parquet", broken))
    result = pipeline.run("universe,raw_ohlcv", "2016-06-27", "2016-06-28")
    checks = pipeline.check_results(result, "raw_ohlcv")
    assert not checks["prices_ordered"].passed
    assert checks["prices_ordered"].metadata["offending_rows"].value == 1
    assert broken.loc[row, "instrument"] in checks["prices_ordered"].metadata["rows"].value
    assert checks["no_adjusted_price_jumps"].passed


def test_a_split_missing_from_the_factor_is_flagged_against_the_stored_previous_day(tmp_path):
    bars = pd.read_parquet(SAMPLE_PATH, filters=[("date", ">=", pd.Timestamp("2016-06-27").date()), ("date", "<=", pd.Timestamp("2016-06-28").date())])
    pipeline = TestPipeline(tmp_path, _write_panel(tmp_path / "bars.parquet", bars))
    pipeline.run("universe,raw_ohlcv", "2016-06-27", "2016-06-27")
    split = bars.copy()
    day2 = split["date"] == split["date"].max()
    name = split["instrument"].iloc[0]
    # A 4:1 split recorded in the raw prices but not in adj_close: the adjusted close drops to a quarter.
    for column in ("open", "high", "low", "close", "adj_close"):
        if column in split:
            split.loc[day2 & (split["instrument"] == name), column] /= 4
    _write_panel(tmp_path / "bars.parquet", split)
    result = pipeline.run("raw_ohlcv", "2016-06-28", "2016-06-28")
    check = pipeline.check_results(result, "raw_ohlcv")["no_adjusted_price_jumps"]
    assert not check.passed and check.metadata["offending_rows"].value == 1
    assert name in check.metadata["rows"].value


def test_raw_ohlcv_alone_on_a_fresh_home_fails_naming_the_selection_to_use(tmp_path):
    error = TestPipeline(tmp_path, SAMPLE_PATH).run_expecting_failure("raw_ohlcv", "2016-06-27", "2016-06-28")
    assert "universe" in error and "'+raw_ohlcv'" in error


def test_instrument_count_collapse_is_flagged(tmp_path):
    bars = pd.read_parquet(SAMPLE_PATH, filters=[("date", ">=", pd.Timestamp("2016-06-27").date()), ("date", "<=", pd.Timestamp("2016-06-28").date())])
    keep = set(bars["instrument"].unique()[:30])
    collapsed = bars[(bars["date"] == bars["date"].min()) | bars["instrument"].isin(keep)]
    pipeline = TestPipeline(tmp_path, _write_panel(tmp_path / "bars.parquet", collapsed))
    result = pipeline.run("universe,raw_ohlcv", "2016-06-27", "2016-06-28")
    check = pipeline.check_results(result, "raw_ohlcv")["instrument_count_stable"]
    assert not check.passed
    assert "2016-06-28" in check.metadata["rows"].value


def test_universe_file_limits_instruments(tmp_path):
    universe = tmp_path / "market.txt"
    universe.write_text("AAPL\t2010-01-01\t2020-12-31\nIBM\t2015-01-01\t2016-12-31\n")
    pipeline = TestPipeline(tmp_path, SAMPLE_PATH, universe)
    pipeline.run("universe,raw_ohlcv", "2016-06-27", "2016-06-28")
    stored = pipeline.warehouse.read_dates("raw_ohlcv", None, None)
    assert sorted(stored["instrument"].unique()) == ["AAPL", "IBM"]


def test_bad_source_fails_the_run_and_keeps_previous_rows(tmp_path):
    bars = pd.read_parquet(SAMPLE_PATH, filters=[("date", ">=", pd.Timestamp("2016-06-27").date()), ("date", "<=", pd.Timestamp("2016-06-28").date())])
    path = _write_panel(tmp_path / "bars.parquet", bars)
    pipeline = TestPipeline(tmp_path, path)
    pipeline.run("universe,raw_ohlcv", "2016-06-27", "2016-06-28")
    before = pipeline.warehouse.read_dates("raw_ohlcv", None, None)

    broken = bars.copy()
    broken.loc[broken.index[3], "close"] = -1.0
    _write_panel(path, broken)
    error = pipeline.run_expecting_failure("raw_ohlcv", "2016-06-27", "2016-06-28")
    assert str(path) in error and broken.loc[broken.index[3], "instrument"] in error
    pd.testing.assert_frame_equal(pipeline.warehouse.read_dates("raw_ohlcv", None, None), before)


def test_failed_partition_write_rolls_back(tmp_path, make_warehouse):
    store = make_warehouse(tmp_path)
    day = pd.Timestamp("2020-01-02")
    good = pd.DataFrame({"instrument": ["A", "B"], "date": [day, day], "close": [1.0, 2.0]})
    store.replace_date_range("t", good, day, day)
    with pytest.raises(WarehouseError, match="outside the partition range"):
        store.replace_date_range("t", good.assign(date=pd.Timestamp("2020-01-03")), day, day)
    duplicated = pd.concat([good, good])
    with pytest.raises(Exception, match="(?i)duplicate|constraint"):
        store.replace_date_range("t", duplicated, day, day)
    assert len(store.read_dates("t", None, None)) == 2


def test_definitions_validate_from_the_command_line():
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
