"""Optional MLflow tracking of pipeline runs, as Qlib's recorders log them. Pure: no Dagster.

Install the extra (``pip install "alstm_pipeline[mlflow]"``) to turn it on; without mlflow
every function here does nothing and returns None, so callers need no guard.

One MLflow run per pipeline (Dagster) run: the run is found by its ``dagster.run_id`` tag
or created, so the training step and the evaluation steps of one pipeline run add to the
same MLflow run, the way one Qlib recorder holds a task's pred, IC and backtest. The
experiment name is the caller's (e.g. the workflow's ``experiment_name``; Qlib's default
is "workflow").

Names follow Qlib so existing MLflow queries keep working: SigAnaRecord's ``IC``, ``ICIR``,
``Rank IC``, ``Rank ICIR``; PortAnaRecord's ``1day.<excess_return_without_cost|
excess_return_with_cost>.<mean|std|annualized_return|information_ratio|max_drawdown>``.
Per-epoch ``train_loss`` / ``valid_loss`` are step metrics (step = epoch, from 0).

Where runs go: ``MLFLOW_TRACKING_URI`` when set, else a SQLite store
``<home>/mlruns/mlflow.db`` with artifacts under ``<home>/mlruns/artifacts``. MLflow 3
refuses the plain ``file:`` store unless ``MLFLOW_ALLOW_FILE_STORE`` is set, so SQLite is
the local default (``mlflow ui --backend-store-uri sqlite:///<home>/mlruns/mlflow.db``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:  # the optional extra: everything below is a no-op without it
    import mlflow
    from mlflow.tracking import MlflowClient
except ImportError:  # pragma: no cover - exercised where mlflow is absent
    mlflow = None
    MlflowClient = None

__all__ = [
    "DAGSTER_RUN_TAG",
    "MODEL_VERSION_TAG",
    "available",
    "log_backtest",
    "log_run",
    "log_signal_analysis",
    "log_training",
    "tracking_uri",
]

DAGSTER_RUN_TAG = "dagster.run_id"
MODEL_VERSION_TAG = "model.version"
RISK_FREQ = "1day"  # PortAnaRecord's prefix for daily risk figures


def available() -> bool:
    """Whether the mlflow extra is installed."""
    return mlflow is not None


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the assets log to MLflow: the extra is installed and ``ALSTM_PIPELINE_MLFLOW``
    is not ``0`` (a deployment that has mlflow for other reasons can switch logging off)."""
    environ = os.environ if environ is None else environ
    return available() and environ.get("ALSTM_PIPELINE_MLFLOW", "1") != "0"


def tracking_uri(home: str | os.PathLike, environ: Mapping[str, str] | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store under ``<home>/mlruns``."""
    environ = os.environ if environ is None else environ
    if environ.get("MLFLOW_TRACKING_URI"):
        return environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(home).expanduser().resolve() / 'mlruns' / 'mlflow.db')}"


def _client(home: str | os.PathLike, uri: str | None) -> tuple[Any, str]:
    uri = uri or tracking_uri(home)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri), uri


def _run_id(client, home, experiment: str, dagster_run_id: str, model_version: str | None) -> str:
    """The MLflow run of this pipeline run: found by its Dagster tag, else created."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        # Artifacts next to the SQLite store, not in the working directory (MLflow's default).
        location = (Path(home).expanduser().resolve() / "mlruns" / "artifacts").as_uri()
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{DAGSTER_RUN_TAG}` = '{dagster_run_id}'", max_results=1
    )
    if runs:
        run_id = runs[0].info.run_id
    else:
        run_id = client.create_run(experiment_id, run_name=dagster_run_id, tags={DAGSTER_RUN_TAG: dagster_run_id}).info.run_id
    if model_version:
        client.set_tag(run_id, MODEL_VERSION_TAG, model_version)
    return run_id


def _finite(value: Any) -> float | None:
    """MLflow stores NaN but charts and comparisons choke on it; such a figure is skipped."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _log_metrics(client, run_id: str, metrics: Mapping[str, Any], step: int = 0) -> None:
    _log_steps(client, run_id, [(key, value, step) for key, value in metrics.items()])


def _log_steps(client, run_id: str, points: list[tuple[str, Any, int]]) -> None:
    """(name, value, step) points in batches (MLflow takes at most 1000 metrics per call)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(key, v, now, step) for key, value, step in points if (v := _finite(value)) is not None]
    for start in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[start : start + 1000])


def _finish(client, run_id: str) -> str:
    # Each step closes the run so the UI does not show it running forever; a later step of
    # the same pipeline run may still add to it.
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _log_artifacts(client, run_id: str, artifacts: Mapping[str, bytes | str | os.PathLike]) -> None:
    """Files by name: bytes are written under that name, paths are copied as they are named."""
    with tempfile.TemporaryDirectory() as staging:
        for name, content in artifacts.items():
            if isinstance(content, bytes):
                path = Path(staging) / name
                path.write_bytes(content)
            else:
                path = Path(content)
                if not path.is_file():
                    raise FileNotFoundError(f"artifact {name!r}: no file at {path}")
                if path.name != name:
                    target = Path(staging) / name
                    target.write_bytes(path.read_bytes())
                    path = target
            client.log_artifact(run_id, str(path))


def log_training(
    card: Mapping[str, Any],
    *,
    dagster_run_id: str,
    home: str | os.PathLike,
    experiment: str = "workflow",
    pngs: Mapping[str, bytes | str | os.PathLike] | None = None,
    params: Mapping[str, Any] | None = None,
    uri: str | None = None,
) -> str | None:
    """Log a training run from its model card (``TrainResult.card()``): the TrainConfig as
    params (plus ``params``, e.g. the workflow's segments), per-epoch losses as step metrics,
    best epoch / loss, the card as ``model_card.json`` and the PNGs (e.g. losses.png).
    Returns the MLflow run id, or None without mlflow."""
    if not available():
        return None
    client, _ = _client(home, uri)
    run_id = _run_id(client, home, experiment, dagster_run_id, str(card.get("version") or "") or None)
    all_params = {**dict(card.get("config", {})), **dict(params or {})}
    for key, value in all_params.items():
        client.log_param(run_id, key, "None" if value is None else str(value))
    _log_steps(client, run_id, [
        (metric, value, epoch)
        for metric, card_key in (("train_loss", "train_losses"), ("valid_loss", "valid_losses"))
        for epoch, value in enumerate(card.get(card_key) or [])
    ])
    _log_metrics(client, run_id, {"best_epoch": card.get("best_epoch"), "best_valid_loss": card.get("best_valid_loss"),
                                  "epochs_run": card.get("epochs_run"), "wall_seconds": card.get("wall_seconds")})
    artifacts: dict[str, bytes | str | os.PathLike] = {
        "model_card.json": json.dumps(card, indent=2, default=str).encode()
    }
    artifacts.update(pngs or {})
    _log_artifacts(client, run_id, artifacts)
    return _finish(client, run_id)


def log_signal_analysis(
    summary: Mapping[str, float],
    *,
    dagster_run_id: str,
    home: str | os.PathLike,
    experiment: str = "workflow",
    model_version: str | None = None,
    pngs: Mapping[str, bytes | str | os.PathLike] | None = None,
    uri: str | None = None,
) -> str | None:
    """Log ``ic_summary``'s IC, ICIR, Rank IC, Rank ICIR (SigAnaRecord's names) and PNGs."""
    if not available():
        return None
    client, _ = _client(home, uri)
    run_id = _run_id(client, home, experiment, dagster_run_id, model_version)
    _log_metrics(client, run_id, {key: summary[key] for key in ("IC", "ICIR", "Rank IC", "Rank ICIR") if key in summary})
    if pngs:
        _log_artifacts(client, run_id, pngs)
    return _finish(client, run_id)


def log_backtest(
    summary: Mapping[str, Any],
    *,
    dagster_run_id: str,
    home: str | os.PathLike,
    experiment: str = "workflow",
    model_version: str | None = None,
    pngs: Mapping[str, bytes | str | os.PathLike] | None = None,
    params: Mapping[str, Any] | None = None,
    uri: str | None = None,
) -> str | None:
    """Log ``backtest_summary``'s risk figures as PortAnaRecord names them (``1day.<kind>.<metric>``),
    the mean turnover, the backtest settings as params (e.g. ``TopkDropoutConfig`` as a dict,
    prefixed ``backtest.``) and PNGs (e.g. equity.png)."""
    if not available():
        return None
    client, _ = _client(home, uri)
    run_id = _run_id(client, home, experiment, dagster_run_id, model_version)
    metrics: dict[str, Any] = {}
    for kind, values in summary.items():
        if isinstance(values, Mapping):
            metrics.update({f"{RISK_FREQ}.{kind}.{key}": value for key, value in values.items()})
        else:
            metrics[f"{RISK_FREQ}.{kind}"] = values
    _log_metrics(client, run_id, metrics)
    for key, value in (params or {}).items():
        client.log_param(run_id, f"backtest.{key}", "None" if value is None else str(value))
    if pngs:
        _log_artifacts(client, run_id, pngs)
    return _finish(client, run_id)


def log_run(
    *,
    dagster_run_id: str,
    home: str | os.PathLike,
    experiment: str = "workflow",
    card: Mapping[str, Any] | None = None,
    ic: Mapping[str, float] | None = None,
    backtest: Mapping[str, Any] | None = None,
    pngs: Mapping[str, bytes | str | os.PathLike] | None = None,
    params: Mapping[str, Any] | None = None,
    uri: str | None = None,
) -> str | None:
    """Everything of one pipeline run at once (training card, IC summary, backtest summary, PNGs)."""
    if not available():
        return None
    run_id = None
    version = str(card["version"]) if card and card.get("version") else None
    if card is not None:
        run_id = log_training(card, dagster_run_id=dagster_run_id, home=home, experiment=experiment, params=params, uri=uri)
    if ic is not None:
        run_id = log_signal_analysis(ic, dagster_run_id=dagster_run_id, home=home, experiment=experiment,
                                     model_version=version, uri=uri)
    if backtest is not None:
        run_id = log_backtest(backtest, dagster_run_id=dagster_run_id, home=home, experiment=experiment,
                              model_version=version, uri=uri)
    if pngs:
        client, _ = _client(home, uri)
        run_id = _run_id(client, home, experiment, dagster_run_id, version)
        _log_artifacts(client, run_id, pngs)
        run_id = _finish(client, run_id)
    return run_id
