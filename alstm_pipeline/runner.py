"""Materialise a selection of assets through the real Definitions, as the CLI and tests do.

Assets with different partitions (weekdays for data, vintages for models, the days a
vintage may score) cannot share a run, so a selection is executed as consecutive runs,
each over one partitions definition in dependency order: data days, then the vintage,
then the days it scores. Each run is a run of the defined job holding its assets
(``JOBS``), so the UI opens and re-executes it like any run it launched; every run is
recorded in the instance given (the persistent one under the home for the CLI).
"""

from __future__ import annotations

import ctypes
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from alstm_pipeline import progress
from alstm_pipeline.dead_runs import HOST_TAG, PID_TAG, process_tags

# The defined jobs (defs/automation.py) a run may use, one per kind of partition.
JOBS = ("data_days", "train_vintage", "scoring_days")
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def parse_selection(text: str) -> dg.AssetSelection:
    """Dagster's selection syntax: the UI's (``key:raw_ohlcv+``, ``group:features``) or a
    comma list of clauses (``universe,raw_ohlcv``, ``+labels``, ``*``)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError(f"empty asset selection {text!r}")
    selection = dg.AssetSelection.from_string(parts[0])
    for part in parts[1:]:
        selection = selection | dg.AssetSelection.from_string(part)
    return selection


@dataclass(frozen=True)
class Step:
    """One run of a multi-run materialisation: the assets and the partitions they cover."""

    keys: tuple[dg.AssetKey, ...]
    partitioned_by: str | None  # "weekdays", "vintages" or None
    partitions_def: dg.PartitionsDefinition | None = None


def plan_runs(defs: dg.Definitions, selection: dg.AssetSelection) -> list[Step]:
    """Split the selected assets, in dependency order, into runs of one partitions
    definition; an unpartitioned asset joins the run that reaches it when that run's job
    holds it too, else starts its own."""
    graph = defs.resolve_asset_graph()
    keys = selection.resolve(graph)
    if not keys:
        raise ValueError("the selection matches no asset")
    ordered = [key for level in graph.toposorted_asset_keys_by_level for key in level if key in keys]
    steps: list[list] = []
    for key in ordered:
        partitions = graph.get(key).partitions_def
        if steps and (partitions is None or steps[-1][1] in (None, partitions)) \
                and job_for(defs, [*steps[-1][0], key]) is not None:
            steps[-1][0].append(key)
            steps[-1][1] = steps[-1][1] or partitions
        else:
            steps.append([[key], partitions])
    return [Step(tuple(step_keys), _kind(partitions), partitions) for step_keys, partitions in steps]


def _kind(partitions: dg.PartitionsDefinition | None) -> str | None:
    if partitions is None:
        return None
    return "vintages" if isinstance(partitions, dg.DynamicPartitionsDefinition) else "weekdays"


def job_for(defs: dg.Definitions, keys) -> str | None:
    """The first of ``JOBS`` whose assets include all of ``keys``."""
    for name in JOBS:
        if set(keys) <= set(defs.resolve_job_def(name).asset_layer.selected_asset_keys):
            return name
    return None


def step_days(step: Step, weekday_range: tuple[str, str]) -> tuple[str, str]:
    """``weekday_range`` within the step's partitions (the scoring ones start later than
    the data's); a ValueError names the bound when none is left."""
    first, last = weekday_range
    window = step.partitions_def.get_partition_keys()
    inside = [key for key in window if first <= key <= last] if window else []
    if not inside:
        names = ", ".join(key.to_user_string() for key in step.keys)
        span = f"{window[0]}..{window[-1]}" if window else "no day"
        raise ValueError(f"{names}: no partition in {first}..{last}; they cover {span} (scoring partitions start at "
                         "ALSTM_PIPELINE_SCORING_START, the first day a vintage may serve). Fix: choose days inside "
                         "that span, or set ALSTM_PIPELINE_SCORING_START earlier for vintages that serve earlier days.")
    return inside[0], inside[-1]


def execute_step(
    defs: dg.Definitions,
    step: Step,
    instance: dg.DagsterInstance,
    weekday_range: tuple[str, str] | None,
    vintage: str | None,
    run_config: dict | None = None,
    log_level: str = "INFO",
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Run one step: weekday assets over ``weekday_range`` (a single-run backfill), a
    vintage-partitioned asset for ``vintage``, unpartitioned ones once."""
    name = job_for(defs, step.keys)
    if name is None:
        raise ValueError(f"no job of the definitions holds {[key.to_user_string() for key in step.keys]}")
    job_def = defs.resolve_job_def(name)
    # The process's id on the run, so the next run can tell if this process died (dead_runs.py).
    run_tags = {**process_tags(), **(tags or {})}
    partition_key = None
    if step.partitioned_by == "weekdays":
        if weekday_range is None:
            raise ValueError("the selection holds weekday-partitioned assets: give a partition range")
        first, last = step_days(step, weekday_range)
        run_tags.update({RANGE_START_TAG: first, RANGE_END_TAG: last})
    elif step.partitioned_by == "vintages":
        if vintage is None:
            raise ValueError("the selection holds alstm_model: give a vintage")
        instance.add_dynamic_partitions("vintages", [vintage])
        partition_key = vintage
    config = {"loggers": {"console": {"config": {"log_level": log_level}}}, **(run_config or {})}
    ops = {name: value for name, value in config.get("ops", {}).items()
           if dg.AssetKey(name) in step.keys}
    config = {**config, "ops": ops} if ops else {key: value for key, value in config.items() if key != "ops"}
    result = job_def.execute_in_process(
        instance=instance, tags=run_tags, partition_key=partition_key, raise_on_error=False,
        asset_selection=list(step.keys), run_config=config,
    )
    if not result.success:
        from alstm_pipeline.instance import mark_failed_partitions

        mark_failed_partitions(instance, result.run_id)  # failed in the UI despite the partition-subset flag
    return result


def materialize(
    defs: dg.Definitions,
    select: str,
    instance: dg.DagsterInstance,
    weekday_range: tuple[str, str] | None = None,
    vintage: str | None = None,
    run_config: dict | None = None,
    log_level: str = "INFO",
    on_step=None,
    tags: dict[str, str] | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Run ``select`` as consecutive runs (see ``plan_runs``); stops at the first failure.
    Returns the results of the runs made."""
    results = []
    after_vintage = False
    steps = plan_runs(defs, parse_selection(select))
    days_of: list[tuple[str, str] | None] = []
    for step in steps:  # every range is checked before anything runs
        days = weekday_range
        if after_vintage and vintage is not None and days is not None and days[0] < vintage:
            # The days after a vintage's run are the days it scores: none before its first day.
            first = pd.offsets.BDay().rollforward(pd.Timestamp(vintage)).strftime("%Y-%m-%d")  # weekday keys only
            days = (first, days[1]) if first <= days[1] else days
            scoring_from = step.partitions_def.get_first_partition_key() if step.partitions_def else None
            if scoring_from and first < scoring_from <= days[1]:
                raise ValueError(f"vintage {vintage} serves from {first}, but the scoring partitions start at {scoring_from}. "
                                 f"Fix: set ALSTM_PIPELINE_SCORING_START={vintage} (for the UI too) so its first days get scored.")
        if step.partitioned_by == "weekdays" and days is not None:
            days = step_days(step, days)
        days_of.append(days)
        after_vintage = after_vintage or step.partitioned_by == "vintages"
    for step, days in zip(steps, days_of):
        if on_step is not None:
            on_step(step)
        result = execute_step(defs, step, instance, days, vintage, run_config, log_level, tags)
        results.append(result)
        if not result.success:
            break
    return results


# A table a step reads that this home does not have yet: name it and the selection that builds it.
_MISSING_TABLE = re.compile(r"Table with name (\w+) does not exist")


def _root_error(error):
    """The user's own exception inside Dagster's wrappers ("Error occurred while executing op")."""
    while error is not None and error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause
    return error


def failure_message(step_key: str, error) -> str:
    """What a failed step did wrong and what to do, in the project's words."""
    root = _root_error(error)
    if root is None:
        return f"{step_key}: failed"
    text = root.message.strip()
    missing = _MISSING_TABLE.search(text)
    if missing:
        table = missing.group(1)
        return (f"{step_key}: reads table {table}, which this home does not have yet. Fix: materialise it first "
                f"(--select '+{table}'), or select '*{step_key}' to run everything {step_key} needs.")
    if root.cls_name == "Failure" or text.startswith(f"{root.cls_name}:"):
        text = text.split(": ", 1)[-1]
    if root.cls_name not in ("Failure", "WarehouseError", "SourceReport", "SourceDataError"):
        # Not one of the project's own errors (which say what to fix): its class says what kind.
        text = f"{root.cls_name}: {text}"
    return f"{step_key}: {text}"


def failure_messages(results: Sequence[dg.ExecuteInProcessResult]) -> list[str]:
    """The cause of each failed step (its own exception, never Dagster's wrapper), one line
    each, followed by the run's id for the full trace."""
    messages = []
    for result in results:
        for event in result.all_events:
            if event.event_type_value == "STEP_FAILURE":
                messages.append(failure_message(event.step_key, event.event_specific_data.error))
        if not result.success and messages:
            messages.append(f"(full trace: run {result.run_id} in the UI, or above)")
    return messages


@dataclass
class Outcome:
    """What a stoppable materialisation returned, and the signal that stopped it, if any."""

    results: list
    stopped_by: str | None = None


def _raise_in(thread: threading.Thread) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))


def _own_unfinished_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    own = process_tags()
    records = instance.get_run_records(filters=dg.RunsFilter(
        tags={PID_TAG: own[PID_TAG], HOST_TAG: own[HOST_TAG]},
        statuses=[dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
                  dg.DagsterRunStatus.CANCELING]))
    return [record.dagster_run for record in records]


class _Heartbeat:
    """Every 30 s while runs execute: what the run of this process has recorded so far, in
    the terminal and in the run's log. Dagster's own bookkeeping of a long partition range
    (an event per partition and asset) takes minutes in which no step logs anything."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance, self.every = instance, progress.REPORT_EVERY_SECONDS
        self.started = self.last = time.monotonic()
        self.planned: dict[str, int] = {}

    def _planned(self, run_id: str) -> int:
        if run_id not in self.planned:  # written before the run starts: counted once
            records = self.instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=1_000_000).records
            # One event per partition, or (DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS,
            # instance.py) one per asset naming its whole subset of partitions.
            subsets = [record.event_log_entry.dagster_event.event_specific_data.partitions_subset for record in records]
            self.planned[run_id] = sum(1 if subset is None else len(subset) for subset in subsets)
        return self.planned[run_id]

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        for run in _own_unfinished_runs(self.instance):
            elapsed = now - self.started  # this command's time until the run has started
            if run.status == dg.DagsterRunStatus.NOT_STARTED:
                line = "Dagster is recording the run's planned partitions"
            else:
                stats = self.instance.get_run_stats(run.run_id)
                planned = self._planned(run.run_id)
                line = (f"{stats.steps_succeeded} steps done, {stats.materializations}/{planned} partition "
                        "materialisations recorded")
                if stats.start_time:
                    elapsed = time.time() - stats.start_time  # this run's own time
                if 0 < stats.materializations < planned and stats.start_time:
                    rate = stats.materializations / max(time.time() - stats.start_time, 1e-9)
                    line += f", about {(planned - stats.materializations) / rate:.0f} s left at this rate"
            text = f"still running after {elapsed:.0f} s: {line}"
            print(f"alstm-pipeline: run {run.run_id[:8]}: {text}", flush=True)
            self.instance.report_engine_event(text, run)


def run_stoppably(work: Callable[[], list], instance: dg.DagsterInstance, insist_every: float = 10.0) -> Outcome:
    """Run ``work`` (a ``materialize``) so that SIGTERM stops it as SIGINT does, within seconds.

    Supervisors stop a service with SIGTERM (systemd, docker stop, Kubernetes). Dagster
    handles signals itself only between steps and around user code, so a signal during its
    own bookkeeping (writing thousands of partition events) waited minutes. Here the runs
    execute in a worker thread (Dagster leaves signals alone off the main thread) while the
    main thread takes SIGTERM and SIGINT: it records this process's run as canceling and
    interrupts the worker; Dagster then records the run CANCELED, the resources close (the
    writer lock is released) and an open partition transaction rolls back.
    """
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["results"] = work()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = error

    worker = threading.Thread(target=target, name="alstm-pipeline-runs", daemon=True)
    received: list[str] = []

    def on_signal(signo, _frame) -> None:
        name = signal.Signals(signo).name
        if not received:
            print(f"alstm-pipeline: {name} received: stopping the run (it is recorded as canceled)",
                  file=sys.stderr, flush=True)
            for run in _own_unfinished_runs(instance):
                instance.report_run_canceling(run, message=f"{name} received by alstm-pipeline (pid {process_tags()[PID_TAG]})")
        received.append(name)
        _raise_in(worker)

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    heartbeat = _Heartbeat(instance)
    try:
        worker.start()
        last_push = None
        while worker.is_alive():
            worker.join(0.2)
            if not received:
                try:
                    heartbeat.tick()
                except Exception as error:  # noqa: BLE001 - a progress line never stops a run
                    print(f"alstm-pipeline: (progress report failed: {error})", file=sys.stderr)
            # Library code may swallow one interrupt (a broad except): ask again every few seconds.
            if received and worker.is_alive():
                now = time.monotonic()
                last_push = last_push or now
                if now - last_push >= insist_every:
                    _raise_in(worker)
                    last_push = now
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        # A run interrupted before Dagster could record its end (e.g. while it was created).
        for run in _own_unfinished_runs(instance):
            instance.report_run_canceled(run, f"{received[0]} received by alstm-pipeline: stopped")
        results = outcome.get("results")
        return Outcome(list(results) if isinstance(results, list) else [], received[0])
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return Outcome(list(outcome["results"]))  # type: ignore[arg-type]
