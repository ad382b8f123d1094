"""``alstm-pipeline``: the headless entry point, recording every run in the home's Dagster instance.

- ``run [--select SELECTION] [--start DATE] [--end DATE] [--vintage DAY] [--feature-set NAME]``:
  materialise the selected assets (default everything the configuration needs) over the
  weekday partitions between the dates (default: all the source's data); alstm_model for the
  vintage ``DAY`` (default: the fixed Qlib split serving from 2017-01-01). ``--feature-set
  alpha360`` runs Qlib's Alpha360 configuration instead of Alpha158's (docs/alpha360.md).
- ``retrain [--as-of DATE]``: what the daily_retrain schedule does on that evening.
- ``evaluate-rolling [--start DATE] [--end DATE] [--step N]``: RollingGen over a test
  period: one vintage per N trading days, then predictions, IC and the backtest.

Runs go into the persistent instance under ``$ALSTM_PIPELINE_HOME/dagster`` (or
``DAGSTER_HOME``), so ``dg dev`` shows them; runs on one home execute one after another.
Exit status: 0 done (also when nothing was due), 1 a step failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from alstm_pipeline.settings import REPO_DIR, Settings, load_settings

INSTANCE_YAML = """\
# Written by alstm-pipeline: the instance its runs and `dg dev` share. One run at a time:
# every run writes the same DuckDB file (the runs also hold the home's writer lock).
concurrency:
  runs:
    max_concurrent_runs: 1
telemetry:
  enabled: false
"""


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
    retrain = commands.add_parser("retrain", help="what daily_retrain does on the evening of a date")
    retrain.add_argument("--as-of", help="evaluation date, YYYY-MM-DD (default: today in ALSTM_PIPELINE_TIMEZONE)")
    rolling = commands.add_parser("evaluate-rolling", help="RollingGen vintages over a test period, then predictions, IC, backtest")
    rolling.add_argument("--start", default=None, help="first test day (default 2017-01-01)")
    rolling.add_argument("--end", help="last test day (default: the last day of the data)")
    rolling.add_argument("--step", type=int, help="trading days between vintages (default ALSTM_PIPELINE_RETRAIN_STEP)")
    return parser.parse_args(argv)


def open_instance(settings: Settings):
    """The persistent Dagster instance of this home (created with our dagster.yaml)."""
    import dagster as dg

    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
    return dg.DagsterInstance.from_config(str(home))


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


def run(select: str, start: str | None, end: str | None, vintage: str | None, feature_set: str = "alpha158_ts") -> int:
    from alstm_pipeline.definitions import build_definitions
    from alstm_pipeline.defs.model import TEST_START
    from alstm_pipeline.defs.partitions import WEEKDAYS
    from alstm_pipeline.report import print_summary
    from alstm_pipeline.runner import materialize

    settings = load_settings()
    select, run_config = configuration_selection(select, feature_set)
    first, last = weekday_range(WEEKDAYS.get_partition_keys(), start, end)
    print(f"alstm-pipeline: {select!r} over {first}..{last} of {settings.source} ({feature_set})", flush=True)
    print(f"alstm-pipeline: warehouse {settings.warehouse_path}, instance {settings.dagster_home}", flush=True)
    began = time.perf_counter()
    results = materialize(build_definitions(), select, open_instance(settings), (first, last),
                          vintage or TEST_START, run_config=run_config, on_step=_announce)
    status = _report(results, began)
    if status == 0:
        print_summary(settings)
        print(f"\n{ui_hint(settings)}")
    return status


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
        if args.command == "run":
            return run(args.select, args.start, args.end, args.vintage, args.feature_set)
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
