"""Feature assets on the bundled sample: the whole history of alpha158_features and of
alpha360_features as single-run backfills (what each adds to `alstm-pipeline run`), then
one incremental day of each, best of 3.

    python benchmarks/bench_feature_assets.py

Real Dagster assets, ephemeral instance, DuckDB file in a temp dir; prints seconds, the
warehouse size after each step and the peak RSS.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alstm_pipeline.defs.partitions import WEEKDAYS  # noqa: E402  (after the path)
from alstm_pipeline_tests.conftest import SAMPLE_PATH  # noqa: E402
from alstm_pipeline_tests.pipeline import TestPipeline  # noqa: E402

DAY = "2021-04-01"


def main() -> None:
    pipeline = TestPipeline(Path(tempfile.mkdtemp(prefix="bench_features_")), SAMPLE_PATH)
    keys = WEEKDAYS.get_partition_keys()

    def timed(select: str, first: str, last: str) -> float:
        began = time.perf_counter()
        pipeline.run(select, first, last)
        seconds = time.perf_counter() - began
        size = pipeline.warehouse.path.stat().st_size / 1e6
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{select} {first}..{last}: {seconds:.1f} s, warehouse {size:.0f} MB, peak RSS {rss:.0f} MB", flush=True)
        return seconds

    timed("universe,raw_ohlcv,trading_calendar", keys[0], keys[-1])
    for table in ("alpha158_features", "alpha360_features"):
        timed(table, keys[0], keys[-1])
    for table in ("alpha158_features", "alpha360_features"):
        best = min(timed(table, DAY, DAY) for _ in range(3))
        print(f"one incremental {table} day: best {best:.2f} s")


if __name__ == "__main__":
    main()
