"""A workflow spec → the partitions, vintage and Dagster run config of the assets.

Pure: the mapping ``alstm-pipeline run --qlib-config`` runs and ``alstm-pipeline
qlib-config`` prints for the launchpad. Every asset of the run gets the file's
``experiment_name`` as its ``experiment``: the workflow's vintage, scores, IC and backtest
live in that experiment's rows of the warehouse, beside (never over) the main job's.
"""

from __future__ import annotations

import pandas as pd

from alstm_pipeline.qlib_workflow.spec import WorkflowSpec



def workflow_plan(spec: WorkflowSpec, lookback_weekdays: int, replace_vintage: bool = False) -> tuple[str, str | None, str, dict]:
    """(first weekday, last weekday or None = the data's end, vintage, run config) of a
    Qlib workflow: the weekdays reach ``lookback_weekdays`` back before the handler's first
    day (the features' lookback: defs.partitions.FEATURE_LOOKBACK.weekdays, which covers
    Alpha360's too); the vintage serves from the test segment's start."""
    segments = spec.segment_dates()
    first = (pd.Timestamp(spec.handler_start()) - pd.offsets.BDay(lookback_weekdays)).strftime("%Y-%m-%d")
    last = spec.handler.end_time or None
    vintage = segments["test"][0]
    model = spec.train_config_kwargs()
    fit_start, fit_end = spec.normalizer_fit_window()
    experiment = spec.experiment_name
    ops: dict[str, dict] = {
        "alstm_model": {"config": {
            "feature_set": spec.feature_set, "mode": "fixed",
            "train_start": segments["train"][0], "train_end": segments["train"][1],
            "valid_start": segments["valid"][0], "valid_end": segments["valid"][1],
            "fit_start": fit_start, "fit_end": fit_end, "handler_start": spec.handler_start(),
            # "benchmark" profile: the YAML's n_epochs and early_stop rule, as in qrun.
            "profile": "benchmark", "n_epochs": model["n_epochs"], "early_stop": model["early_stop"],
            "lr": float(model["lr"]), "batch_size": model["batch_size"], "hidden_size": model["hidden_size"],
            "num_layers": model["num_layers"], "dropout": float(model["dropout"]), "rnn_type": model["rnn_type"],
            "seed": -1 if model["seed"] is None else model["seed"], "device": model["device"],
            "experiment": experiment, "replace_vintage": replace_vintage,
        }},
        "predictions": {"config": {"feature_set": spec.feature_set, "experiment": experiment}},
        # SigAnaRecord reads the test segment's predictions.
        "ic_daily": {"config": {"start": segments["test"][0], "end": segments["test"][1], "experiment": experiment}},
    }
    if spec.backtest is not None:
        b, trading = spec.backtest, spec.topk_dropout_config()
        start, end = spec.backtest_range()
        benchmark = b.benchmark if isinstance(b.benchmark, (str, type(None))) else ",".join(b.benchmark)
        ops["backtest_daily"] = {"config": {
            "start": start or segments["test"][0], "end": end or segments["test"][1],
            "topk": trading.topk, "n_drop": trading.n_drop, "open_cost": float(trading.open_cost),
            "close_cost": float(trading.close_cost), "min_cost": float(trading.min_cost), "account": float(trading.account),
            "risk_degree": float(trading.risk_degree), "forbid_all_trade_at_limit": trading.forbid_all_trade_at_limit,
            # BacktestConfig's "no lots" and "no limit" are ≤ 0 (the launchpad has no null).
            "trade_unit": float(trading.trade_unit or 0.0), "limit_threshold": float(trading.limit_threshold or 0.0),
            "deal_price": trading.deal_price, "benchmark": benchmark or "", "experiment": experiment,
        }}
    return first, last, vintage, {"ops": ops}


def run_tags(spec: WorkflowSpec) -> dict[str, str]:
    """Dagster run tags recording where a run came from and what of the file was not honoured as written."""
    tags = {"qlib/workflow": str(spec.path), "qlib/experiment": spec.experiment_name}
    if spec.model.rnn_type_requested.upper() != "GRU":
        tags["qlib/rnn_type_requested"] = f"{spec.model.rnn_type_requested} (ignored as in Qlib 0.9.7: the model is a GRU)"
    return tags
