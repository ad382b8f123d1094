"""The whole graph on a small slice of the bundled sample, through the real definitions.

12 instruments, raw 2013-06..2016-06, normaliser and train 2014, valid 2015H1, test
2015H2..end, 2 training epochs: small enough for CI, long enough that every stage runs on
real data (windows need 20 days, labels two more, IC needs several instruments a day).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alstm_pipeline.evaluation import calc_ic
from alstm_pipeline_tests.conftest import SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

INSTRUMENTS = ["AAPL", "AMZN", "BA", "C", "CVX", "GE", "IBM", "JPM", "KO", "MRK", "PG", "XOM"]
FIRST, LAST = "2013-06-03", "2016-06-30"
RUN_CONFIG = {
    "ops": {
        "feature_normalizer": {"config": {"fit_start": "2014-01-01", "fit_end": "2014-12-31"}},
        "train_segment": {"config": {"start": "2014-01-01", "end": "2014-12-31"}},
        "valid_segment": {"config": {"start": "2015-01-01", "end": "2015-06-30"}},
        "test_segment": {"config": {"start": "2015-07-01", "end": ""}},
        "alstm_model": {"config": {"n_epochs": 2, "seed": 7, "batch_size": 200}},
        "backtest_report": {"config": {"topk": 5, "n_drop": 1}},
    }
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> TestPipeline:
    home = tmp_path_factory.mktemp("e2e_home")
    universe = home / "universe.txt"
    universe.write_text("".join(f"{code}\t2000-01-01\t2030-12-31\n" for code in INSTRUMENTS))
    return TestPipeline(home, SAMPLE_PATH, universe)


@pytest.fixture(scope="module")
def full_run(pipeline):
    return pipeline.run("*", FIRST, LAST, run_config=RUN_CONFIG)


def test_predictions_without_a_model_fail_with_a_clear_message(pipeline):
    # Runs before full_run in this module: no checkpoint exists yet.
    pipeline.run("universe,raw_ohlcv,trading_calendar,alpha158_features", "2014-01-02", "2014-03-31")
    error = pipeline.run_expecting_failure("daily_predictions", "2014-03-31", "2014-03-31")
    assert "no model checkpoint" in error and "alstm_model" in error


def test_whole_graph_materialises_and_scores_every_day(pipeline, full_run):
    store = pipeline.warehouse
    predictions = store.query("SELECT * FROM predictions")
    features = store.query("SELECT instrument, date FROM alpha158")
    assert len(predictions) == len(features)  # every universe row of every day gets a score
    assert set(predictions["instrument"]) == set(INSTRUMENTS)
    assert predictions["score"].notna().all()
    assert predictions["model_version"].nunique() == 1
    (model_event,) = pipeline.materialization(full_run, "alstm_model")
    assert model_event.metadata["epochs_run"].value == 2
    assert model_event.metadata["version"].value == predictions["model_version"].iloc[0]
    assert "data:image/png;base64," in model_event.metadata["loss_curves"].value


def test_ic_table_equals_calc_ic_of_stored_scores_and_labels(pipeline, full_run):
    store = pipeline.warehouse
    ic_daily = store.query("SELECT * FROM ic_daily ORDER BY date")
    joined = store.query(
        "SELECT p.date AS datetime, p.instrument, p.score, l.LABEL0 FROM predictions p JOIN labels l USING (instrument, date)"
    )
    joined["datetime"] = pd.to_datetime(joined["datetime"])
    indexed = joined.set_index(["datetime", "instrument"])
    ic, rank_ic = calc_ic(indexed["score"], indexed["LABEL0"])
    ic = ic.dropna()
    assert len(ic_daily) == len(ic)
    np.testing.assert_allclose(ic_daily["ic"].to_numpy(), ic.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(ic_daily["rank_ic"].to_numpy(), rank_ic.dropna().to_numpy(), rtol=1e-12)
    # The last two trading days have no label yet: no IC row, not a wrong number.
    last_two = store.query("SELECT date FROM trading_calendar ORDER BY date DESC LIMIT 2")["date"]
    assert not set(pd.to_datetime(last_two)) & set(pd.to_datetime(ic_daily["date"]))
    events = pipeline.materialization(full_run, "ic_report")
    assert {"IC", "ICIR", "Rank IC", "Rank ICIR"} <= set(events[-1].metadata)


def test_backtest_runs_on_a_universe_smaller_than_topk(pipeline, full_run):
    daily = pipeline.warehouse.query("SELECT * FROM backtest_daily")
    test_days = pipeline.warehouse.query("SELECT count(*) FROM trading_calendar WHERE date >= '2015-07-01'").iloc[0, 0]
    assert len(daily) == test_days
    assert daily["n_holdings"].max() <= 5 + 1
    (event,) = pipeline.materialization(full_run, "backtest_report")
    assert "excess_return_with_cost.information_ratio" in event.metadata
    assert np.isfinite(event.metadata["excess_return_with_cost.annualized_return"].value)


def test_rerunning_a_day_gives_the_same_scores(pipeline, full_run):
    store = pipeline.warehouse
    before = store.read_dates("predictions", "2016-03-01", "2016-03-04")
    pipeline.run("daily_predictions,ic_report", "2016-03-01", "2016-03-04")
    after = store.read_dates("predictions", "2016-03-01", "2016-03-04")
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    assert len(store.query("SELECT * FROM predictions")) == len(store.query("SELECT * FROM alpha158"))


def test_retraining_records_the_new_model_version(pipeline, full_run):
    old = pipeline.warehouse.query("SELECT DISTINCT model_version FROM predictions WHERE date = '2016-06-30'").iloc[0, 0]
    config = {"ops": {"alstm_model": {"config": {"n_epochs": 1, "seed": 8, "batch_size": 200, "warm_start": True}}}}
    pipeline.run("alstm_model", run_config=config)
    pipeline.run("daily_predictions", "2016-06-30", "2016-06-30")
    new = pipeline.warehouse.query("SELECT DISTINCT model_version FROM predictions WHERE date = '2016-06-30'")
    assert len(new) == 1 and new.iloc[0, 0] != old


def test_predicting_a_day_without_features_fails_and_names_the_day(pipeline, full_run):
    # Runs last: it ingests a day beyond the range above.
    pipeline.run("raw_ohlcv,trading_calendar", "2016-07-01", "2016-07-01")
    error = pipeline.run_expecting_failure("daily_predictions", "2016-07-01", "2016-07-01")
    assert "no alpha158 rows for 2016-07-01" in error
    assert pipeline.warehouse.query("SELECT count(*) FROM predictions WHERE date = '2016-07-01'").iloc[0, 0] == 0
