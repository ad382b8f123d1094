"""``alstm-pipeline``: the headless entry point.

``alstm-pipeline run [--select SELECTION] [--start DATE] [--end DATE]`` materialises the
selected assets (Dagster selection syntax, default everything) over a weekday partition
range (default: all the source's data) as one run per the single-run backfill policy, and
exits non-zero when any step fails. With DAGSTER_HOME set the run is recorded in that
instance (and shows in ``dagster dev`` started with the same DAGSTER_HOME); otherwise an
ephemeral instance is used, which is also the faster one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import pandas as pd


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alstm-pipeline", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialise assets over a partition range in one run")
    run.add_argument("--select", default="*", help='Dagster asset selection, e.g. "raw_ohlcv" or "+labels" (default: everything)')
    run.add_argument("--start", help="first day of the partition range (default: the source's first day)")
    run.add_argument("--end", help="last day of the partition range (default: the source's last day)")
    return parser.parse_args(argv)


def partition_range(keys: list[str], start: str | None, end: str | None, source_first: str, source_last: str) -> tuple[str, str]:
    """First and last weekday partition key inside [start, end] (defaults: the source's dates)."""
    lo = pd.Timestamp(start or source_first).strftime("%Y-%m-%d")
    hi = pd.Timestamp(end or source_last).strftime("%Y-%m-%d")
    inside = [key for key in keys if lo <= key <= hi]
    if not inside:
        raise SystemExit(
            f"alstm-pipeline: no weekday partition between {lo} and {hi} "
            f"(partitions run {keys[0]}..{keys[-1]})"
        )
    return inside[0], inside[-1]


def run(select: str, start: str | None, end: str | None) -> int:
    import dagster as dg

    from alstm_pipeline.definitions import defs
    from alstm_pipeline.defs.partitions import WEEKDAYS
    from alstm_pipeline.report import print_summary
    from alstm_pipeline.runner import materialize_range
    from alstm_pipeline.settings import load_settings
    from alstm_pipeline.sources import open_source

    settings = load_settings()
    calendar = open_source(settings.source).calendar()
    first, last = partition_range(
        WEEKDAYS.get_partition_keys(), start, end, str(calendar[0].date()), str(calendar[-1].date())
    )
    print(f"alstm-pipeline: {select!r} over partitions {first}..{last} of {settings.source}", flush=True)
    print(f"alstm-pipeline: warehouse {settings.warehouse_path}", flush=True)

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    began = time.perf_counter()
    result = materialize_range(defs, select, first, last, instance)
    seconds = time.perf_counter() - began
    if not result.success:
        failed = [event.step_key for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
        print(f"alstm-pipeline: FAILED after {seconds:.1f} s in {', '.join(failed) or 'the run'}", file=sys.stderr)
        return 1
    print(f"alstm-pipeline: done in {seconds:.1f} s", flush=True)
    print_summary(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.command == "run":
        return run(args.select, args.start, args.end)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
