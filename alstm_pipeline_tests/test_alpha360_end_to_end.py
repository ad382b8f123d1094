"""The Alpha360 configuration through the real definitions, beside Alpha158's in one warehouse.

12 instruments of the bundled sample, raw 2013-10..2015-12; both configurations train a
fixed vintage (train 2014, valid 2015H1, serving from 2015-07-01, one or two epochs) into
one registry, each in its own experiment ("main", "main_alpha360"), where each scores the
same days without touching the other's. Plus: alpha360_features
through the asset equals Qlib's golden values, an incremental day equals the range run's
rows bit for bit, and an old registry gains the feature_set column.
"""

from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import torch

from alstm_pipeline import feature_sets
from alstm_pipeline.cli import configuration_selection
from alstm_pipeline.evaluation import calc_ic
from alstm_pipeline.features import ALPHA360_NAMES, compute_alpha360
from alstm_pipeline.warehouse import Warehouse, registry
from alstm_pipeline_tests.alpha360_golden import alpha360_golden_dir
from alstm_pipeline_tests.conftest import SAMPLE_PATH, VENDORED_GOLDEN_DIR
from alstm_pipeline_tests.pipeline import TestPipeline

INSTRUMENTS = ["AAPL", "AMZN", "BA", "C", "CVX", "GE", "IBM", "JPM", "KO", "MRK", "PG", "XOM"]
FIRST, LAST = "2013-10-01", "2015-12-31"
VINTAGE = "2015-07-01"
FIXED = {"train_start": "2014-01-01", "train_end": "2014-12-31", "valid_start": "2015-01-01", "valid_end": "2015-06-30",
         "fit_start": "2014-01-01", "fit_end": "2014-12-31", "handler_start": "2014-01-01",
         "seed": 7, "batch_size": 200}
ALPHA158 = {**FIXED, "n_epochs": 1}
# Each configuration has its own experiment (a day's scores never switch between models).
EXPERIMENT_360 = "main_alpha360"
ALPHA360 = {**FIXED, "n_epochs": 2, "feature_set": "alpha360", "experiment": EXPERIMENT_360}
SCORED = ("2015-07-01", "2015-12-31")
REPORT = {"ic_daily": {"config": {"start": VINTAGE, "end": ""}}}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """60-step GRU batches on a busy 2-core machine: two threads spin-wait on each other
    (benchmarks/RESULTS.md measured 6× slower per batch), one thread does not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> TestPipeline:
    home = tmp_path_factory.mktemp("a360_home")
    universe = home / "universe.txt"
    universe.write_text("".join(f"{code}\t2000-01-01\t2030-12-31\n" for code in INSTRUMENTS))
    return TestPipeline(home, SAMPLE_PATH, universe)


@pytest.fixture(scope="module")
def features_run(pipeline):
    return pipeline.run("universe,raw_ohlcv,trading_calendar,alpha158_features,alpha360_features,labels", FIRST, LAST)


@pytest.fixture(scope="module")
def both_vintages(pipeline, features_run):
    """Alpha158's vintage first, then Alpha360's of the same day: (alpha158 run, alpha360 run)."""
    run158 = pipeline.run("alstm_model", run_config={"ops": {"alstm_model": {"config": ALPHA158}}}, vintage=VINTAGE)
    run360 = pipeline.run("alstm_model", run_config={"ops": {"alstm_model": {"config": ALPHA360}}}, vintage=VINTAGE)
    return run158, run360


def _experiment(feature_set: str | None) -> str:
    return EXPERIMENT_360 if feature_set == "alpha360" else "main"


def _predict(pipeline, feature_set: str | None):
    experiment = _experiment(feature_set)
    ops = {"ic_daily": {"config": {**REPORT["ic_daily"]["config"], "experiment": experiment}},
           **({"predictions": {"config": {"feature_set": feature_set, "experiment": experiment}}} if feature_set else {})}
    return pipeline.run("predictions,ic_daily", *SCORED, run_config={"ops": ops})


def _scores(pipeline, feature_set: str | None = "alpha360") -> pd.DataFrame:
    return pipeline.warehouse.query("SELECT * FROM predictions WHERE date BETWEEN ? AND ? AND experiment = ? "
                                    "ORDER BY date, instrument", [*SCORED, _experiment(feature_set)])


def test_alpha360_features_table_checks_and_metadata(pipeline, features_run):
    store = pipeline.warehouse
    columns = store.query("SELECT * FROM alpha360_features LIMIT 0").columns.tolist()
    assert columns == ["instrument", "date", *ALPHA360_NAMES]
    rows = store.query("SELECT count(*) FROM alpha360_features").iloc[0, 0]
    assert rows == store.query("SELECT count(*) FROM alpha158_features").iloc[0, 0]  # same row conventions
    event = pipeline.materialization(features_run, "alpha360_features")[-1]  # one per weekday partition of the range
    assert event.metadata["dagster/row_count"].value == rows
    checks = pipeline.check_results(features_run, "alpha360_features")
    assert set(checks) == {"no_infinite_values", "nan_share_within_bounds", "row_count_matches_raw"}
    assert all(check.passed for check in checks.values())
    # The sample has no vwap: all 60 VWAP columns are NaN and exempt, the others are not.
    assert store.query('SELECT count(*) FROM alpha360_features WHERE "VWAP0" IS NOT NULL').iloc[0, 0] == 0
    assert checks["nan_share_within_bounds"].metadata["worst_column"].value.startswith(("CLOSE", "OPEN", "HIGH", "LOW", "VOLUME"))


def test_lineage_offers_both_feature_tables_to_model_and_predictions(pipeline):
    graph = pipeline.defs.resolve_asset_graph()
    for asset in ("alstm_model", "predictions"):
        parents = graph.get(dg.AssetKey(asset)).parent_keys
        assert {dg.AssetKey("alpha158_features"), dg.AssetKey("alpha360_features")} <= parents
    spec = graph.get(dg.AssetKey("alpha360_features"))
    assert spec.backfill_policy is not None and spec.group_name == "features"
    assert len(spec.metadata["dagster/column_schema"].columns) == 362


def test_both_configurations_share_one_registry(pipeline, both_vintages):
    run158, run360 = both_vintages
    known = registry.read_registry(pipeline.warehouse)
    mine = known[known["vintage"] == VINTAGE].set_index("feature_set")
    # Alpha360's vintage neither supersedes Alpha158's of the same day nor is gated against it.
    assert set(mine.index) == {"alpha158_ts", "alpha360"} and (mine["status"] == "promoted").all()
    assert mine.loc["alpha360", "gate_reason"].startswith("no vintage in force")
    (event,) = pipeline.materialization(run360, "alstm_model")
    assert event.metadata["feature_set"].value == "alpha360"
    assert event.metadata["feature_table"].value == "alpha360_features"
    assert event.metadata["epochs_run"].value == 2
    assert event.metadata["card"].value["config"]["d_feat"] == 6
    assert pipeline.materialization(run158, "alstm_model")[0].metadata["feature_set"].value == "alpha158_ts"
    stats = registry.read_normalizer(pipeline.warehouse, mine.loc["alpha360", "version"])
    assert stats["feature"].tolist() == list(ALPHA360_NAMES)


def test_each_configuration_scores_its_own_experiment(pipeline, both_vintages):
    known = registry.read_registry(pipeline.warehouse)
    version = known.set_index("feature_set")["version"]
    days = pipeline.warehouse.query("SELECT count(*) FROM alpha360_features WHERE date BETWEEN ? AND ?",
                                    list(SCORED)).iloc[0, 0]

    result = _predict(pipeline, "alpha360")
    alpha360 = _scores(pipeline)
    assert set(alpha360["model_version"]) == {version["alpha360"]}
    assert len(alpha360) == days and alpha360["score"].notna().all()
    assert {event.metadata["feature_set"].value for event in pipeline.materialization(result, "predictions")} == {"alpha360"}
    ic_daily = pipeline.warehouse.query("SELECT * FROM ic_daily WHERE date BETWEEN ? AND ? AND experiment = ? ORDER BY date",
                                        [*SCORED, EXPERIMENT_360])
    joined = pipeline.warehouse.query(
        "SELECT p.date AS datetime, p.instrument, p.score, l.LABEL0 FROM predictions p JOIN labels l USING (instrument, date) "
        "WHERE p.date BETWEEN ? AND ? AND p.experiment = ?", [*SCORED, EXPERIMENT_360])
    joined["datetime"] = pd.to_datetime(joined["datetime"])
    ic, _ = calc_ic(*(joined.set_index(["datetime", "instrument"])[c] for c in ("score", "LABEL0")))
    assert len(ic_daily) == len(ic.dropna()) > 100
    np.testing.assert_allclose(ic_daily["ic"].to_numpy(), ic.dropna().to_numpy(), rtol=1e-12)

    _predict(pipeline, None)  # the default configuration: Alpha158's vintage scores the same days in "main"
    alpha158 = _scores(pipeline, None)
    assert set(alpha158["model_version"]) == {version["alpha158_ts"]}
    assert len(alpha158) == len(alpha360)
    assert not np.array_equal(alpha158["score"].to_numpy(), alpha360["score"].to_numpy())
    pd.testing.assert_frame_equal(alpha360, _scores(pipeline), check_exact=True)  # untouched by the other configuration

    _predict(pipeline, "alpha360")  # re-running a day reproduces it
    pd.testing.assert_frame_equal(alpha360, _scores(pipeline), check_exact=True)
    pd.testing.assert_frame_equal(alpha158, _scores(pipeline, None), check_exact=True)


def test_a_second_configuration_in_one_experiment_is_refused(pipeline, both_vintages):
    error = pipeline.run_expecting_failure("alstm_model", run_config={"ops": {"alstm_model": {
        "config": {**ALPHA360, "experiment": "main"}}}}, vintage="2015-08-03")
    assert "experiment 'main' serves the alpha158_ts configuration" in error and "'main_alpha360'" in error


def test_alpha360_scores_equal_the_pure_chain(pipeline, both_vintages):
    """The asset's scores of a day = the pure modules on the full raw history with the
    vintage's own checkpoint and normaliser (nothing lost between table and model)."""
    from alstm_pipeline.model import load_checkpoint

    _predict(pipeline, "alpha360")
    row = registry.read_registry(pipeline.warehouse).set_index("feature_set").loc["alpha360"]
    fs = feature_sets.get("alpha360")
    raw = pipeline.warehouse.query("SELECT * FROM raw_ohlcv WHERE instrument IN (SELECT instrument FROM universe)")
    raw["date"] = pd.to_datetime(raw["date"])
    features = compute_alpha360(raw)
    day = pd.Timestamp("2015-09-15")
    samples = fs.inference_samples(features, registry.read_normalizer(pipeline.warehouse, row["version"]), None, day, day)
    expected = fs.predict(load_checkpoint(row["checkpoint"])[0], samples)
    stored = _scores(pipeline)
    stored = stored[pd.to_datetime(stored["date"]) == day]
    assert stored["instrument"].tolist() == list(samples.instruments)
    np.testing.assert_array_equal(stored["score"].to_numpy(), expected)


def test_an_incremental_day_equals_the_range_run(pipeline, features_run):
    day = "2015-11-02"
    query = "SELECT * FROM alpha360_features WHERE date = ? ORDER BY instrument"
    from_range = pipeline.warehouse.query(query, [day])
    result = pipeline.run("alpha360_features", day, day)
    (event,) = pipeline.materialization(result, "alpha360_features")
    assert event.metadata["raw_rows_read"].value < 100 * len(INSTRUMENTS)  # its lookback only, not the history
    incremental = pipeline.warehouse.query(query, [day])
    assert len(incremental) == len(INSTRUMENTS)
    pd.testing.assert_frame_equal(from_range, incremental, check_exact=True)


def test_alpha360_features_asset_equals_qlib_golden(tmp_path):
    """Through the asset (raw table, 59-row lookback, float32 columns in DuckDB) the values
    stay Qlib's Alpha360 bit for bit on the golden rows."""
    golden = pd.read_parquet(alpha360_golden_dir() / "alpha360.parquet")
    golden["date"] = pd.to_datetime(golden["date"])
    golden = golden.sort_values(["instrument", "date"], ignore_index=True)
    pipeline = TestPipeline(tmp_path, VENDORED_GOLDEN_DIR / "qlib_provider")
    # The last two golden years: their 59-row lookback starts in 2014-10, inside the raw days.
    pipeline.run("universe,raw_ohlcv,trading_calendar", "2014-08-01", "2016-12-30")
    pipeline.run("alpha360_features", "2015-01-01", "2016-12-30")
    ours = pipeline.warehouse.query("SELECT * FROM alpha360_features")
    ours["date"] = pd.to_datetime(ours["date"])
    golden = golden[golden["date"] >= pd.Timestamp("2015-01-01")].reset_index(drop=True)
    kept = golden[["instrument", "date"]].merge(ours, on=["instrument", "date"], how="left")
    assert len(kept) == len(golden) > 100 and kept["CLOSE0"].notna().all()
    for name in ALPHA360_NAMES:
        np.testing.assert_array_equal(kept[name].to_numpy(np.float32), golden[name].to_numpy(np.float32), err_msg=name)


def test_an_old_registry_gains_the_feature_set_column(tmp_path):
    store = Warehouse(tmp_path / "old.duckdb")
    with duckdb.connect(str(store.path)) as con:  # the registry as written before this column existed
        con.execute("CREATE TABLE model_registry (version VARCHAR PRIMARY KEY, vintage VARCHAR NOT NULL, "
                    "mode VARCHAR NOT NULL, serves_from DATE NOT NULL, trained_through DATE NOT NULL, train_start DATE, "
                    "train_end DATE, valid_start DATE, valid_end DATE, fit_start DATE, fit_end DATE, handler_start DATE, "
                    "created_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL, gate_reason VARCHAR, checkpoint VARCHAR NOT NULL, "
                    "sha256 VARCHAR NOT NULL, valid_loss DOUBLE, valid_ic DOUBLE, best_epoch INTEGER, epochs_run INTEGER, "
                    "device VARCHAR, seeds VARCHAR, warm_start_from VARCHAR, metrics VARCHAR)")
        con.execute("INSERT INTO model_registry (version, vintage, mode, serves_from, trained_through, created_at, status, "
                    "checkpoint, sha256) VALUES ('old', '2017-01-01', 'fixed', DATE '2017-01-01', DATE '2016-12-29', "
                    "TIMESTAMP '2026-01-01', 'promoted', '/x', 'y')")
    assert registry.read_registry(store)["feature_set"].tolist() == ["alpha158_ts"]  # read before any write
    stats = pd.DataFrame({"feature": ["CLOSE0"], "median": [1.0], "scale": [1.0]})
    registry.register_vintage(store, {"version": "new", "vintage": "2017-01-01", "feature_set": "alpha360", "mode": "fixed",
                                      "serves_from": "2017-01-01", "trained_through": "2016-12-29",
                                      "created_at": pd.Timestamp("2026-02-01"), "status": "promoted",
                                      "checkpoint": "/z", "sha256": "w"}, stats)
    known = registry.read_registry(store).set_index("version")
    assert known.loc["old", "feature_set"] == "alpha158_ts" and known.loc["old", "status"] == "promoted"
    assert known.loc["new", "feature_set"] == "alpha360"
    assert feature_sets.of_feature_set(known.reset_index(), "alpha360")["version"].tolist() == ["new"]


def test_cli_selection_leaves_out_the_other_feature_table(pipeline):
    graph = pipeline.defs.resolve_asset_graph()
    for name, left_out in (("alpha158_ts", "alpha360_features"), ("alpha360", "alpha158_features")):
        select, config = configuration_selection("*", name)
        keys = {key.to_user_string() for key in dg.AssetSelection.from_string(select).resolve(graph)}
        assert left_out not in keys and {"alstm_model", "predictions", "labels"} <= keys
        assert config["ops"]["alstm_model"]["config"]["feature_set"] == name
    assert configuration_selection("predictions", "alpha360")[0] == "predictions"  # an explicit selection is kept
    with pytest.raises(ValueError, match="unknown feature set 'alpha359'"):
        configuration_selection("*", "alpha359")


def test_an_alpha360_vintage_does_not_delay_the_scheduled_alpha158_retrain(tmp_path):
    from alstm_pipeline import vintages
    from alstm_pipeline.defs.automation import retrain_request
    from alstm_pipeline.settings import load_settings
    from alstm_pipeline_tests.test_automation import _labelled_warehouse

    settings = load_settings()
    days = pd.bdate_range("2010-01-04", "2019-06-28")
    store = _labelled_warehouse(tmp_path, days)
    plan = vintages.rolling_plan("2019-07-01", days, settings.train_days, settings.valid_days, settings.trunc_days)
    row = {"version": "v360", "vintage": "2019-07-01", "feature_set": "alpha360", **plan.to_dict(),
           "created_at": pd.Timestamp("2019-06-28 20:00"), "status": "promoted", "checkpoint": "unused", "sha256": "0" * 64}
    registry.register_vintage(store, row, pd.DataFrame({"feature": ["CLOSE0"], "median": [1.0], "scale": [1.0]}))
    # An Alpha158 vintage serving from 07-01 would make 07-03 too early; Alpha360's does not.
    assert retrain_request(store, pd.Timestamp("2019-07-03"), settings).partition_key == "2019-07-04"
