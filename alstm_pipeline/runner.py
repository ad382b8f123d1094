"""Materialise a selection of assets through the real Definitions, as the CLI and tests do.

Assets with different partitions (weekdays for data, vintages for models) cannot share a
run, so a selection is executed as consecutive runs, each over one partitions definition
in dependency order: data days, then the vintage, then the days it scores. Every run is
recorded in the instance given (the persistent one under the home for the CLI, so the UI
shows it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import pandas as pd

RUN_JOB = "alstm_pipeline_run"
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


def plan_runs(defs: dg.Definitions, selection: dg.AssetSelection) -> list[Step]:
    """Split the selected assets, in dependency order, into runs of one partitions kind;
    an unpartitioned asset joins the run that reaches it."""
    graph = defs.resolve_asset_graph()
    keys = selection.resolve(graph)
    if not keys:
        raise ValueError("the selection matches no asset")
    ordered = [key for level in graph.toposorted_asset_keys_by_level for key in level if key in keys]
    steps: list[list] = []
    for key in ordered:
        partitions = graph.get(key).partitions_def
        kind = None if partitions is None else ("vintages" if isinstance(partitions, dg.DynamicPartitionsDefinition) else "weekdays")
        if steps and (kind is None or steps[-1][1] in (None, kind)):
            steps[-1][0].append(key)
            steps[-1][1] = steps[-1][1] or kind
        else:
            steps.append([[key], kind])
    return [Step(tuple(step_keys), kind) for step_keys, kind in steps]


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
    job = dg.define_asset_job(RUN_JOB, selection=list(step.keys))
    job_def = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(RUN_JOB)
    run_tags = dict(tags or {})
    partition_key = None
    if step.partitioned_by == "weekdays":
        if weekday_range is None:
            raise ValueError("the selection holds weekday-partitioned assets: give a partition range")
        run_tags.update({RANGE_START_TAG: weekday_range[0], RANGE_END_TAG: weekday_range[1]})
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
    for step in plan_runs(defs, parse_selection(select)):
        if on_step is not None:
            on_step(step)
        days = weekday_range
        if after_vintage and vintage is not None and days is not None and days[0] < vintage:
            # The days after a vintage's run are the days it scores: none before its first day.
            first = pd.offsets.BDay().rollforward(pd.Timestamp(vintage)).strftime("%Y-%m-%d")  # weekday keys only
            days = (first, days[1]) if first <= days[1] else days
        result = execute_step(defs, step, instance, days, vintage, run_config, log_level, tags)
        after_vintage = after_vintage or step.partitioned_by == "vintages"
        results.append(result)
        if not result.success:
            break
    return results


def failure_messages(results: Sequence[dg.ExecuteInProcessResult]) -> list[str]:
    """The error message of each failed step (the Failure's description, no traceback)."""
    messages = []
    for result in results:
        for event in result.all_events:
            if event.event_type_value == "STEP_FAILURE":
                error = event.event_specific_data.error
                text = error.message.strip() if error else "failed"
                if error is not None and error.cls_name == "Failure":
                    text = text.split(": ", 1)[-1]  # the description is the message; the class adds nothing
                messages.append(f"{event.step_key}: {text}")
    return messages
