"""MLflow tracking (optional extra): runs written to a temporary store and read back through MLflow's API."""

from __future__ import annotations

import importlib
import json

import pytest

from alstm_pipeline import tracking

CARD = {
    "version": "20260101T000000Z-abc123",
    "config": {"d_feat": 20, "hidden_size": 64, "lr": 0.001, "seed": None},
    "train_losses": [0.9, 0.8, 0.75],
    "valid_losses": [1.0, 0.95, float("nan")],  # a NaN epoch is skipped, not logged
    "best_epoch": 1,
    "best_valid_loss": 0.95,
    "epochs_run": 3,
    "wall_seconds": 1.5,
}
IC = {"IC": 0.036, "ICIR": 0.28, "Rank IC": 0.046, "Rank ICIR": 0.37}
BACKTEST = {
    "excess_return_without_cost": {"mean": 0.001, "std": 0.01, "annualized_return": 0.238,
                                   "information_ratio": 1.5, "max_drawdown": -0.05},
    "excess_return_with_cost": {"mean": 0.0005, "std": 0.01, "annualized_return": 0.119,
                                "information_ratio": 0.75, "max_drawdown": -0.07},
    "mean_turnover": 0.2,
}
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


def test_tracking_uri_prefers_the_environment(tmp_path):
    assert tracking.tracking_uri(tmp_path, {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}) == "http://mlflow:5000"
    assert tracking.tracking_uri(tmp_path, {}) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"


def test_without_mlflow_every_function_is_a_no_op(monkeypatch, tmp_path):
    monkeypatch.setattr(tracking, "mlflow", None)
    assert tracking.available() is False
    assert tracking.log_training(CARD, dagster_run_id="r", home=tmp_path) is None
    assert tracking.log_signal_analysis(IC, dagster_run_id="r", home=tmp_path) is None
    assert tracking.log_backtest(BACKTEST, dagster_run_id="r", home=tmp_path) is None
    assert tracking.log_run(dagster_run_id="r", home=tmp_path, card=CARD, ic=IC, backtest=BACKTEST) is None
    assert not (tmp_path / "mlruns").exists()


try:
    import mlflow
except ImportError:
    mlflow = None
# Only these tests need the extra; the no-op tests above run everywhere.
requires_mlflow = pytest.mark.skipif(mlflow is None, reason="the mlflow extra is not installed (pip install -e '.[mlflow]')")


@requires_mlflow
def test_one_pipeline_run_is_one_mlflow_run_read_back_through_mlflow(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    home = tmp_path / "home"
    first = tracking.log_training(CARD, dagster_run_id="dagster-1", home=home, experiment="alstm_small",
                                  pngs={"losses.png": PNG}, params={"segment.train": "2010-01-04..2011-12-30"})
    # Later steps of the same Dagster run add to the same MLflow run.
    assert tracking.log_signal_analysis(IC, dagster_run_id="dagster-1", home=home, experiment="alstm_small",
                                        model_version=CARD["version"], pngs={"ic.png": PNG}) == first
    assert tracking.log_backtest(BACKTEST, dagster_run_id="dagster-1", home=home, experiment="alstm_small",
                                 model_version=CARD["version"], pngs={"equity.png": PNG},
                                 params={"topk": 50, "limit_threshold": None}) == first
    other = tracking.log_run(dagster_run_id="dagster-2", home=home, experiment="alstm_small", ic=IC)
    assert other != first

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{home.resolve()}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("alstm_small")
    assert experiment.artifact_location.startswith((home / "mlruns" / "artifacts").resolve().as_uri())
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    run = client.get_run(first)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.DAGSTER_RUN_TAG] == "dagster-1"
    assert run.data.tags[tracking.MODEL_VERSION_TAG] == CARD["version"]
    assert run.data.params["hidden_size"] == "64" and run.data.params["seed"] == "None"
    assert run.data.params["segment.train"] == "2010-01-04..2011-12-30"
    assert run.data.params["backtest.topk"] == "50"

    train = client.get_metric_history(first, "train_loss")
    assert [(m.step, m.value) for m in train] == [(0, 0.9), (1, 0.8), (2, 0.75)]
    assert [(m.step, m.value) for m in client.get_metric_history(first, "valid_loss")] == [(0, 1.0), (1, 0.95)]
    metrics = run.data.metrics
    assert metrics["best_epoch"] == 1 and metrics["best_valid_loss"] == 0.95
    assert {key: metrics[key] for key in IC} == IC
    assert metrics["1day.excess_return_with_cost.annualized_return"] == 0.119
    assert metrics["1day.excess_return_without_cost.max_drawdown"] == -0.05
    assert metrics["1day.mean_turnover"] == 0.2

    names = {a.path for a in client.list_artifacts(first)}
    assert names == {"model_card.json", "losses.png", "ic.png", "equity.png"}
    card_path = client.download_artifacts(first, "model_card.json", str(tmp_path))
    assert json.loads(open(card_path).read())["version"] == CARD["version"]


@requires_mlflow
def test_missing_artifact_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="equity.png"):
        tracking.log_backtest(BACKTEST, dagster_run_id="d", home=tmp_path, pngs={"equity.png": tmp_path / "nope.png"})


def test_module_imports_without_mlflow(monkeypatch):
    # The import guard: hide mlflow and reload; the module must still import.
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    reloaded = importlib.reload(tracking)
    try:
        assert reloaded.available() is False
    finally:
        monkeypatch.undo()
        importlib.reload(tracking)
