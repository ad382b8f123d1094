"""The whole graph on a small slice of the bundled sample, through the real definitions,
and the point-in-time rule under retraining, re-runs, crashes and the promotion gate.

12 instruments, raw 2013-06..2016-06; the fixed vintage trains on 2014, validates on
2015H1 and serves from 2015-07-01; 2 epochs. Small enough for CI, long enough that every
stage runs on real data.
"""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from alstm_pipeline.evaluation import calc_ic
from alstm_pipeline.warehouse import registry
from alstm_pipeline_tests.conftest import SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

INSTRUMENTS = ["AAPL", "AMZN", "BA", "C", "CVX", "GE", "IBM", "JPM", "KO", "MRK", "PG", "XOM"]
FIRST, LAST = "2013-06-03", "2016-06-30"
VINTAGE = "2015-07-01"
TRAINING = {"n_epochs": 2, "seed": 7, "batch_size": 200}
FIXED = {"train_start": "2014-01-01", "train_end": "2014-12-31", "valid_start": "2015-01-01", "valid_end": "2015-06-30",
         "fit_start": "2014-01-01", "fit_end": "2014-12-31", "handler_start": "2014-01-01", **TRAINING}
REPORT = {"start": VINTAGE, "end": ""}
RUN_CONFIG = {"ops": {"alstm_model": {"config": FIXED}, "ic_daily": {"config": REPORT},
                      "backtest_daily": {"config": {**REPORT, "topk": 5, "n_drop": 1}}}}
ROLLING = {"mode": "rolling", "train_days": 120, "valid_days": 40, "trunc_days": 3, **TRAINING}
# Two epochs on 12 names are no model to judge: the tests that are not about the gate open it.
OPEN_GATE = {"gate_max_loss_increase": 10.0, "gate_max_ic_drop": 10.0}
LEAK_QUERY = ("SELECT count(*) FROM predictions p JOIN model_registry m ON p.model_version = m.version "
              "WHERE m.trained_through >= p.date")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> TestPipeline:
    home = tmp_path_factory.mktemp("e2e_home")
    universe = home / "universe.txt"
    universe.write_text("".join(f"{code}\t2000-01-01\t2030-12-31\n" for code in INSTRUMENTS))
    return TestPipeline(home, SAMPLE_PATH, universe)


@pytest.fixture(scope="module")
def full_run(pipeline):
    return pipeline.run("*", FIRST, LAST, run_config=RUN_CONFIG, vintage=VINTAGE)


def _scores(pipeline, first, last) -> pd.DataFrame:
    return pipeline.warehouse.query(
        "SELECT * FROM predictions WHERE date BETWEEN ? AND ? ORDER BY date, instrument", [first, last])


def test_days_before_any_vintage_stay_unscored_and_are_named(pipeline):
    # Runs before full_run in this module: no vintage exists yet.
    pipeline.run("universe,raw_ohlcv,trading_calendar,alpha158_features", "2014-01-02", "2014-03-31")
    result = pipeline.run("predictions", "2014-03-31", "2014-03-31")
    (event,) = pipeline.materialization(result, "predictions")
    assert event.metadata["days_without_vintage"].value == 1
    assert event.metadata["dagster/row_count"].value == 0


def test_whole_graph_scores_every_day_from_the_vintage_on(pipeline, full_run):
    store = pipeline.warehouse
    predictions = store.query("SELECT * FROM predictions")
    features = store.query("SELECT instrument, date FROM alpha158_features WHERE date >= ?", [VINTAGE])
    assert len(predictions) == len(features)  # every universe row from the vintage's first day
    assert pd.to_datetime(predictions["date"]).min() >= pd.Timestamp(VINTAGE)
    assert set(predictions["instrument"]) == set(INSTRUMENTS) and predictions["score"].notna().all()
    (version,) = predictions["model_version"].unique()
    row = registry.read_registry(store).set_index("version").loc[version]
    assert row["status"] == "promoted" and row["trained_through"] == pd.Timestamp("2015-06-30")
    (model_event,) = pipeline.materialization(full_run, "alstm_model")
    assert model_event.metadata["epochs_run"].value == 2
    assert model_event.metadata["version"].value == version
    assert "data:image/png;base64," in model_event.metadata["loss_curves"].value
    # The asset page shows the curves inline as text: two epochs, two block characters.
    curve = model_event.metadata["valid_loss_by_epoch"].value.split()
    assert len(curve[-1]) == 2 and curve[-1].strip("▁▂▃▄▅▆▇█") == "" and "points)" in curve
    # The gate's result names the vintage and model it judged (the check is partitioned like
    # the asset) and is stored with the materialization, not before it.
    gate = pipeline.check_results(full_run, "alstm_model")["promotion_gate"]
    assert gate.partition == VINTAGE and gate.passed and gate.metadata["version"].value == version
    (model_run,) = [run for run in full_run.runs if run.asset_materializations_for_node("alstm_model")]
    logs = pipeline.instance.all_logs(model_run.run_id)
    materialized = max(e.timestamp for e in logs if e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION)
    evaluated = min(e.timestamp for e in logs if e.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert evaluated >= materialized
    assert store.query(LEAK_QUERY).iloc[0, 0] == 0


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
    events = pipeline.materialization(full_run, "ic_daily")
    assert {"IC", "ICIR", "Rank IC", "Rank ICIR", "vintages"} <= set(events[-1].metadata)
    assert events[-1].metadata["vintages_trained_on_scored_days"].value == 0


def test_backtest_runs_on_a_universe_smaller_than_topk(pipeline, full_run):
    daily = pipeline.warehouse.query("SELECT * FROM backtest_daily")
    test_days = pipeline.warehouse.query("SELECT count(*) FROM trading_calendar WHERE date >= ?", [VINTAGE]).iloc[0, 0]
    assert len(daily) == test_days
    assert daily["n_holdings"].max() <= 5 + 1
    (event,) = pipeline.materialization(full_run, "backtest_daily")
    assert "excess_return_with_cost.information_ratio" in event.metadata
    assert np.isfinite(event.metadata["excess_return_with_cost.annualized_return"].value)
    assert "data:image/png;base64," in event.metadata["equity_curves"].value


def test_rerunning_a_day_gives_the_same_scores(pipeline, full_run):
    before = _scores(pipeline, "2016-03-01", "2016-03-04")
    pipeline.run("predictions,ic_daily", "2016-03-01", "2016-03-04", run_config={"ops": {"ic_daily": {"config": REPORT}}})
    pd.testing.assert_frame_equal(before, _scores(pipeline, "2016-03-01", "2016-03-04"), check_exact=True)


def test_a_later_retrain_never_rescores_the_days_before_it(pipeline, full_run):
    """The leak of issue 8, shut: a vintage trained on days that were already scored, then
    those days re-run — scores, versions and IC unchanged; only days after it move."""
    old_days = ("2015-08-03", "2015-12-31")
    before, ic_before = _scores(pipeline, *old_days), pipeline.warehouse.query(
        "SELECT * FROM ic_daily WHERE date BETWEEN ? AND ? ORDER BY date", list(old_days))
    pipeline.run("alstm_model", run_config={"ops": {"alstm_model": {"config": {**ROLLING, **OPEN_GATE, "warm_start": True}}}},
                 vintage="2016-04-01")
    new = registry.read_registry(pipeline.warehouse).set_index("vintage").loc["2016-04-01"]
    assert new["trained_through"] == pd.Timestamp("2016-03-29")  # trunc 3: labels known the evening before
    assert new["trained_through"] > pd.Timestamp(old_days[1])  # it saw every old day

    pipeline.run("predictions,ic_daily", old_days[0], "2016-06-30", run_config={"ops": {"ic_daily": {"config": REPORT}}})
    pd.testing.assert_frame_equal(before, _scores(pipeline, *old_days), check_exact=True)
    ic_after = pipeline.warehouse.query("SELECT * FROM ic_daily WHERE date BETWEEN ? AND ? ORDER BY date", list(old_days))
    pd.testing.assert_frame_equal(ic_before, ic_after, check_exact=True)
    later = _scores(pipeline, "2016-04-01", "2016-06-30")
    assert set(later["model_version"]) == {new["version"]}
    assert pipeline.warehouse.query(LEAK_QUERY).iloc[0, 0] == 0


def test_a_crash_between_checkpoint_and_registry_leaves_the_previous_state(pipeline, full_run, monkeypatch):
    before_registry = registry.read_registry(pipeline.warehouse)
    before = _scores(pipeline, "2016-05-02", "2016-05-06")

    def crash(*args, **kwargs):
        raise OSError("killed after the checkpoint was written")

    monkeypatch.setattr(registry, "register_vintage", crash)
    pipeline.run_expecting_failure("alstm_model", run_config={"ops": {"alstm_model": {"config": {**ROLLING, **OPEN_GATE}}}},
                                   vintage="2016-05-02")
    monkeypatch.undo()
    pd.testing.assert_frame_equal(registry.read_registry(pipeline.warehouse), before_registry)
    pipeline.run("predictions", "2016-05-02", "2016-05-06")
    pd.testing.assert_frame_equal(before, _scores(pipeline, "2016-05-02", "2016-05-06"), check_exact=True)


def test_a_vintage_failing_the_gate_is_registered_as_rejected_and_never_serves(pipeline, full_run):
    before = _scores(pipeline, "2016-06-01", "2016-06-30")
    strict = {**ROLLING, "gate_max_loss_increase": -0.99}  # demands a 99 % lower loss: cannot pass
    pipeline.run_expecting_failure("alstm_model", run_config={"ops": {"alstm_model": {"config": strict}}},
                                   vintage="2016-06-01")
    row = registry.read_registry(pipeline.warehouse).set_index("vintage").loc["2016-06-01"]
    assert row["status"] == "rejected" and "keeps serving" in row["gate_reason"]
    pipeline.run("predictions", "2016-06-01", "2016-06-30")
    pd.testing.assert_frame_equal(before, _scores(pipeline, "2016-06-01", "2016-06-30"), check_exact=True)


def test_a_seed_unit_vintage_serves_the_mean_and_reports_each_seed(pipeline, full_run):
    """Qlib's benchmark protocol as one vintage: seeds 7 and 8 trained together, the
    served score is their mean, backtest_daily shows each seed's figures and mean ± std."""
    config = {**ROLLING, **OPEN_GATE, "n_epochs": 1, "seeds": [7, 8]}
    result = pipeline.run("alstm_model", run_config={"ops": {"alstm_model": {"config": config}}}, vintage="2016-06-15")
    (event,) = pipeline.materialization(result, "alstm_model")
    assert event.metadata["seeds"].value == "[7, 8]"
    assert "| 8 |" in event.metadata["per_seed_training"].value
    row = registry.read_registry(pipeline.warehouse).set_index("vintage").loc["2016-06-15"]
    assert row["seeds"] == "[7, 8]" and row["status"] == "promoted"

    period = {"start": "2016-06-15", "end": "2016-06-30"}
    result = pipeline.run("predictions,ic_daily,backtest_daily", "2016-06-15", "2016-06-30", run_config={"ops": {
        "ic_daily": {"config": period}, "backtest_daily": {"config": {**period, "topk": 5, "n_drop": 1}}}})
    assert set(_scores(pipeline, "2016-06-15", "2016-06-30")["model_version"]) == {row["version"]}
    (backtest,) = pipeline.materialization(result, "backtest_daily")
    table = backtest.metadata["seed_table"].value
    assert "seed 7" in table and "seed 8" in table and "±" in table and "ensemble" in table
    days = len(pipeline.warehouse.query("SELECT * FROM backtest_daily WHERE date BETWEEN '2016-06-15' AND '2016-06-30'"))
    assert f"{days} points" in backtest.metadata["cumulative_excess_return_with_cost"].value


def test_predicting_a_day_without_features_fails_and_names_the_day(pipeline, full_run):
    # Runs last: it ingests a day beyond the range above.
    pipeline.run("raw_ohlcv,trading_calendar", "2016-07-01", "2016-07-01")
    error = pipeline.run_expecting_failure("predictions", "2016-07-01", "2016-07-01")
    assert "no alpha158_features rows for 2016-07-01" in error
    assert pipeline.warehouse.query("SELECT count(*) FROM predictions WHERE date = '2016-07-01'").iloc[0, 0] == 0
