"""``alstm-pipeline run --qlib-config``, the backtest's positions and trades, ``export`` and
MLflow tracking, end to end through the CLI on the bundled sample.

The workflow file (fixtures/qlib_alstm_sample.yaml) names a provider folder and a market;
the test makes both: the sample Parquet and instruments/sample12.txt with 12 names. The
file's benchmark INTC is outside the universe (read from the source), its limit 5 % and
its deals at the open, so each of those paths runs. One run of the whole graph.

Before it, the main job ran into the same home with the same vintage key (2015-04-01) and
another configuration: the workflow's results go to its experiment ("alstm_sample") and
the main job's vintage, scores and IC stay exactly as they were (issue 15, item 6).
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from alstm_pipeline import cli, exports
from alstm_pipeline.evaluation import raw_change, run_topk_dropout
from alstm_pipeline.defs.partitions import FEATURE_LOOKBACK
from alstm_pipeline.qlib_workflow import load_workflow, workflow_plan
from alstm_pipeline.warehouse import Warehouse, registry, tables
from alstm_pipeline_tests.conftest import SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

FIXTURES = Path(__file__).parent / "fixtures"
WORKFLOW = FIXTURES / "qlib_alstm_sample.yaml"
INSTRUMENTS = ["AAPL", "AMZN", "BA", "C", "CVX", "GE", "IBM", "JPM", "KO", "MRK", "PG", "XOM"]
VINTAGE = "2015-04-01"  # the file's test segment start
EXPERIMENT = "alstm_sample"  # the file's experiment_name
# The main job on the same data and vintage key, with its own (smaller) configuration.
MAIN_MODEL = {"train_start": "2014-07-01", "train_end": "2014-12-31", "valid_start": "2015-01-02", "valid_end": "2015-03-31",
              "fit_start": "2014-07-01", "fit_end": "2014-12-31", "handler_start": "2014-07-01",
              "n_epochs": 1, "seed": 3, "batch_size": 200, "hidden_size": 8}
MAIN_REPORT = {"start": VINTAGE, "end": "2015-06-30"}
MAIN_CONFIG = {"ops": {"alstm_model": {"config": MAIN_MODEL}, "ic_daily": {"config": MAIN_REPORT},
                       "backtest_daily": {"config": {**MAIN_REPORT, "topk": 4, "n_drop": 1}}}}
MAIN_DAYS = ("2014-03-17", "2015-06-30")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A provider folder, a home, and the environment a user would have (module-wide)."""
    root = tmp_path_factory.mktemp("qlib_run")
    provider = root / "provider"
    (provider / "instruments").mkdir(parents=True)
    (provider / SAMPLE_PATH.name).symlink_to(SAMPLE_PATH)
    (provider / "instruments" / "sample12.txt").write_text("".join(f"{c}\t2000-01-01\t2030-12-31\n" for c in INSTRUMENTS))
    patch = pytest.MonkeyPatch()
    patch.setenv("PROVIDER_DIR", str(provider))
    patch.setenv("ALSTM_PIPELINE_HOME", str(root / "home"))
    patch.setenv("ALSTM_PIPELINE_MLFLOW", "1")  # this module checks the runs it logs
    for name in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "ALSTM_PIPELINE_START", "ALSTM_PIPELINE_END",
                 "ALSTM_PIPELINE_SOURCE", "ALSTM_PIPELINE_UNIVERSE"):
        patch.delenv(name, raising=False)
    yield {"root": root, "home": root / "home", "provider": provider}
    patch.undo()


@pytest.fixture(scope="module")
def main_job(env):
    """The main job (experiment "main") in the home the workflow will run into; what it
    served, read back before the workflow runs."""
    provider = env["provider"]
    pipeline = TestPipeline(env["home"], provider / SAMPLE_PATH.name, provider / "instruments" / "sample12.txt")
    pipeline.run("*", *MAIN_DAYS, run_config=MAIN_CONFIG, vintage=VINTAGE)
    store = pipeline.warehouse
    return {"pipeline": pipeline, "registry": registry.read_registry(store, "main"),
            "scores": tables.read_predictions(store, VINTAGE, "2015-06-30"), "ic": tables.read_ic_daily(store, VINTAGE, None),
            "backtest": tables.read_backtest(store)}


@pytest.fixture(scope="module")
def ran(env, main_job):
    # An in-memory instance: the persistent one's SQLite event log costs more time than the
    # whole graph on this universe, and test_webserver covers CLI runs in the persistent instance.
    patch = pytest.MonkeyPatch()
    patch.setattr(cli, "open_instance", lambda settings: dg.DagsterInstance.ephemeral())
    status = cli.main(["run", "--qlib-config", str(WORKFLOW)])
    patch.undo()
    assert status == 0
    return Warehouse(env["home"] / "warehouse.duckdb")


def test_a_workflow_with_unsupported_keys_runs_nothing(env, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path / "home"))
    bad = FIXTURES / "qlib_unsupported_keys.yaml"
    assert cli.main(["run", "--qlib-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cannot be honoured" in err and "Nothing was run" in err
    assert not (tmp_path / "home").exists()  # not even a home, a warehouse or an instance


def test_registry_and_card_show_the_workflow_segments_and_hyper_parameters(ran):
    spec = load_workflow(WORKFLOW)
    (row,) = registry.read_registry(ran, EXPERIMENT).query("vintage == @VINTAGE").itertuples()
    for name, (start, end) in (("train", spec.segments["train"]), ("valid", spec.segments["valid"])):
        assert str(getattr(row, f"{name}_start"))[:10] == start and str(getattr(row, f"{name}_end"))[:10] == end
    assert (str(row.fit_start)[:10], str(row.fit_end)[:10]) == ("2014-07-01", "2014-12-31")
    card = json.loads((Path(row.checkpoint) / "card.json").read_text())
    config = card["config"]
    assert {k: config[k] for k in ("hidden_size", "num_layers", "dropout", "lr", "batch_size", "seed", "n_epochs", "early_stop")} == \
        {"hidden_size": 16, "num_layers": 1, "dropout": 0.1, "lr": 0.002, "batch_size": 200, "seed": 11, "n_epochs": 2, "early_stop": 5}
    assert config["d_feat"] == 20 and card["epochs_run"] == 2


def _expected_backtest(store: Warehouse, env):
    """The backtest recomputed from the stored scores, the workflow's settings and the
    benchmark read straight from the sample file (independently of the asset's code path)."""
    spec = load_workflow(WORKFLOW)
    start, end = (pd.Timestamp(d) for d in spec.backtest_range())
    scores = tables.read_predictions(store, start, end, EXPERIMENT)[["date", "instrument", "score"]]
    prices = tables.read_prices(store, start, end, with_open=True)
    sample = pd.read_parquet(SAMPLE_PATH).query("instrument == 'INTC'")
    msft = sample.set_index(pd.to_datetime(sample["date"]))["adj_close"].sort_index()
    bench = (msft / msft.shift(1) - 1).rename("bench")
    return run_topk_dropout(scores, prices.assign(change=raw_change(prices)), spec.topk_dropout_config(), benchmark=bench)


def test_positions_and_trades_are_the_backtests(ran, env):
    expected = _expected_backtest(ran, env)
    daily = tables.read_backtest(ran, experiment=EXPERIMENT)
    positions, trades = tables.read_backtest_positions(ran, experiment=EXPERIMENT), tables.read_backtest_trades(ran, experiment=EXPERIMENT)
    assert len(trades) > 0 and len(positions) > 0
    # The asset's benchmark comes from the source's float32 closes, the test's from the
    # file's float64 adj_close: equal to float32 precision, everything else exactly.
    np.testing.assert_allclose(daily["bench"], expected.daily["bench"], atol=1e-6)
    pd.testing.assert_frame_equal(daily.drop(columns="bench"), expected.daily.drop(columns="bench"), check_dtype=False)
    # The table is read by (date, instrument); the result lists holdings in holding order.
    held = expected.positions.sort_values(["date", "instrument"], ignore_index=True)[list(tables.POSITION_COLUMNS)]
    pd.testing.assert_frame_equal(positions, held, check_dtype=False)
    pd.testing.assert_frame_equal(trades, expected.trades, check_dtype=False)
    # Benchmark: INTC's own daily return, not the universe's.
    assert daily["bench"].abs().sum() > 0 and "INTC" not in set(positions["instrument"])


def test_deals_are_at_the_open_and_never_on_a_limit_day(ran):
    trades = tables.read_backtest_trades(ran, experiment=EXPERIMENT)
    prices = tables.read_prices(ran, trades["date"].min(), trades["date"].max(), with_open=True)
    prices = prices.assign(change=raw_change(prices))
    joined = trades.merge(prices, on=["date", "instrument"], how="left")
    np.testing.assert_allclose(joined["price"], joined["open"], rtol=1e-6)
    assert (joined["change"].abs() < 0.05).all()  # forbid_all_trade_at_limit: no deal at ±5 %
    assert (prices["change"].abs() >= 0.05).any()  # ... and such days exist in the period


def test_exports_read_back_in_qlib_shapes(ran, env):
    out = env["root"] / "out"
    assert cli.main(["export", "predictions", "--format", "csv", "--start", "2015-05-01", "--out", str(out / "pred.csv"),
                     "--experiment", EXPERIMENT]) == 0
    pred = exports.read_frame(out / "pred.csv", index=["datetime", "instrument"])
    stored = exports.signal_frame(tables.read_predictions(ran, "2015-05-01", None, EXPERIMENT))
    assert list(pred.columns) == ["score"] and pred.index.names == ["datetime", "instrument"]
    pd.testing.assert_frame_equal(pred.reset_index(), stored.reset_index(), check_dtype=False, rtol=1e-6)

    # One vintage of one experiment, in the workflow's test segment.
    assert cli.main(["export", "predictions", "--qlib-config", str(WORKFLOW), "--vintage", VINTAGE,
                     "--out", str(out / "vintage.parquet")]) == 0
    mine = exports.read_frame(out / "vintage.parquet")
    expected = tables.read_predictions(ran, VINTAGE, "2015-06-30", EXPERIMENT)
    assert len(mine) == len(expected) > 0
    assert cli.main(["export", "predictions", "--experiment", EXPERIMENT, "--vintage", "2016-01-04"]) == 1
    assert cli.main(["export", "predictions", "--experiment", "nobody"]) == 1

    # No --format: the file's suffix decides (a .csv name never holds Parquet bytes).
    assert cli.main(["export", "labels", "--out", str(out / "label.csv")]) == 0
    label = exports.read_frame(out / "label.csv", index=["datetime", "instrument"])
    assert label.columns.tolist() == ["LABEL0"] and len(label) == len(tables.read_labels(ran, None, None))

    assert cli.main(["export", "backtest", "--out", str(out / "bt"), "--qlib-config", str(WORKFLOW)]) == 0
    report = exports.read_frame(out / "bt" / "report_normal_1day.parquet")
    daily = tables.read_backtest(ran, experiment=EXPERIMENT)
    np.testing.assert_allclose(report["account"], daily["account_value"])
    np.testing.assert_allclose(report["total_cost"].iloc[-1] / 1e6, (daily["cost"] * daily["account_value"].shift(1).fillna(1e6)).sum() / 1e6)
    positions = exports.read_frame(out / "bt" / "positions_normal_1day.parquet")
    assert len(positions) == len(tables.read_backtest_positions(ran, experiment=EXPERIMENT))
    risk = exports.read_frame(out / "bt" / "port_analysis_1day.parquet")
    assert risk.index.names == ["kind", "metric"]


def test_mlflow_runs_carry_the_workflow_the_dagster_runs_and_the_model(ran, env):
    from alstm_pipeline import tracking

    if not tracking.available():
        assert not (env["home"] / "mlruns").exists()  # without the extra nothing is tracked
        pytest.skip("mlflow is not installed (the optional extra .[mlflow]); tracking is a no-op without it")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.tracking_uri(env["home"]))
    experiment = client.get_experiment_by_name("alstm_sample")
    runs = client.search_runs([experiment.experiment_id])
    version = registry.read_registry(ran, EXPERIMENT).query("vintage == @VINTAGE")["version"].iloc[0]
    training = [r for r in runs if "hidden_size" in r.data.params]
    evaluation = [r for r in runs if "IC" in r.data.metrics]
    assert len(training) == 1 and len(evaluation) == 1  # model's run; ic_daily and backtest_daily share theirs
    (training,), (evaluation,) = training, evaluation
    assert training.data.params["hidden_size"] == "16" and training.data.params["window.train_start"] == "2014-07-01"
    assert [m.value for m in client.get_metric_history(training.info.run_id, "train_loss")].__len__() == 2
    assert training.data.tags[tracking.MODEL_VERSION_TAG] == version
    assert evaluation.data.tags[tracking.MODEL_VERSION_TAG] == version
    assert "1day.excess_return_with_cost.information_ratio" in evaluation.data.metrics
    assert evaluation.data.params["backtest.deal_price"] == "open"
    assert training.data.tags[tracking.DAGSTER_RUN_TAG] != evaluation.data.tags[tracking.DAGSTER_RUN_TAG]
    artifacts = {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    assert {"equity.png", "ic.png"} <= artifacts


def test_the_run_config_of_qlibs_own_shape_of_file(monkeypatch, tmp_path, capsys):
    # Pure mapping, no run: the cn file's region defaults and anchors reach the assets' config.
    monkeypatch.setenv("PROVIDER_DIR", str(tmp_path))
    (tmp_path / "instruments").mkdir()
    (tmp_path / "instruments" / "csi300.txt").write_text("SH600000\t2005-01-04\t2020-12-31\n")
    spec = load_workflow(FIXTURES / "qlib_alstm_alpha158.yaml")
    first, last, vintage, config = workflow_plan(spec, FEATURE_LOOKBACK.weekdays)
    assert (first, last, vintage) == ("2009-09-18", "2013-06-28", "2013-01-04")  # 76 weekdays before 2010-01-04
    model, backtest = config["ops"]["alstm_model"]["config"], config["ops"]["backtest_daily"]["config"]
    assert (model["train_start"], model["valid_end"], model["seed"], model["n_epochs"]) == ("2010-01-04", "2012-12-31", 7, 40)
    assert (backtest["trade_unit"], backtest["limit_threshold"], backtest["benchmark"]) == (100.0, 0.095, "SH000300")
    assert config["ops"]["ic_daily"]["config"]["experiment"] == "alstm_small"
    assert cli.main(["qlib-config", str(FIXTURES / "qlib_alstm_alpha158.yaml")]) == 0
    assert "limit_threshold: 0.095" in capsys.readouterr().out


def test_a_workflow_run_leaves_the_main_jobs_vintage_and_scores_alone(main_job, ran):
    """Issue 15 item 6's done-when: main job, then `run --qlib-config` into the same home
    (same vintage key, another configuration), then re-running days of the main job's
    period gives bit-identical scores and versions."""
    known = registry.read_registry(ran)
    mine = known[known["vintage"] == VINTAGE].set_index("experiment")
    assert set(mine.index) == {"main", EXPERIMENT}
    assert (mine["status"] == "promoted").all()  # neither superseded the other
    pd.testing.assert_frame_equal(registry.read_registry(ran, "main"), main_job["registry"])
    pd.testing.assert_frame_equal(tables.read_predictions(ran, VINTAGE, "2015-06-30"), main_job["scores"], check_exact=True)
    assert set(main_job["scores"]["model_version"]) == {mine.loc["main", "version"]}
    workflow_scores = tables.read_predictions(ran, VINTAGE, "2015-06-30", EXPERIMENT)
    assert set(workflow_scores["model_version"]) == {mine.loc[EXPERIMENT, "version"]}
    assert not np.array_equal(workflow_scores["score"].to_numpy(), main_job["scores"]["score"].to_numpy())

    # Re-run days of the main job's period (the UI backfill / sensor path): same bits, same versions.
    pipeline = main_job["pipeline"]
    pipeline.run("predictions,ic_daily", "2015-04-20", "2015-05-29", run_config={"ops": {"ic_daily": {"config": MAIN_REPORT}}})
    pd.testing.assert_frame_equal(tables.read_predictions(ran, VINTAGE, "2015-06-30"), main_job["scores"], check_exact=True)
    pd.testing.assert_frame_equal(tables.read_ic_daily(ran, VINTAGE, None), main_job["ic"], check_exact=True)
    pd.testing.assert_frame_equal(tables.read_backtest(ran), main_job["backtest"], check_exact=True)
    assert tables.experiments(ran) == ["alstm_sample", "main"]


def test_retraining_a_served_vintage_is_refused_kept_or_replaced_on_request(main_job, ran):
    """Same experiment: another configuration is refused (naming what changed and the fix),
    the same configuration keeps the vintage, replace_vintage retrains and names the days."""
    pipeline, before = main_job["pipeline"], registry.read_registry(ran, "main")
    version = before.query("vintage == @VINTAGE")["version"].iloc[0]
    other = {**MAIN_MODEL, "n_epochs": 2}
    error = pipeline.run_expecting_failure("alstm_model", run_config={"ops": {"alstm_model": {"config": other}}}, vintage=VINTAGE)
    assert f"experiment 'main' already serves vintage {VINTAGE} ({version})" in error
    assert "n_epochs 1 → 2" in error and "replace_vintage: true" in error
    pd.testing.assert_frame_equal(registry.read_registry(ran, "main"), before)

    kept = pipeline.run("alstm_model", run_config={"ops": {"alstm_model": {"config": MAIN_MODEL}}}, vintage=VINTAGE)
    (event,) = pipeline.materialization(kept, "alstm_model")
    assert event.metadata["status"].value == "kept" and event.metadata["version"].value == version
    pd.testing.assert_frame_equal(registry.read_registry(ran, "main"), before)

    replace = {**other, "replace_vintage": True, "gate_max_loss_increase": 10.0, "gate_max_ic_drop": 10.0}
    replaced = pipeline.run("alstm_model", run_config={"ops": {"alstm_model": {"config": replace}}}, vintage=VINTAGE)
    (event,) = pipeline.materialization(replaced, "alstm_model")
    served = main_job["scores"]["date"].nunique()
    assert event.metadata["replaced_version"].value == version and event.metadata["replaced_days"].value == served
    after = registry.read_registry(ran, "main").set_index("version")
    assert after.loc[version, "status"] == "superseded" and after.loc[event.metadata["version"].value, "status"] == "promoted"
    # The workflow's experiment is untouched by the main job's replacement.
    assert registry.read_registry(ran, EXPERIMENT)["status"].tolist() == ["promoted"]
