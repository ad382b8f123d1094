"""Warehouse backends side by side: the DuckDB file and DuckLake (SQLite and Postgres catalogs).

    python benchmarks/bench_warehouse.py

For each backend, in a temp dir (Postgres: a real server on 127.0.0.1, started here):
1. the real assets on the bundled sample: universe + raw_ohlcv + trading_calendar over
   2016 (one run), then alpha158_features + labels over its last 20 weekdays (one run);
2. partition writes: 40 days of raw_ohlcv-shaped rows (500 instruments) written one
   partition at a time by one process, then the same 40 split across two processes
   running at once (DuckLake only: the DuckDB file admits one writer), with the number of
   commits replayed after a conflict;
3. a full read of raw_ohlcv.
Prints seconds; say the machine and its load (uptime) beside the numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WRITER = textwrap.dedent("""
    import sys, numpy as np, pandas as pd
    from pathlib import Path
    from alstm_pipeline.warehouse.backends import open_warehouse
    replays = []
    store = open_warehouse(sys.argv[1], Path(sys.argv[2]), on_wait=replays.append)
    for day in pd.bdate_range(sys.argv[3], periods=int(sys.argv[4])):
        frame = pd.DataFrame({"instrument": [f"S{k:03d}" for k in range(500)], "date": day,
                              **{c: np.random.default_rng(0).random(500, dtype="float32") for c in
                                 ("open", "high", "low", "close", "volume", "factor")}})
        store.replace_date_range("bench_rows", frame, day, day)
    print(sum("replaying" in m for m in replays))
""")


def _writers(spec: str, home: Path, parts: list[tuple[str, int]]) -> tuple[float, int]:
    began = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, spec, str(home), first, str(days)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True) for first, days in parts]
    outs = [proc.communicate()[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    return time.perf_counter() - began, sum(int(out.strip() or 0) for out in outs)


def bench(name: str, spec: str, home: Path) -> None:
    from alstm_pipeline.warehouse.backends import open_warehouse
    from alstm_pipeline_tests.conftest import SAMPLE_PATH
    from alstm_pipeline_tests.pipeline import TestPipeline

    store = open_warehouse(spec, home)
    pipeline = TestPipeline(home, SAMPLE_PATH, warehouse=store)
    began = time.perf_counter()
    pipeline.run("universe,raw_ohlcv,trading_calendar", "2016-01-01", "2016-12-30")
    raw = time.perf_counter() - began
    began = time.perf_counter()
    pipeline.run("alpha158_features,labels", "2016-12-05", "2016-12-30")
    features = time.perf_counter() - began
    one, _ = _writers(spec, home, [("2020-01-01", 40)])
    if spec:
        two, replays = _writers(spec, home, [("2021-01-01", 20), ("2022-01-03", 20)])
        side_by_side = f"{two:6.1f} s ({replays} replays)"
    else:
        side_by_side = "   one writer at a time"
    began = time.perf_counter()
    rows = len(store.read_dates("raw_ohlcv", None, None))
    read = time.perf_counter() - began
    print(f"| {name:<18} | {raw:6.1f} | {features:6.1f} | {one:6.1f} | {side_by_side} | {read:5.2f} ({rows:,} rows) |",
          flush=True)


def main() -> None:
    from alstm_pipeline_tests.backends import postgres_catalog
    from alstm_pipeline_tests.postgres import running_postgres

    os.environ["ALSTM_PIPELINE_MLFLOW"] = "0"
    print(f"load: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    print("| warehouse | raw 2016 (s) | features 20 days (s) | 40 partitions, 1 writer (s) | 40 partitions, 2 writers | full read of raw_ohlcv (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="bench_warehouse_") as folder:
        root = Path(folder)
        bench("DuckDB file", "", root / "duckdb")
        bench("DuckLake, SQLite", f"ducklake:sqlite:{root / 'sqlite' / 'catalog.sqlite'}", root / "sqlite")
        with running_postgres() as server:
            bench("DuckLake, Postgres", f"ducklake:{postgres_catalog(server)}", root / "postgres")


if __name__ == "__main__":
    main()
