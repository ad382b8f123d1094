"""``alstm-pipeline``: the headless entry point, recording every run in the home's Dagster instance.

- ``run [--select SELECTION] [--start DATE] [--end DATE] [--vintage DAY] [--feature-set NAME]``:
  materialise the selected assets (default everything the configuration needs) over the
  weekday partitions between the dates (default: all the source's data); alstm_model for the
  vintage ``DAY`` (default: the fixed Qlib split serving from 2017-01-01). ``--feature-set
  alpha360`` runs Qlib's Alpha360 configuration instead of Alpha158's (docs/alpha360.md).
- ``run --qlib-config WORKFLOW.yaml``: what ``qrun WORKFLOW.yaml`` does, from a Qlib ALSTM
  workflow file: its data, market, handler windows, model kwargs, segments and backtest
  (a key the pipeline cannot honour stops it before anything runs, all such keys listed).
- ``qlib-config WORKFLOW.yaml``: print the Dagster run config a workflow file maps to, for
  the UI's launchpad.
- ``export predictions|labels|backtest [--format parquet|csv] [--start D] [--end D] [--out PATH]``:
  the stored results in the shapes of Qlib's recorders (pred.pkl, label.pkl, the
  PortAnaRecord reports), as Parquet or CSV.
- ``retrain [--as-of DATE]``: what the daily_retrain schedule does on that evening.
- ``evaluate-rolling [--start DATE] [--end DATE] [--step N]``: RollingGen over a test
  period: one vintage per N trading days, then predictions, IC and the backtest.

Runs go into the persistent instance under ``$ALSTM_PIPELINE_HOME/dagster`` (or
``DAGSTER_HOME``), so ``dg dev`` shows them; runs on one home execute one after another.
Exit status: 0 done (also when nothing was due), 1 a step failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

from alstm_pipeline.settings import REPO_DIR, Settings, load_settings


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alstm-pipeline", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialise assets over a partition range")
    run.add_argument("--select", default="*", help='Dagster asset selection, e.g. "+raw_ohlcv" or "predictions,ic_daily" (default: everything)')
    run.add_argument("--start", help="first day of the partition range (default: the source's first day)")
    run.add_argument("--end", help="last day of the partition range (default: the source's last day)")
    run.add_argument("--vintage", help="alstm_model partition: the first day the model serves (default: 2017-01-01, the fixed split)")
    run.add_argument("--feature-set", default="alpha158_ts",
                     help='"alpha158_ts" (default: Alpha158, 20-day windows) or "alpha360" (Alpha360 flat rows)')
    run.add_argument("--qlib-config", metavar="WORKFLOW.yaml",
                     help="run a Qlib ALSTM workflow file (qrun's input); sets the data, windows, model and backtest from it")
    qlib_config = commands.add_parser("qlib-config", help="print the Dagster run config of a Qlib workflow file (for the launchpad)")
    qlib_config.add_argument("workflow", metavar="WORKFLOW.yaml")
    export = commands.add_parser("export", help="write stored results in Qlib's recorder shapes (no pickle)")
    export.add_argument("what", choices=("predictions", "labels", "backtest"))
    export.add_argument("--format", choices=("parquet", "csv"), help="default: the --out file's suffix, else parquet")
    export.add_argument("--start", help="first day (default: the first stored)")
    export.add_argument("--end", help="last day (default: the last stored)")
    export.add_argument("--out", help="file (predictions, labels) or folder (backtest); default under $ALSTM_PIPELINE_HOME/exports")
    retrain = commands.add_parser("retrain", help="what daily_retrain does on the evening of a date")
    retrain.add_argument("--as-of", help="evaluation date, YYYY-MM-DD (default: today in ALSTM_PIPELINE_TIMEZONE)")
    rolling = commands.add_parser("evaluate-rolling", help="RollingGen vintages over a test period, then predictions, IC, backtest")
    rolling.add_argument("--start", default=None, help="first test day (default 2017-01-01)")
    rolling.add_argument("--end", help="last test day (default: the last day of the data)")
    rolling.add_argument("--step", type=int, help="trading days between vintages (default ALSTM_PIPELINE_RETRAIN_STEP)")
    return parser.parse_args(argv)


def open_instance(settings: Settings):
    """The persistent Dagster instance of this home: SQLite, or Postgres when configured."""
    from alstm_pipeline.instance import open_home_instance

    return open_home_instance(settings)


def ui_hint(settings: Settings) -> str:
    default = REPO_DIR / "data" / "home" / "dagster"
    if settings.dagster_home.resolve() == default.resolve():
        return f"open the UI: cd {REPO_DIR} && dg dev   (http://127.0.0.1:3000)"
    return f"open the UI: cd {REPO_DIR} && DAGSTER_HOME={settings.dagster_home} dg dev"


def weekday_range(keys: list[str], start: str | None, end: str | None) -> tuple[str, str]:
    """First and last weekday partition key inside [start, end] (defaults: all partitions)."""
    lo = pd.Timestamp(start).strftime("%Y-%m-%d") if start else keys[0]
    hi = pd.Timestamp(end).strftime("%Y-%m-%d") if end else keys[-1]
    inside = [key for key in keys if lo <= key <= hi]
    if not inside:
        raise SystemExit(f"alstm-pipeline: no weekday partition between {lo} and {hi} (partitions run {keys[0]}..{keys[-1]})")
    return inside[0], inside[-1]


def _report(results, began: float) -> int:
    from alstm_pipeline.runner import failure_messages

    seconds = time.perf_counter() - began
    if results and all(result.success for result in results):
        print(f"alstm-pipeline: done in {seconds:.1f} s", flush=True)
        return 0
    print(f"alstm-pipeline: FAILED after {seconds:.1f} s", file=sys.stderr)
    for message in failure_messages(results):
        print(f"  {message}", file=sys.stderr)
    return 1


def _announce(step) -> None:
    names = ", ".join(key.to_user_string() for key in step.keys)
    print(f"alstm-pipeline: run of {names}", flush=True)


def configuration_selection(select: str, feature_set: str) -> tuple[str, dict]:
    """The selection and run config of one configuration: ``*`` leaves out the other
    configuration's feature table (computing it would cost a whole backfill nothing reads);
    alstm_model and predictions get the feature set."""
    from alstm_pipeline import feature_sets

    chosen = feature_sets.get(feature_set)
    if select.strip() == "*":
        others = [fs.table for fs in feature_sets.FEATURE_SETS.values() if fs.table != chosen.table]
        select = " and ".join(["*", *(f"not key:{table}" for table in others)])
    config = {"ops": {name: {"config": {"feature_set": chosen.name}} for name in ("alstm_model", "predictions")}}
    return select, config


def run(select: str, start: str | None, end: str | None, vintage: str | None, feature_set: str = "alpha158_ts",
        run_config: dict | None = None, summary_start: str | None = None) -> int:
    from alstm_pipeline.definitions import build_definitions
    from alstm_pipeline.defs.model import TEST_START
    from alstm_pipeline.defs.partitions import WEEKDAYS
    from alstm_pipeline.report import print_summary
    from alstm_pipeline.runner import materialize

    settings = load_settings()
    select, configuration = configuration_selection(select, feature_set)
    # A workflow's own op configs win over the configuration defaults, key by key.
    ops = configuration["ops"]
    for name, op in (run_config or {}).get("ops", {}).items():
        ops[name] = {"config": {**ops.get(name, {}).get("config", {}), **op["config"]}}
    run_config = {"ops": ops}
    first, last = weekday_range(WEEKDAYS.get_partition_keys(), start, end)
    print(f"alstm-pipeline: {select!r} over {first}..{last} of {settings.source} ({feature_set})", flush=True)
    print(f"alstm-pipeline: warehouse {settings.warehouse_path}, instance {settings.dagster_home}", flush=True)
    began = time.perf_counter()
    results = materialize(build_definitions(), select, open_instance(settings), (first, last),
                          vintage or TEST_START, run_config=run_config, on_step=_announce)
    status = _report(results, began)
    if status == 0:
        print_summary(settings, summary_start)
        print(f"\n{ui_hint(settings)}")
    return status


def workflow_plan(spec) -> tuple[str, str | None, str, dict]:
    """(first weekday, last weekday or None = the data's end, vintage, run config) of a
    Qlib workflow: the weekdays reach back far enough for Alpha158's 60-day lookback before
    the handler's first day; the vintage serves from the test segment's start."""
    from alstm_pipeline.defs.partitions import FEATURE_LOOKBACK

    segments = spec.segment_dates()
    first = (pd.Timestamp(spec.handler_start()) - pd.offsets.BDay(FEATURE_LOOKBACK.weekdays)).strftime("%Y-%m-%d")
    last = spec.handler.end_time or None
    vintage = segments["test"][0]
    model = spec.train_config_kwargs()
    fit_start, fit_end = spec.normalizer_fit_window()
    ops: dict[str, dict] = {
        "alstm_model": {"config": {
            "mode": "fixed",
            "train_start": segments["train"][0], "train_end": segments["train"][1],
            "valid_start": segments["valid"][0], "valid_end": segments["valid"][1],
            "fit_start": fit_start, "fit_end": fit_end, "handler_start": spec.handler_start(),
            # "benchmark" profile: the YAML's n_epochs and early_stop rule, as in qrun.
            "profile": "benchmark", "n_epochs": model["n_epochs"], "early_stop": model["early_stop"],
            "lr": float(model["lr"]), "batch_size": model["batch_size"], "hidden_size": model["hidden_size"],
            "num_layers": model["num_layers"], "dropout": float(model["dropout"]), "rnn_type": model["rnn_type"],
            "seed": -1 if model["seed"] is None else model["seed"], "device": model["device"],
            "experiment": spec.experiment_name,
        }},
        # SigAnaRecord reads the test segment's predictions.
        "ic_daily": {"config": {"start": segments["test"][0], "end": segments["test"][1], "experiment": spec.experiment_name}},
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
            "deal_price": trading.deal_price, "benchmark": benchmark or "", "experiment": spec.experiment_name,
        }}
    return first, last, vintage, {"ops": ops}


def _load_workflow(path: str):
    """The workflow spec, or None after printing why it cannot run (every key at once)."""
    from alstm_pipeline.qlib_workflow import WorkflowError, load_workflow

    try:
        spec = load_workflow(path)
    except WorkflowError as error:
        print(f"alstm-pipeline: {error}\nNothing was run. Fix these keys (docs/coming_from_qlib.md lists what is supported).",
              file=sys.stderr)
        return None
    return spec  # the loader has also checked that the market's instruments file exists


def print_run_config(path: str) -> int:
    """``qlib-config``: the run config as YAML, with the partitions it is meant for."""
    from ruamel.yaml import YAML

    spec = _load_workflow(path)
    if spec is None:
        return 2
    first, last, vintage, config = workflow_plan(spec)
    print(f"# Dagster run config of {spec.path} (experiment {spec.experiment_name!r}).\n"
          f"# Environment: ALSTM_PIPELINE_SOURCE={spec.source_path()} ALSTM_PIPELINE_UNIVERSE={spec.universe_path() or ''}\n"
          f"# 1. +alstm_model's upstream over weekdays {first}..{last or 'the last day'}; 2. alstm_model, vintage {vintage}\n"
          f"#    (keep only its ops block); 3. predictions, ic_daily, backtest_daily over the same weekdays.\n"
          "# The launchpad rejects config of assets it does not launch: delete the other ops blocks.")
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(config, sys.stdout)
    return 0


def run_workflow(path: str, select: str) -> int:
    """``run --qlib-config``: qrun's run from a workflow file, through the assets."""
    spec = _load_workflow(path)
    if spec is None:
        return 2
    # The definitions read the source and universe from the environment when imported
    # (partition bounds, resources), so they are set before anything imports them.
    os.environ["ALSTM_PIPELINE_SOURCE"] = str(spec.source_path())
    if spec.universe_path() is None:
        os.environ.pop("ALSTM_PIPELINE_UNIVERSE", None)
    else:
        os.environ["ALSTM_PIPELINE_UNIVERSE"] = str(spec.universe_path())
    first, last, vintage, config = workflow_plan(spec)
    if spec.backtest is None and select == "*":
        select = "*ic_daily"  # no PortAnaRecord, no backtest (as in qrun)
    print(f"alstm-pipeline: workflow {spec.path} (experiment {spec.experiment_name!r}): train {spec.segments['train'][0]}.."
          f"{spec.segments['train'][1]}, valid {spec.segments['valid'][0]}..{spec.segments['valid'][1]}, "
          f"test from {vintage}", flush=True)
    return run(select, first, last, vintage, run_config=config, summary_start=vintage)


def export(what: str, fmt: str | None, start: str | None, end: str | None, out: str | None) -> int:
    """``export``: stored results → Qlib-shaped Parquet/CSV; prints each path written."""
    from alstm_pipeline import exports
    from alstm_pipeline.evaluation import BacktestResult, TopkDropoutConfig
    from alstm_pipeline.warehouse import Warehouse, tables

    suffix = Path(out).suffix.lstrip(".").lower() if out and what != "backtest" else ""
    if fmt and suffix in exports.FORMATS and suffix != fmt:
        print(f"alstm-pipeline: --format {fmt} but --out {out} names a .{suffix} file. Fix: make them agree.", file=sys.stderr)
        return 2
    fmt = fmt or (suffix if suffix in exports.FORMATS else "parquet")
    settings = load_settings()
    store = Warehouse(settings.warehouse_path)
    if not store.path.exists():
        print(f"alstm-pipeline: no warehouse at {store.path}. Fix: run `alstm-pipeline run` first.", file=sys.stderr)
        return 1
    folder = settings.home / "exports"
    if what == "predictions":
        frames = {"pred": exports.signal_frame(tables.read_predictions(store, start, end))}
    elif what == "labels":
        frames = {"label": exports.label_frame(tables.read_labels(store, start, end))}
    else:
        daily = tables.read_backtest(store, start, end)
        if daily.empty:
            print("alstm-pipeline: no backtest_daily rows in that range. Fix: materialise backtest_daily first.", file=sys.stderr)
            return 1
        # The account the backtest started from, recovered exactly from its first day:
        # return − cost = V_1 / V_0 − 1 (backtest_daily's definitions).
        head = daily.iloc[0]
        account = float(head["account_value"] / (1.0 + head["return"] - head["cost"]))
        result = BacktestResult(daily=daily, trades=tables.read_backtest_trades(store, start, end),
                                positions=tables.read_backtest_positions(store, start, end),
                                config=TopkDropoutConfig(account=account))
        frames = {"report_normal_1day": exports.report_frame(result), "positions_normal_1day": exports.positions_frame(result),
                  "trades_1day": exports.trades_frame(result), "port_analysis_1day": exports.port_analysis_frame(result)}
        folder = Path(out) if out else folder / "backtest"
    if what != "backtest" and out:
        paths = {name: Path(out) for name in frames}
    else:
        paths = {name: folder / f"{name}.{fmt}" for name in frames}
    for name, frame in frames.items():
        written = exports.write_frame(frame, paths[name], fmt)
        print(f"{written}  ({len(frame)} rows)")
    return 0


def retrain(as_of: str | None) -> int:
    import dagster as dg

    from alstm_pipeline.definitions import build_definitions
    from alstm_pipeline.defs.automation import local_today, retrain_request
    from alstm_pipeline.runner import materialize
    from alstm_pipeline.warehouse import Warehouse, registry

    settings = load_settings()
    store = Warehouse(settings.warehouse_path)
    if not store.path.exists():
        print(f"alstm-pipeline: no warehouse at {store.path}. Fix: run `alstm-pipeline run` first.", file=sys.stderr)
        return 1
    day = pd.Timestamp(as_of) if as_of else local_today(pd.Timestamp.now(tz="UTC").to_pydatetime())
    request = retrain_request(store, day, settings)
    if isinstance(request, dg.SkipReason):
        print(f"alstm-pipeline: nothing to train on the evening of {day.date()}: {request.skip_message}")
        return 0
    print(f"alstm-pipeline: training vintage {request.partition_key} (evening of {day.date()})", flush=True)
    began = time.perf_counter()
    results = materialize(build_definitions(), "alstm_model", open_instance(settings),
                          vintage=request.partition_key, run_config=request.run_config)
    status = _report(results, began)
    known = registry.read_registry(store)
    # retrain trains the default configuration; an Alpha360 vintage of the same day is not its outcome
    mine = known[(known["vintage"] == request.partition_key) & (known["feature_set"] == "alpha158_ts")]
    if len(mine):
        row = mine.sort_values("created_at").iloc[-1]
        print(f"  vintage {row['vintage']}: {row['version']} {row['status']}, trained through "
              f"{row['trained_through'].date()} — {row['gate_reason']}")
        if row["status"] == "rejected":
            return 0  # the gate did its job: the vintage in force keeps serving
    return status


def evaluate_rolling(start: str | None, end: str | None, step: int | None) -> int:
    from alstm_pipeline import vintages
    from alstm_pipeline.definitions import build_definitions
    from alstm_pipeline.defs.model import TEST_START
    from alstm_pipeline.defs.partitions import WEEKDAYS
    from alstm_pipeline.report import print_summary
    from alstm_pipeline.runner import materialize
    from alstm_pipeline.warehouse import Warehouse, tables

    settings = load_settings()
    store = Warehouse(settings.warehouse_path)
    if not store.table_exists("labels"):
        print("alstm-pipeline: the warehouse has no labels yet. Fix: run `alstm-pipeline run` first.", file=sys.stderr)
        return 1
    calendar = tables.read_calendar(store)
    test_start, test_end = pd.Timestamp(start or TEST_START), pd.Timestamp(end) if end else calendar[-1]
    keys = vintages.rolling_keys(calendar, test_start, test_end, step or settings.retrain_step)
    print(f"alstm-pipeline: rolling evaluation {test_start.date()}..{test_end.date()}: {len(keys)} vintages", flush=True)
    defs, instance = build_definitions(), open_instance(settings)
    model_config = {"ops": {"alstm_model": {"config": {"mode": "rolling", "train_days": settings.train_days,
                                                       "valid_days": settings.valid_days, "trunc_days": settings.trunc_days}}}}
    began = time.perf_counter()
    results = []
    for number, key in enumerate(keys, 1):
        print(f"alstm-pipeline: vintage {number}/{len(keys)} {key}", flush=True)
        results += materialize(defs, "alstm_model", instance, vintage=key, run_config=model_config)
        if not results[-1].success:
            return _report(results, began)
    first, last = weekday_range(WEEKDAYS.get_partition_keys(), str(test_start.date()), str(test_end.date()))
    report_config = {"ops": {name: {"config": {"start": str(test_start.date()), "end": str(test_end.date())}}
                             for name in ("ic_daily", "backtest_daily")}}
    results += materialize(defs, "predictions,ic_daily,backtest_daily", instance, (first, last), run_config=report_config,
                           on_step=_announce)
    status = _report(results, began)
    if status == 0:
        print_summary(settings, test_start, test_end)
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if args.command == "run" and args.qlib_config:
            if args.start or args.end or args.vintage:
                print("alstm-pipeline: --qlib-config sets the dates and the vintage from the file. "
                      "Fix: drop --start/--end/--vintage, or edit the workflow file.", file=sys.stderr)
                return 2
            return run_workflow(args.qlib_config, args.select)
        if args.command == "run":
            return run(args.select, args.start, args.end, args.vintage, args.feature_set)
        if args.command == "qlib-config":
            return print_run_config(args.workflow)
        if args.command == "export":
            return export(args.what, args.format, args.start, args.end, args.out)
        if args.command == "retrain":
            return retrain(args.as_of)
        if args.command == "evaluate-rolling":
            return evaluate_rolling(args.start, args.end, args.step)
    except (ValueError, OSError) as error:
        # A setting or argument the user can fix: one line, no traceback.
        print(f"alstm-pipeline: {error}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
