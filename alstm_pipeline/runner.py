"""Materialise a selection of assets over a weekday partition range as one run.

Shared by the CLI and the tests, so both go through the real Definitions the UI loads.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

RUN_JOB = "alstm_pipeline_run"


def parse_selection(text: str) -> dg.AssetSelection:
    """Dagster's selection syntax, either form: the UI's (``key:raw_ohlcv+``,
    ``group:features or key:labels``) or ``dagster asset materialize``'s comma list
    (``universe,raw_ohlcv``, ``+labels``, ``*``)."""
    from dagster._core.definitions.antlr_asset_selection.antlr_asset_selection import AntlrAssetSelectionParser

    try:
        return AntlrAssetSelectionParser(text).asset_selection
    except Exception:  # noqa: BLE001 - not the UI form: read it as the comma list below
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise ValueError(f"empty asset selection {text!r}") from None
        selection = dg.AssetSelection.from_string(parts[0])
        for part in parts[1:]:
            selection = selection | dg.AssetSelection.from_string(part)
        return selection


def materialize_range(
    defs: dg.Definitions,
    select: str,
    first_key: str | None,
    last_key: str | None,
    instance: dg.DagsterInstance,
    run_config: dict | None = None,
    log_level: str = "INFO",
) -> dg.ExecuteInProcessResult:
    """Run the assets chosen by ``select`` (Dagster selection syntax) once; partitioned
    ones over ``first_key..last_key`` (a single-run backfill), the others once.

    The console shows ``log_level`` and above: INFO is each step's progress (one line per
    asset, one per training epoch) without a DEBUG event for every partition.
    """
    selection = parse_selection(select)
    job = dg.define_asset_job(RUN_JOB, selection=selection)
    job_def = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(RUN_JOB)
    tags: dict[str, str] = {}
    if job_def.partitions_def is not None:
        if first_key is None or last_key is None:
            raise ValueError(f"selection {select!r} holds partitioned assets: give a partition range")
        tags = {ASSET_PARTITION_RANGE_START_TAG: first_key, ASSET_PARTITION_RANGE_END_TAG: last_key}
    # The explicit asset selection is recorded on the run, which lets the raw-backfill
    # sensor see whether this run recomputed features itself.
    keys = list(selection.resolve(defs.resolve_asset_graph()))
    return job_def.execute_in_process(
        instance=instance,
        tags=tags,
        raise_on_error=False,
        asset_selection=keys,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}, **(run_config or {})},
    )
