"""The scoring tables keyed by experiment, on a real DuckDB file: each experiment's rows are
its own, a write replaces only them, and a warehouse written before experiments existed is
migrated by the next write without losing a row (its rows become the main job's)."""

from __future__ import annotations

import duckdb
import pandas as pd

from alstm_pipeline.warehouse import Warehouse, registry, tables


def _scores(days, version: str, score: float) -> pd.DataFrame:
    dates = pd.to_datetime(days)
    return pd.DataFrame({"date": dates.repeat(2), "instrument": ["A", "B"] * len(dates),
                         "score": pd.Series([score, -score] * len(dates), dtype="float32"), "model_version": version})


def test_an_old_predictions_table_is_migrated_to_the_main_experiment(tmp_path):
    store = Warehouse(tmp_path / "old.duckdb")
    with duckdb.connect(str(store.path)) as con:  # predictions and ic_daily as written before experiments
        con.execute("CREATE TABLE predictions (date DATE, instrument VARCHAR, score REAL, model_version VARCHAR, "
                    "PRIMARY KEY (date, instrument))")
        con.execute("INSERT INTO predictions VALUES ('2021-04-19', 'A', 0.5, 'v1'), ('2021-04-19', 'B', -0.5, 'v1')")
        con.execute("CREATE TABLE ic_daily (date DATE, ic DOUBLE, rank_ic DOUBLE, n BIGINT, PRIMARY KEY (date))")
        con.execute("INSERT INTO ic_daily VALUES ('2021-04-19', 0.1, 0.2, 2)")
    # Read before any write: the old rows are the main job's, no other experiment has any.
    assert len(tables.read_predictions(store)) == 2 and tables.read_predictions(store, experiment="other").empty
    assert tables.experiments(store) == ["main"]

    tables.write_predictions(store, _scores(["2021-04-19"], "w1", 0.875), "2021-04-19", "2021-04-19", "workflow")
    main = tables.read_predictions(store)
    assert main["model_version"].tolist() == ["v1", "v1"] and main["score"].tolist() == [0.5, -0.5]
    assert tables.read_predictions(store, experiment="workflow")["score"].tolist() == [0.875, -0.875]
    assert tables.experiments(store) == ["main", "workflow"]
    # Re-writing one experiment's day replaces only its rows.
    tables.write_predictions(store, _scores(["2021-04-19"], "v2", 0.25), "2021-04-19", "2021-04-19")
    assert tables.read_predictions(store)["model_version"].tolist() == ["v2", "v2"]
    assert tables.read_predictions(store, experiment="workflow")["model_version"].tolist() == ["w1", "w1"]
    assert tables.served_days(store, "w1", "workflow").tolist() == [pd.Timestamp("2021-04-19")]
    assert tables.served_days(store, "w1", "main").empty

    tables.write_ic_daily(store, pd.DataFrame({"date": pd.to_datetime(["2021-04-19"]), "ic": [0.3], "rank_ic": [0.4], "n": [2]}),
                          "2021-04-19", "2021-04-19", "workflow")
    assert tables.read_ic_daily(store)["ic"].tolist() == [0.1]
    assert tables.read_ic_daily(store, experiment="workflow")["ic"].tolist() == [0.3]
    assert list(tables.read_ic_daily(store).columns) == ["date", "ic", "rank_ic", "n"]


def test_backtests_of_two_experiments_live_side_by_side(tmp_path):
    store = Warehouse(tmp_path / "w.duckdb")
    daily = pd.DataFrame({"date": pd.to_datetime(["2021-04-19", "2021-04-20"]), "return": [0.01, -0.02]})
    positions = pd.DataFrame({"date": pd.to_datetime(["2021-04-19"]), "instrument": ["A"], "amount": [10.0],
                              "price": [1.0], "weight": [1.0]})
    trades = pd.DataFrame({"date": pd.to_datetime(["2021-04-19"]), "instrument": ["A"], "direction": ["buy"],
                           "amount": [10.0], "price": [1.0], "value": [10.0], "cost": [0.01]})
    tables.write_backtest(store, daily, positions, trades)
    tables.write_backtest(store, daily.iloc[:1].assign(**{"return": [0.5]}), positions.iloc[:0], trades.iloc[:0], "workflow")
    assert tables.read_backtest(store)["return"].tolist() == [0.01, -0.02]
    assert tables.read_backtest(store, experiment="workflow")["return"].tolist() == [0.5]
    assert len(tables.read_backtest_positions(store)) == 1 and tables.read_backtest_trades(store, experiment="workflow").empty


def test_an_old_registry_gains_the_experiment_column(tmp_path):
    store = Warehouse(tmp_path / "old.duckdb")
    with duckdb.connect(str(store.path)) as con:
        con.execute("CREATE TABLE model_registry (version VARCHAR PRIMARY KEY, vintage VARCHAR NOT NULL, feature_set VARCHAR, "
                    "mode VARCHAR NOT NULL, serves_from DATE NOT NULL, trained_through DATE NOT NULL, train_start DATE, "
                    "train_end DATE, valid_start DATE, valid_end DATE, fit_start DATE, fit_end DATE, handler_start DATE, "
                    "created_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL, gate_reason VARCHAR, checkpoint VARCHAR NOT NULL, "
                    "sha256 VARCHAR NOT NULL, valid_loss DOUBLE, valid_ic DOUBLE, best_epoch INTEGER, epochs_run INTEGER, "
                    "device VARCHAR, seeds VARCHAR, warm_start_from VARCHAR, metrics VARCHAR)")
        con.execute("INSERT INTO model_registry (version, vintage, feature_set, mode, serves_from, trained_through, created_at, "
                    "status, checkpoint, sha256) VALUES ('old', '2017-01-01', 'alpha158_ts', 'fixed', DATE '2017-01-01', "
                    "DATE '2016-12-29', TIMESTAMP '2026-01-01', 'promoted', '/x', 'y'), "
                    "('old360', '2017-01-01', 'alpha360', 'fixed', DATE '2017-01-01', "
                    "DATE '2016-12-29', TIMESTAMP '2026-01-01', 'promoted', '/x', 'y')")
    assert registry.read_registry(store, "main")["version"].tolist() == ["old"]  # read before any write
    assert registry.read_registry(store, "main_alpha360")["version"].tolist() == ["old360"]
    stats = pd.DataFrame({"feature": ["KLEN"], "median": [1.0], "scale": [1.0]})
    registry.register_vintage(store, {"version": "new", "vintage": "2017-01-01", "experiment": "workflow", "mode": "fixed",
                                      "serves_from": "2017-01-01", "trained_through": "2016-12-29",
                                      "created_at": pd.Timestamp("2026-02-01"), "status": "promoted",
                                      "checkpoint": "/z", "sha256": "w", "config": "{}"}, stats)
    known = registry.read_registry(store).set_index("version")
    # Another experiment's promotion of the same vintage key supersedes nothing.
    assert known.loc["old", "experiment"] == "main" and known.loc["old", "status"] == "promoted"
    assert known.loc["new", "experiment"] == "workflow" and known.loc["new", "config"] == "{}"
    # The main job's Alpha360 vintages (run --feature-set alpha360) join that configuration's experiment.
    assert known.loc["old360", "experiment"] == "main_alpha360"
    assert registry.main_experiment("alpha360") == "main_alpha360"
