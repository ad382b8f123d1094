"""Readers while the pipeline writes: a polling reader's success rate during a real run.

    python benchmarks/bench_readers.py [--select SEL] [--start D] [--end D] [--instruments N] [--interval S]

Runs ``alstm-pipeline run`` (default: the data steps universe → labels over all the
bundled sample's days; ``--select '*'`` for the main job) in a subprocess with a fresh
home in a temp dir, while this process polls the warehouse as a notebook would: every
``--interval`` seconds (default 1) connect read-only, run one query, close. Prints the
queries tried, the share that succeeded, the errors, and the run's wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
DATA_STEPS = "universe,raw_ohlcv,trading_calendar,alpha158_features,labels"


def poll(path: Path, interval: float, stop: threading.Event, tally: Counter, errors: Counter) -> None:
    """One read-only connect + one query + close per interval, from the moment the file exists."""
    while not stop.is_set():
        began = time.monotonic()
        if path.exists():
            try:
                con = duckdb.connect(str(path), read_only=True)
                try:
                    con.execute("SELECT count(*) FROM information_schema.tables").fetchone()
                finally:
                    con.close()
                tally["ok"] += 1
            except duckdb.Error as error:
                tally["error"] += 1
                errors[str(error).split("\n")[0][:100]] += 1
        stop.wait(max(0.0, interval - (time.monotonic() - began)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--select", default=DATA_STEPS)
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--instruments", type=int, default=0, help="first N instruments of the sample (0: all 100)")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench_readers_"))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ALSTM_PIPELINE_", "DAGSTER_"))}
    env.update({"ALSTM_PIPELINE_HOME": str(home), "ALSTM_PIPELINE_MLFLOW": "0"})
    if args.instruments:
        import pandas as pd

        names = sorted(pd.read_parquet(REPO / "data" / "sp500_sample.parquet", columns=["instrument"])["instrument"].unique())
        universe = home / "universe.txt"
        universe.write_text("".join(f"{code}\t2000-01-01\t2030-12-31\n" for code in names[: args.instruments]))
        env["ALSTM_PIPELINE_UNIVERSE"] = str(universe)
    command = [sys.executable, "-m", "alstm_pipeline.cli", "run", "--select", args.select]
    command += ["--start", args.start] if args.start else []
    command += ["--end", args.end] if args.end else []

    tally, errors, stop = Counter(), Counter(), threading.Event()
    reader = threading.Thread(target=poll, args=(home / "warehouse.duckdb", args.interval, stop, tally, errors), daemon=True)
    reader.start()
    began = time.perf_counter()
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    stop.set()
    reader.join()
    tried = tally["ok"] + tally["error"]
    print(f"run: {args.select!r} {'ok' if run.returncode == 0 else f'FAILED (exit {run.returncode})'} in {wall:.0f} s")
    if run.returncode != 0:
        print(run.stderr[-2000:])
    print(f"reader: {tried} queries at {args.interval:g} s intervals, {tally['ok']} ok, {tally['error']} errors: "
          f"success rate {100.0 * tally['ok'] / max(tried, 1):.1f} %")
    for message, count in errors.most_common(5):
        print(f"  {count} × {message}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
