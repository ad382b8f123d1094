"""Ingest benchmark: the whole shared panel into raw_ohlcv as one backfill run, then one
incremental day of raw_ohlcv, and one incremental day of alpha158_features + labels.

    python benchmarks/bench_ingest.py [PANEL]   (default ../shared/data/sp500_daily.parquet)

Goes through the real Dagster assets (universe + raw_ohlcv with its checks) with an
ephemeral instance and a DuckDB file in a temp dir; prints rows/s, seconds and peak RSS.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PANEL = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "sp500_daily.parquet"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    # The partition set starts at the source's first day: set the source before importing.
    os.environ["ALSTM_PIPELINE_SOURCE"] = str(PANEL)
    os.environ["ALSTM_PIPELINE_HOME"] = str(home)
    import dagster as dg

    from alstm_pipeline.definitions import build_definitions
    from alstm_pipeline.defs.partitions import WEEKDAYS
    from alstm_pipeline.runner import materialize
    from alstm_pipeline.sources import open_source
    from alstm_pipeline.warehouse import Warehouse

    calendar = open_source(PANEL).calendar()
    keys = [k for k in WEEKDAYS.get_partition_keys() if str(calendar[0].date()) <= k <= str(calendar[-1].date())]
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions()
    store = Warehouse(home / "warehouse.duckdb")

    began = time.perf_counter()
    result = materialize(defs, "universe, raw_ohlcv", instance, (keys[0], keys[-1]))
    full_seconds = time.perf_counter() - began
    assert all(run.success for run in result)
    rows = int(store.query("SELECT count(*) FROM raw_ohlcv").iloc[0, 0])
    print(f"full backfill: {rows:,} rows, {len(keys):,} weekday partitions, {full_seconds:.1f} s, "
          f"{rows / full_seconds:,.0f} rows/s, peak RSS {peak_rss_mb():,.0f} MB")

    day = keys[-1]
    began = time.perf_counter()
    result = materialize(defs, "raw_ohlcv", instance, (day, day))
    day_seconds = time.perf_counter() - began
    assert all(run.success for run in result)
    print(f"one incremental raw_ohlcv day ({day}): {day_seconds:.2f} s")

    # Features of one day read only their 60-day lookback from DuckDB, whatever the history.
    materialize(defs, "trading_calendar", instance)
    feature_day = keys[-3]  # a day whose two-day label look-ahead exists
    for select in ("alpha158_features", "labels"):
        began = time.perf_counter()
        result = materialize(defs, select, instance, (feature_day, feature_day))
        seconds = time.perf_counter() - began
        assert all(run.success for run in result)
        rows = int(store.query(f"SELECT count(*) FROM {select}").iloc[0, 0])
        print(f"one incremental {select} day ({feature_day}, {rows} instruments) incl. DuckDB I/O and Dagster: {seconds:.2f} s")
    print(f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
