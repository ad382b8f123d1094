"""Materialise a selection of assets through the real Definitions, as the CLI and tests do.

Assets with different partitions (weekdays for data, vintages for models, the days a
vintage may score) cannot share a run, so a selection is executed as consecutive runs,
each over one partitions definition in dependency order: data days, then the vintage,
then the days it scores. Each run is a run of the defined job holding its assets
(``JOBS``), so the UI opens and re-executes it like any run it launched; every run is
recorded in the instance given (the persistent one under the home for the CLI).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import pandas as pd

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
    run_tags = dict(tags or {})
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
    return job_def.execute_in_process(
        instance=instance, tags=run_tags, partition_key=partition_key, raise_on_error=False,
        asset_selection=list(step.keys), run_config=config,
    )


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
