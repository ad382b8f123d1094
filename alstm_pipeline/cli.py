"""``alstm-pipeline``: the headless entry point, recording every run in the home's Dagster instance.

- ``run [--select SELECTION] [--start DATE] [--end DATE] [--vintage DAY] [--feature-set NAME]``:
  materialise the selected assets (default everything the configuration needs) over the
  weekday partitions between the dates (default: all the source's data); alstm_model for the
  vintage ``DAY`` (default: the fixed Qlib split serving from 2017-01-01). ``--feature-set
  alpha360`` runs Qlib's Alpha360 configuration instead of Alpha158's (docs/alpha360.md).
- ``run --qlib-config WORKFLOW.yaml``: what ``qrun WORKFLOW.yaml`` does, from a Qlib ALSTM
  workflow file: its data, market, handler windows, model kwargs, segments and backtest
  (a key the pipeline cannot honour stops it before anything runs, all such keys listed);
  its results go to the file's experiment (``experiment_name``, qrun's default "workflow"),
  beside the main job's (experiment "main"), never over them.
- ``qlib-config WORKFLOW.yaml``: print the Dagster run config a workflow file maps to, for
  the UI's launchpad.
- ``export predictions|labels|backtest [--format parquet|csv] [--start D] [--end D] [--out PATH]
  [--experiment NAME] [--vintage DAY] [--qlib-config WORKFLOW.yaml] [--as-of T]``: one
  experiment's stored results in the shapes of Qlib's recorders (pred.pkl, label.pkl, the
  PortAnaRecord reports), as Parquet or CSV; a workflow file selects its experiment and test
  segment; with ``--as-of`` as they were stored at time T (UTC) or DuckLake snapshot T (the
  DuckLake warehouse keeps every commit).
- ``retrain [--as-of DATE]``: what the daily_retrain schedule does on that evening.
- ``evaluate-rolling [--start DATE] [--end DATE] [--step N] [--parallel K] [--threads T]``:
  RollingGen over a test period: one vintage per N trading days (K trained at once with T
  torch threads each, registered in order), then predictions, IC and the backtest, in
  experiment "rolling".
- ``ui [--host 127.0.0.1] [--port 3000]``: the Dagster UI on this home's instance.
- ``mlflow``: the exact ``mlflow ui`` command for this home's tracking store.

Runs go into the persistent instance under ``$ALSTM_PIPELINE_HOME/dagster`` (or
``DAGSTER_HOME``) as runs of the defined jobs, so ``ui`` shows and re-executes them; runs
on one home execute one after another.
Exit status: 0 done (also when nothing was due), 1 a step failed, 2 bad arguments,
128 + the signal when SIGTERM (143) or Ctrl-C (130) stopped it (the run recorded as canceled).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pandas as pd

from alstm_pipeline.settings import REPO_DIR, Settings, load_settings

ROLLING_EXPERIMENT = "rolling"  # evaluate-rolling's vintages and scores (warehouse.registry: experiments)


DESCRIPTION = ("alstm-pipeline: Qlib's ALSTM workflow as Dagster assets in one DuckDB file, run from the "
               "terminal; every run is recorded in the home's Dagster instance, so `alstm-pipeline ui` shows it.")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from alstm_pipeline.feature_sets import DEFAULT_FEATURE_SET, FEATURE_SETS

    parser = argparse.ArgumentParser(prog="alstm-pipeline", description=DESCRIPTION,
                                     epilog="Exit status: 0 done (also when nothing was due), 1 a step failed, 2 bad arguments.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=description)

    run = command("run", "materialise assets over a partition range (default: the whole main job)",
                  "Materialise the selected assets over the weekday partitions between --start and --end, "
                  "and alstm_model for one vintage; partitions of different kinds run as consecutive runs "
                  "of the defined jobs (see the UI's Jobs page). Default: the main job on all the source's data.")
    run.add_argument("--select", default="*", help='Dagster asset selection, e.g. "+raw_ohlcv" or "predictions,ic_daily" (default: everything)')
    run.add_argument("--start", help="first day of the partition range (default: the source's first day)")
    run.add_argument("--end", help="last day of the partition range (default: the source's last day)")
    run.add_argument("--vintage", help="alstm_model partition: the first day the model serves (default: 2017-01-01, the fixed split)")
    run.add_argument("--feature-set", default=DEFAULT_FEATURE_SET, choices=sorted(FEATURE_SETS),
                     help="Qlib configuration: alpha158_ts = Alpha158, 20-day windows (default); alpha360 = Alpha360 flat rows")
    run.add_argument("--qlib-config", metavar="WORKFLOW.yaml",
                     help="run a Qlib ALSTM workflow file (qrun's input); sets the data, windows, model and backtest from it")
    run.add_argument("--replace-vintage", action="store_true",
                     help="retrain a vintage of this experiment that has already scored days, and re-score them (they are named)")
    qlib_config = command("qlib-config", "print the Dagster run config of a Qlib workflow file (for the launchpad)",
                          "Print, as YAML, the run config a Qlib workflow file maps to, with the partitions and "
                          "environment it is meant for: paste each asset's ops block into the UI's launchpad.")
    qlib_config.add_argument("workflow", metavar="WORKFLOW.yaml",
                             help="a Qlib ALSTM workflow file, e.g. workflow_config_alstm_Alpha158.yaml (provider_uri and market adapted)")
    export = command("export", "write stored results in Qlib's recorder shapes (no pickle)",
                     "Write stored results in the shapes of Qlib's recorders (pred.pkl, label.pkl, the "
                     "PortAnaRecord reports) as Parquet or CSV; prints each path written.")
    export.add_argument("what", choices=("predictions", "labels", "backtest"))
    export.add_argument("--format", choices=("parquet", "csv"), help="default: the --out file's suffix, else parquet")
    export.add_argument("--start", help="first day (default: the first stored)")
    export.add_argument("--end", help="last day (default: the last stored)")
    export.add_argument("--out", help="file (predictions, labels) or folder (backtest); default under $ALSTM_PIPELINE_HOME/exports/EXPERIMENT")
    export.add_argument("--experiment", help="whose results (default: main, the main job's; a workflow run's is its experiment_name)")
    export.add_argument("--vintage", help="predictions: only the scores of this vintage (its first serving day)")
    export.add_argument("--qlib-config", metavar="WORKFLOW.yaml", help="the experiment and test segment of this workflow file")
    export.add_argument("--as-of", help="the tables as stored at this UTC time or snapshot id (DuckLake warehouse only)")
    retrain = command("retrain", "what daily_retrain does on the evening of a date",
                      "Do what the daily_retrain schedule does on the evening of --as-of: when "
                      "ALSTM_PIPELINE_RETRAIN_STEP trading days have passed since the newest vintage, train the "
                      "rolling vintage serving from the next weekday, behind the promotion gate.")
    retrain.add_argument("--as-of", help="evening, YYYY-MM-DD (default: today in ALSTM_PIPELINE_TIMEZONE). A day after the "
                                         "data's last day trains on every day up to the data's end, for a vintage serving "
                                         "from the weekday after --as-of (the bundled sample ends 2021-04-21: pick a day "
                                         "inside the data to replay that evening)")
    rolling = command("evaluate-rolling", "RollingGen vintages over a test period, then predictions, IC, backtest",
                      "Qlib's RollingGen: train one vintage every --step trading days of the test period, then "
                      "score it, and report IC and the backtest.")
    rolling.add_argument("--start", default=None, help="first test day (default 2017-01-01)")
    rolling.add_argument("--end", help="last test day (default: the last day of the data)")
    rolling.add_argument("--step", type=int, help="trading days between vintages (default ALSTM_PIPELINE_RETRAIN_STEP)")
    rolling.add_argument("--parallel", type=int, help="vintages trained at once, each in its own process with the cores "
                         "shared out (default ALSTM_PIPELINE_PARALLEL_VINTAGES, 1); registered in order either way")
    rolling.add_argument("--threads", type=int, help="torch threads per vintage (default: the cores shared out); "
                         "equal threads give bit-equal weights sequentially and in parallel")
    ui = command("ui", "open the Dagster UI on this home's runs (127.0.0.1:3000)",
                 "Start the Dagster UI (webserver and daemon) on the Dagster instance of ALSTM_PIPELINE_HOME, "
                 "the one every alstm-pipeline run records into, from any directory. Stop it with Ctrl-C.")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    commands.add_parser("mlflow", help="print the command that opens MLflow's UI on this home's runs",
                        description="Print the exact `mlflow ui` command for this home's tracking store "
                                    "(the mlflow extra logs alstm_model, ic_daily and backtest_daily runs there).")
    return parser.parse_args(argv)


def open_instance(settings: Settings):
    """The persistent Dagster instance of this home: SQLite, or Postgres when configured."""
    from alstm_pipeline.instance import open_home_instance

    return open_home_instance(settings)


def ui_hint(settings: Settings) -> str:
    return f"open the UI on this home: alstm-pipeline ui   (http://127.0.0.1:3000; instance {settings.dagster_home})"


def ui_command(settings: Settings, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """``dagster dev`` (webserver and daemon) on this home's instance with the repository's
    workspace, from any directory: the environment names the home and its instance, so
    nothing falls back to a temporary instance."""
    env = {**os.environ, "ALSTM_PIPELINE_HOME": str(settings.home), "DAGSTER_HOME": str(settings.dagster_home),
           # Absolute: the UI runs in the instance's folder (open_ui), not the caller's.
           "ALSTM_PIPELINE_SOURCE": str(settings.source.resolve()),
           **({"ALSTM_PIPELINE_UNIVERSE": str(settings.universe.resolve())} if settings.universe else {}),
           # `dagster dev` suggests `dg dev`, which starts only from the project folder and
           # without DAGSTER_HOME falls back to a temporary instance: this is the one that fits.
           "PYTHONWARNINGS": "ignore:Function `dev_command` is superseded"}
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_DIR / "workspace.yaml"), "-h", host, "-p", str(port)]
    return command, env


def open_ui(host: str, port: int) -> int:
    """``ui``: replace this process with the Dagster UI on the current home."""
    settings = load_settings()
    open_instance(settings)  # a fresh home gets our instance settings before the UI opens it
    command, env = ui_command(settings, host, port)
    print(f"alstm-pipeline: UI on http://{host}:{port} for home {settings.home} (instance {settings.dagster_home}); "
          "Ctrl-C stops it", flush=True)
    # From the instance's own folder: started in the repository root, Dagster would warn that
    # the dagster.yaml there is not the one in use (DAGSTER_HOME names the home's).
    os.chdir(settings.dagster_home)
    os.execve(sys.executable, command, env)
    return 0  # not reached


def mlflow_hint(settings: Settings) -> str:
    """The exact command that opens MLflow's UI on the runs the assets log for this home."""
    import shlex

    from alstm_pipeline import tracking

    command = f"mlflow ui --backend-store-uri {shlex.quote(tracking.tracking_uri(settings.home))} --host 127.0.0.1"
    if not tracking.available():
        return f"{command}   (install the extra first: pip install -e \".[mlflow]\")"
    return command


def weekday_range(keys: list[str], start: str | None, end: str | None) -> tuple[str, str]:
    """First and last weekday partition key inside [start, end] (defaults: all partitions)."""
    lo = pd.Timestamp(start).strftime("%Y-%m-%d") if start else keys[0]
    hi = pd.Timestamp(end).strftime("%Y-%m-%d") if end else keys[-1]
    inside = [key for key in keys if lo <= key <= hi]
    if not inside:
        raise SystemExit(f"alstm-pipeline: no weekday partition between {lo} and {hi} (partitions run {keys[0]}..{keys[-1]})")
    return inside[0], inside[-1]


def _report(outcome, began: float) -> int:
    """The last lines of a command: done, stopped by a signal, or what failed and how to fix it."""
    from alstm_pipeline.runner import Outcome, failure_messages

    outcome = outcome if isinstance(outcome, Outcome) else Outcome(list(outcome))
    results, seconds = outcome.results, time.perf_counter() - began
    if outcome.stopped_by:
        print(f"alstm-pipeline: stopped by {outcome.stopped_by} after {seconds:.1f} s: the run is recorded as canceled, "
              "the writer lock is released, and the partitions it did not finish keep their previous rows. "
              "Re-run the same command to finish.", file=sys.stderr, flush=True)
        return 128 + int(getattr(signal, outcome.stopped_by))
    if results and all(result.success for result in results):
        print(f"alstm-pipeline: done in {seconds:.1f} s", flush=True)
        return 0
    messages = failure_messages(results) or ["a run failed without a failed step (see its log in the UI)"]
    print(f"alstm-pipeline: FAILED after {seconds:.1f} s", file=sys.stderr)
    for message in messages:
        print(f"  {message}", file=sys.stderr)
    return 1


def _announce(step) -> None:
    names = ", ".join(key.to_user_string() for key in step.keys)
    print(f"alstm-pipeline: run of {names}", flush=True)


def configuration_selection(select: str, feature_set: str, experiment: str | None = None) -> tuple[str, dict]:
    """The selection and run config of one configuration: ``*`` leaves out the other
    configuration's feature table (computing it would cost a whole backfill nothing reads);
    alstm_model and predictions get the feature set; the model and scoring assets get the
    experiment (default: the configuration's main experiment, ``registry.main_experiment``)."""
    from alstm_pipeline import feature_sets
    from alstm_pipeline.warehouse.registry import main_experiment

    chosen = feature_sets.get(feature_set)
    if select.strip() == "*":
        others = [fs.table for fs in feature_sets.FEATURE_SETS.values() if fs.table != chosen.table]
        select = " and ".join(["*", *(f"not key:{table}" for table in others)])
    experiment = experiment or main_experiment(chosen.name)
    ops = {name: {"config": {"experiment": experiment}} for name in ("alstm_model", "predictions", "ic_daily", "backtest_daily")}
    for name in ("alstm_model", "predictions"):
        ops[name]["config"]["feature_set"] = chosen.name
    return select, {"ops": ops}


def run(select: str, start: str | None, end: str | None, vintage: str | None, feature_set: str = "alpha158_ts",
        run_config: dict | None = None, summary_start: str | None = None, experiment: str | None = None,
        tags: dict[str, str] | None = None, replace_vintage: bool = False) -> int:
    from alstm_pipeline.definitions import build_definitions
    from alstm_pipeline.defs.model import TEST_START
    from alstm_pipeline.defs.partitions import WEEKDAYS
    from alstm_pipeline.report import print_summary
    from alstm_pipeline.runner import materialize, run_stoppably

    settings = load_settings()
    select, configuration = configuration_selection(select, feature_set, experiment)
    # A workflow's own op configs win over the configuration defaults, key by key.
    ops = configuration["ops"]
    if replace_vintage:
        ops["alstm_model"]["config"]["replace_vintage"] = True
    for name, op in (run_config or {}).get("ops", {}).items():
        ops[name] = {"config": {**ops.get(name, {}).get("config", {}), **op["config"]}}
    run_config = {"ops": ops}
    first, last = weekday_range(WEEKDAYS.get_partition_keys(), start, end)
    print(f"alstm-pipeline: {select!r} over {first}..{last} of {settings.source} ({feature_set})", flush=True)
    print(f"alstm-pipeline: warehouse {settings.open_warehouse().location}, instance {settings.dagster_home}", flush=True)
    began = time.perf_counter()
    instance = open_instance(settings)
    outcome = run_stoppably(lambda: materialize(build_definitions(), select, instance, (first, last), vintage or TEST_START,
                                                run_config=run_config, on_step=_announce, tags=tags), instance)
    status = _report(outcome, began)
    if status == 0:
        print_summary(settings, summary_start, experiment=ops["predictions"]["config"]["experiment"],
                      benchmark=ops.get("backtest_daily", {}).get("config", {}).get("benchmark", ""))
        print(f"\n{ui_hint(settings)}")
        from alstm_pipeline import tracking

        if tracking.enabled():
            print(f"open MLflow's UI on this home: {mlflow_hint(settings)}")
    return status


def _load_workflow(path: str, check_data: bool = True):
    """The workflow spec, or None after printing why it cannot run (every key at once; with
    ``check_data`` the data-dependent ones too: provider, market, benchmark, segment dates)."""
    from alstm_pipeline.qlib_workflow import WorkflowError, load_workflow

    try:
        spec = load_workflow(path, check_data=check_data)
    except WorkflowError as error:
        print(f"alstm-pipeline: {error}\nNothing was run. Fix these keys (docs/coming_from_qlib.md lists what is supported).",
              file=sys.stderr)
        return None
    for warning in spec.warnings:
        print(f"alstm-pipeline: warning: {warning}", file=sys.stderr)
    return spec


def print_run_config(path: str) -> int:
    """``qlib-config``: the run config as YAML, with the partitions it is meant for."""
    from ruamel.yaml import YAML

    from alstm_pipeline.defs.partitions import FEATURE_LOOKBACK
    from alstm_pipeline.qlib_workflow import workflow_plan

    # Only printed, nothing runs: the file is checked, not yet the data it will meet.
    spec = _load_workflow(path, check_data=False)
    if spec is None:
        return 2
    first, last, vintage, config = workflow_plan(spec, FEATURE_LOOKBACK.weekdays)
    print(f"# Dagster run config of {spec.path} (experiment {spec.experiment_name!r}, feature set {spec.feature_set}).\n"
          f"# Environment: ALSTM_PIPELINE_SOURCE={spec.source_path()} ALSTM_PIPELINE_UNIVERSE={spec.universe_path() or ''}\n"
          f"# 1. +alstm_model's upstream over weekdays {first}..{last or 'the last day'}; 2. alstm_model, vintage {vintage}\n"
          f"#    (keep only its ops block); 3. predictions, ic_daily, backtest_daily over the same weekdays.\n"
          "# The launchpad rejects config of assets it does not launch: delete the other ops blocks.")
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(config, sys.stdout)
    return 0


def run_workflow(path: str, select: str, replace_vintage: bool = False) -> int:
    """``run --qlib-config``: qrun's run from a workflow file, through the assets, in the
    file's experiment (its own rows of every scoring table)."""
    from alstm_pipeline.defs.partitions import FEATURE_LOOKBACK
    from alstm_pipeline.qlib_workflow import run_tags, workflow_plan

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
    test_start = str(pd.Timestamp(spec.segment_dates()["test"][0]).date())
    if test_start < load_settings().scoring_start:
        # The test segment is scored from its first day: the scoring partitions must reach it.
        os.environ["ALSTM_PIPELINE_SCORING_START"] = test_start
        print(f"alstm-pipeline: scoring partitions start at the test segment's {test_start}; open the UI with "
              f"ALSTM_PIPELINE_SCORING_START={test_start} alstm-pipeline ui", flush=True)
    first, last, vintage, config = workflow_plan(spec, FEATURE_LOOKBACK.weekdays, replace_vintage=replace_vintage)
    if spec.backtest is None and select == "*":
        select = "*ic_daily"  # no PortAnaRecord, no backtest (as in qrun)
    print(f"alstm-pipeline: workflow {spec.path} (experiment {spec.experiment_name!r}, {spec.feature_set}): train "
          f"{spec.segments['train'][0]}..{spec.segments['train'][1]}, valid {spec.segments['valid'][0]}.."
          f"{spec.segments['valid'][1]}, test from {vintage}; results go to experiment {spec.experiment_name!r} "
          f"(alstm-pipeline export ... --qlib-config {spec.path})", flush=True)
    return run(select, first, last, vintage, spec.feature_set, run_config=config, summary_start=vintage,
               experiment=spec.experiment_name, tags=run_tags(spec))


def export_selection(experiment: str | None, workflow: str | None, start: str | None, end: str | None
                     ) -> tuple[str, str | None, str | None]:
    """(experiment, start, end) of an export: ``--qlib-config`` selects the file's experiment
    and its test segment (what its SignalRecord and SigAnaRecord cover); explicit flags win."""
    from alstm_pipeline.qlib_workflow import load_workflow
    from alstm_pipeline.warehouse.registry import DEFAULT_EXPERIMENT

    if workflow is None:
        return experiment or DEFAULT_EXPERIMENT, start, end
    spec = load_workflow(workflow)
    test_start, test_end = spec.segment_dates()["test"]
    return experiment or spec.experiment_name, start or test_start, end or test_end or None


def export(what: str, fmt: str | None, start: str | None, end: str | None, out: str | None,
           experiment: str | None = None, vintage: str | None = None, workflow: str | None = None,
           as_of: str | None = None) -> int:
    """``export``: one experiment's stored results → Qlib-shaped Parquet/CSV; prints each path written."""
    from alstm_pipeline import exports
    from alstm_pipeline.evaluation import BacktestResult, TopkDropoutConfig
    from alstm_pipeline.warehouse import WarehouseError, registry, tables

    experiment, start, end = export_selection(experiment, workflow, start, end)
    if vintage and what != "predictions":
        print("alstm-pipeline: --vintage selects scores; labels and the backtest have none. Fix: drop --vintage.", file=sys.stderr)
        return 2

    suffix = Path(out).suffix.lstrip(".").lower() if out and what != "backtest" else ""
    if fmt and suffix in exports.FORMATS and suffix != fmt:
        print(f"alstm-pipeline: --format {fmt} but --out {out} names a .{suffix} file. Fix: make them agree.", file=sys.stderr)
        return 2
    fmt = fmt or (suffix if suffix in exports.FORMATS else "parquet")
    settings = load_settings()
    store = settings.open_warehouse()
    if not store.exists():
        print(f"alstm-pipeline: no warehouse at {store.location}. Fix: run `alstm-pipeline run` first.", file=sys.stderr)
        return 1
    if as_of:  # e.g. the scores as served on an evening, before any later re-run replaced them
        try:
            store = store.as_of(int(as_of) if as_of.isdigit() else as_of)
        except WarehouseError as error:
            print(f"alstm-pipeline: {error}", file=sys.stderr)
            return 2
    stored = tables.experiments(store)
    if what != "labels" and experiment not in stored:
        print(f"alstm-pipeline: no scores of experiment {experiment!r} in {store.location} (stored: {', '.join(stored) or 'none'}). "
              "Fix: --experiment NAME, or run that experiment first.", file=sys.stderr)
        return 1
    folder = settings.home / "exports" / experiment
    if what == "predictions":
        versions = None
        if vintage:
            known = registry.read_registry(store, experiment)
            versions = known.loc[known["vintage"] == str(pd.Timestamp(vintage).date()), "version"].astype(str).tolist()
            if not versions:
                print(f"alstm-pipeline: experiment {experiment!r} has no vintage {vintage}. Fix: pick one of "
                      f"{', '.join(sorted(set(known['vintage']))) or 'none'}.", file=sys.stderr)
                return 1
        frames = {"pred": exports.signal_frame(tables.read_predictions(store, start, end, experiment, versions))}
    elif what == "labels":
        frames = {"label": exports.label_frame(tables.read_labels(store, start, end))}
    else:
        daily = tables.read_backtest(store, start, end, experiment)
        if daily.empty:
            print(f"alstm-pipeline: no backtest_daily rows of experiment {experiment!r} in that range. "
                  "Fix: materialise backtest_daily first.", file=sys.stderr)
            return 1
        # The account the backtest started from, recovered exactly from its first day:
        # return − cost = V_1 / V_0 − 1 (backtest_daily's definitions).
        head = daily.iloc[0]
        account = float(head["account_value"] / (1.0 + head["return"] - head["cost"]))
        result = BacktestResult(daily=daily, trades=tables.read_backtest_trades(store, start, end, experiment),
                                positions=tables.read_backtest_positions(store, start, end, experiment),
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
    from alstm_pipeline.runner import materialize, run_stoppably
    from alstm_pipeline.warehouse import registry

    settings = load_settings()
    store = settings.open_warehouse()
    if not store.exists():
        print(f"alstm-pipeline: no warehouse at {store.location}. Fix: run `alstm-pipeline run` first.", file=sys.stderr)
        return 1
    day = pd.Timestamp(as_of) if as_of else local_today(pd.Timestamp.now(tz="UTC").to_pydatetime())
    request = retrain_request(store, day, settings)
    if isinstance(request, dg.SkipReason):
        print(f"alstm-pipeline: nothing to train on the evening of {day.date()}: {request.skip_message}")
        return 0
    print(f"alstm-pipeline: training vintage {request.partition_key} (evening of {day.date()})", flush=True)
    began = time.perf_counter()
    instance = open_instance(settings)
    outcome = run_stoppably(lambda: materialize(build_definitions(), "alstm_model", instance,
                                                vintage=request.partition_key, run_config=request.run_config), instance)
    status = _report(outcome, began)
    if outcome.stopped_by:
        return status
    known = registry.read_registry(store, registry.DEFAULT_EXPERIMENT)
    # retrain trains the main job's configuration; an Alpha360 vintage of the same day is not its outcome
    mine = known[(known["vintage"] == request.partition_key) & (known["feature_set"] == "alpha158_ts")]
    if len(mine):
        row = mine.sort_values("created_at").iloc[-1]
        print(f"  vintage {row['vintage']}: {row['version']} {row['status']}, trained through "
              f"{row['trained_through'].date()} — {row['gate_reason']}")
        if row["status"] == "rejected":
            return 0  # the gate did its job: the vintage in force keeps serving
    return status


def train_candidates(keys: list[str], calendar, model_config: dict, settings: Settings, workers: int,
                     threads: int | None = None) -> Path:
    """Train the vintages ``keys`` at once (vintage_pool): ``workers`` processes of ``threads``
    torch threads (default: the cores shared out). Returns the candidates' folder; raises
    CandidateError naming every vintage that failed (and leaves no folder then)."""
    from alstm_pipeline import vintage_pool
    from alstm_pipeline.defs.model import AlstmModelConfig
    from alstm_pipeline.warehouse import backends

    folder = settings.models_dir / vintage_pool.CANDIDATES / pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%f")
    form = AlstmModelConfig(**model_config)
    threads = threads or vintage_pool.threads_per_worker(workers)
    tasks = [vintage_pool.CandidateTask(plan=form.plan(key, calendar), feature_set=form.feature_set,
                                        config=form.train_config(), warehouse=backends.location(settings.open_warehouse()),
                                        folder=str(folder), threads=threads, gpu=vintage_pool.gpu_for(index, form.device))
             for index, key in enumerate(keys)]
    print(f"alstm-pipeline: training {len(keys)} vintages, {workers} at a time ({threads} torch thread(s) each)", flush=True)
    began = time.perf_counter()
    try:
        vintage_pool.train_candidates(tasks, workers, on_done=lambda done: print(
            f"alstm-pipeline: vintage {done['vintage']} trained in {done['seconds']:.0f} s ({done['epochs_run']} epochs)",
            flush=True))
    except vintage_pool.CandidateError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    print(f"alstm-pipeline: {len(keys)} vintages trained in {time.perf_counter() - began:.0f} s; "
          "registering them in vintage order", flush=True)
    return folder


def register_in_order(defs, instance, keys: list[str], model_config: dict, settings: Settings) -> list:
    """One alstm_model run per vintage, in vintage order (with ``candidates`` in the config:
    registering what train_candidates trained). A vintage the gate rejects is registered
    as rejected and the evaluation goes on (it never serves). Returns the runs that count;
    stops at the first other failure."""
    from alstm_pipeline.runner import materialize
    from alstm_pipeline.warehouse import registry

    store = settings.open_warehouse()
    results = []
    for number, key in enumerate(keys, 1):
        print(f"alstm-pipeline: vintage {number}/{len(keys)} {key}", flush=True)
        before = set(registry.read_registry(store)["version"])
        (result,) = materialize(defs, "alstm_model", instance, vintage=key, run_config={"ops": {"alstm_model": {"config": model_config}}})
        if not result.success:
            known = registry.read_registry(store)
            new = known[(known["vintage"] == key) & ~known["version"].isin(before)]
            if len(new) and (new["status"] == "rejected").all():
                # The blocking gate failed the run after registering the vintage as rejected.
                print(f"alstm-pipeline: vintage {key} rejected by the gate: {new['gate_reason'].iloc[-1]}", flush=True)
                continue
            results.append(result)
            return results
        results.append(result)
    return results


def evaluate_rolling(start: str | None, end: str | None, step: int | None, parallel: int | None = None,
                     threads: int | None = None) -> int:
    from alstm_pipeline import vintage_pool, vintages
    from alstm_pipeline.definitions import build_definitions
    from alstm_pipeline.defs.model import TEST_START
    from alstm_pipeline.defs.partitions import SCORING_DAYS, WEEKDAYS
    from alstm_pipeline.report import print_summary
    from alstm_pipeline.runner import Outcome, materialize, run_stoppably
    from alstm_pipeline.warehouse import tables

    settings = load_settings()
    store = settings.open_warehouse()
    if not store.table_exists("labels"):
        print("alstm-pipeline: the warehouse has no labels yet. Fix: run `alstm-pipeline run` first.", file=sys.stderr)
        return 1
    calendar = tables.read_calendar(store)
    test_start, test_end = pd.Timestamp(start or TEST_START), pd.Timestamp(end) if end else calendar[-1]
    scoring_from = SCORING_DAYS.get_first_partition_key()
    if test_start < pd.Timestamp(scoring_from):
        print(f"alstm-pipeline: the scoring partitions start at {scoring_from}, after the test start {test_start.date()}. "
              f"Fix: ALSTM_PIPELINE_SCORING_START={test_start.date()} alstm-pipeline evaluate-rolling … "
              "(and start the UI with the same setting)", file=sys.stderr)
        return 2
    keys = vintages.rolling_keys(calendar, test_start, test_end, step or settings.retrain_step)
    print(f"alstm-pipeline: rolling evaluation {test_start.date()}..{test_end.date()}: {len(keys)} vintages", flush=True)
    defs, instance = build_definitions(), open_instance(settings)
    # An evaluation is another configuration than the main job's fixed split: its vintages
    # and scores live in their own experiment, so the main job's served days stay as they are.
    model_config = {"mode": "rolling", "train_days": settings.train_days, "valid_days": settings.valid_days,
                    "trunc_days": settings.trunc_days, "experiment": ROLLING_EXPERIMENT}
    began = time.perf_counter()
    workers = min(parallel or vintage_pool.parallel_setting(), len(keys))
    folder = None
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be ≥ 1, not {threads}")
    if workers > 1:
        # Every vintage trained at once (a process each), then registered one by one below.
        try:
            folder = train_candidates(keys, calendar, model_config, settings, workers, threads)
        except vintage_pool.CandidateError as error:
            print(f"alstm-pipeline: {error}", file=sys.stderr)
            return 1
    elif threads:
        import torch

        torch.set_num_threads(threads)  # the vintages train in this process, inside their runs
    outcome = run_stoppably(lambda: register_in_order(defs, instance, keys, {**model_config, "candidates": str(folder or "")},
                                                      settings), instance)
    results = outcome.results
    if outcome.stopped_by or (results and not results[-1].success):
        return _report(outcome, began)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)  # every candidate is registered now, as a checkpoint of its own
    first, last = weekday_range(WEEKDAYS.get_partition_keys(), str(test_start.date()), str(test_end.date()))
    report_config = {"ops": {name: {"config": {"start": str(test_start.date()), "end": str(test_end.date()),
                                               "experiment": ROLLING_EXPERIMENT}}
                             for name in ("ic_daily", "backtest_daily")}}
    report_config["ops"]["predictions"] = {"config": {"experiment": ROLLING_EXPERIMENT}}
    outcome = run_stoppably(lambda: materialize(defs, "predictions,ic_daily,backtest_daily", instance, (first, last),
                                                run_config=report_config, on_step=_announce), instance)
    status = _report(Outcome(results + outcome.results, outcome.stopped_by), began)
    if status == 0:
        print_summary(settings, test_start, test_end, experiment=ROLLING_EXPERIMENT)
    return status


def _stop(signo, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signo).name)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # SIGTERM (systemd, docker stop, Kubernetes) stops a command as Ctrl-C does; while runs
    # execute, runner.run_stoppably takes both signals and records the run as canceled.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        if args.command == "run" and args.qlib_config:
            if args.start or args.end or args.vintage:
                print("alstm-pipeline: --qlib-config sets the dates and the vintage from the file. "
                      "Fix: drop --start/--end/--vintage, or edit the workflow file.", file=sys.stderr)
                return 2
            return run_workflow(args.qlib_config, args.select, args.replace_vintage)
        if args.command == "run":
            return run(args.select, args.start, args.end, args.vintage, args.feature_set, replace_vintage=args.replace_vintage)
        if args.command == "qlib-config":
            return print_run_config(args.workflow)
        if args.command == "export":
            return export(args.what, args.format, args.start, args.end, args.out, args.experiment, args.vintage,
                          args.qlib_config, args.as_of)
        if args.command == "retrain":
            return retrain(args.as_of)
        if args.command == "evaluate-rolling":
            return evaluate_rolling(args.start, args.end, args.step, args.parallel, args.threads)
        if args.command == "ui":
            return open_ui(args.host, args.port)
        if args.command == "mlflow":
            print(mlflow_hint(load_settings()))
            return 0
    except (ValueError, OSError) as error:
        # A setting or argument the user can fix: one line, no traceback.
        print(f"alstm-pipeline: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        name = str(stop) or "SIGINT"
        print(f"alstm-pipeline: stopped by {name} (no run was in progress).", file=sys.stderr)
        return 128 + int(getattr(signal, name, signal.SIGINT))
    finally:
        signal.signal(signal.SIGTERM, previous)  # main() may be called by a host program (tests)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
