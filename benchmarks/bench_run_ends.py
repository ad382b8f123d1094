"""How fast runs end: SIGTERM stop time, and the time to notice a run killed with kill -9.

    python benchmarks/bench_run_ends.py

On a 12-instrument universe of the bundled sample (data steps over 2014), with a fresh
home in a temp dir, through the real CLI in subprocesses:
1. SIGTERM once the run holds the writer lock: seconds until the process has exited
   (run recorded CANCELED, lock released);
2. kill -9 once the run holds the lock, then ``reap_dead_runs`` as the sensor calls it:
   the seconds it takes to mark the run failed (the sensor runs every 30 s, so a queued
   UI run waits at most that plus this); and the next CLI run's wall time until it has
   marked it failed and finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTRUMENTS = ["AAPL", "AMZN", "BA", "C", "CVX", "GE", "IBM", "JPM", "KO", "MRK", "PG", "XOM"]
RUN = ["run", "--select", "universe,raw_ohlcv,trading_calendar,alpha158_features,labels",
       "--start", "2014-01-02", "--end", "2014-12-31"]


def environment(home: Path) -> dict[str, str]:
    universe = home / "universe.txt"
    universe.write_text("".join(f"{code}\t2000-01-01\t2030-12-31\n" for code in INSTRUMENTS))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ALSTM_PIPELINE_", "DAGSTER_"))}
    env.update({"ALSTM_PIPELINE_HOME": str(home), "ALSTM_PIPELINE_UNIVERSE": str(universe), "ALSTM_PIPELINE_MLFLOW": "0"})
    return env


def start_and_wait_for_lock(home: Path) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen([sys.executable, "-m", "alstm_pipeline.cli", *RUN], env=environment(home),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = home / "writer.lock"
    while not (lock.exists() and lock.read_text()):
        if process.poll() is not None:
            raise SystemExit(f"the run ended before taking the lock:\n{process.stderr.read()[-2000:]}")
        time.sleep(0.05)
    return process, json.loads(lock.read_text())


def main() -> None:
    import dagster as dg

    from alstm_pipeline.dead_runs import reap_dead_runs

    home = Path(tempfile.mkdtemp(prefix="bench_term_"))
    process, holder = start_and_wait_for_lock(home)
    sent = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    process.wait()
    stop = time.perf_counter() - sent
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    status = instance.get_run_by_id(holder["run_id"]).status
    print(f"SIGTERM: exited {stop:.2f} s after the signal (exit {process.returncode}), run {status.value}")

    home = Path(tempfile.mkdtemp(prefix="bench_kill_"))
    process, holder = start_and_wait_for_lock(home)
    process.send_signal(signal.SIGKILL)
    process.wait()
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    began = time.perf_counter()
    marked = reap_dead_runs(instance, home, "bench")
    print(f"kill -9: reap_dead_runs (the sensor's work) marked {len(marked)} run failed in {time.perf_counter() - began:.2f} s; "
          "the sensor runs every 30 s")
    process, holder = start_and_wait_for_lock(home)  # a second killed run, noticed by the next CLI run
    process.send_signal(signal.SIGKILL)
    process.wait()
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "alstm_pipeline.cli", "run", "--select", "universe"], env=environment(home),
                   capture_output=True, check=True)
    status = instance.get_run_by_id(holder["run_id"]).status
    print(f"kill -9: the next CLI run (universe) marked it {status.value} and finished in {time.perf_counter() - began:.1f} s "
          "(Python start and definitions included)")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
