"""What the Dagster instance costs the main job's data run: ephemeral / SQLite / Postgres side by side.

    python benchmarks/bench_instance.py [CASE ...]
    CASE: ephemeral, sqlite, sqlite-tuned, postgres, postgres-tuned (default: all, in that order)

The data run is ``+raw_ohlcv,+alpha158_features,+labels`` over every weekday of the
bundled sample (one single-run backfill; ~3,600 partitions x 3 assets), the same computation
and the same warehouse rows every time; only the instance differs. Each case is a fresh
process on a fresh home: ``ephemeral`` is Dagster's in-memory instance (the reference);
``sqlite`` / ``postgres`` are the persistent instance the CLI opens (alstm_pipeline.instance)
with the bookkeeping flags off; ``-tuned`` with the flags the CLI sets for that storage.
Postgres is a real server on 127.0.0.1 in a temp dir (durable settings: fsync on), started
per case. Prints wall seconds, the run process's CPU seconds and peak RSS, the Postgres
server's CPU seconds, and the instance's size.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SELECT = "+raw_ohlcv,+alpha158_features,+labels"
CASES = ("ephemeral", "sqlite", "sqlite-tuned", "postgres", "postgres-tuned")
FLAGS = ("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "DAGSTER_EVENT_BATCH_SIZE")


def worker(case: str) -> None:
    """The data run in this process, on the instance of ``case`` (home from the environment)."""
    import dagster as dg

    from alstm_pipeline.cli import open_instance
    from alstm_pipeline.definitions import build_definitions
    from alstm_pipeline.defs.partitions import WEEKDAYS
    from alstm_pipeline.runner import materialize
    from alstm_pipeline.settings import load_settings

    if not case.endswith("-tuned"):
        for name in FLAGS:  # explicit "off": the CLI only sets flags the environment leaves unset
            os.environ[name] = "0"
    instance = dg.DagsterInstance.ephemeral() if case == "ephemeral" else open_instance(load_settings())
    keys = WEEKDAYS.get_partition_keys()
    flags = {name: os.environ.get(name, "unset") for name in FLAGS}
    began = time.perf_counter()
    results = materialize(build_definitions(), SELECT, instance, (keys[0], keys[-1]), None, log_level="WARNING")
    seconds = time.perf_counter() - began
    assert results and all(result.success for result in results), "the data run failed"
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"RESULT {usage.ru_utime + usage.ru_stime:.1f} {usage.ru_maxrss / 1024:.0f} "
          f"partitions={len(keys)} run_seconds={seconds:.1f} flags={flags}", flush=True)


def _server_cpu(data_dir: Path) -> float:
    """CPU seconds of the Postgres server: the postmaster, its live children and the exited
    ones it reaped (one backend per connection: dagster-postgres does not pool)."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])

    def stat(pid: int) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    fields = stat(postmaster)
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                child = stat(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(child[1]) == postmaster:
                total += int(child[11]) + int(child[12])
    return total / tick


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_case(case: str) -> dict:
    import contextlib

    from alstm_pipeline_tests.postgres import running_postgres

    home = Path(tempfile.mkdtemp(prefix=f"bench-instance-{case}-"))
    env = {**os.environ, "ALSTM_PIPELINE_HOME": str(home), "ALSTM_PIPELINE_MLFLOW": "0"}
    for name in ("DAGSTER_HOME", *FLAGS):
        env.pop(name, None)
    server = running_postgres(durable=True) if case.startswith("postgres") else contextlib.nullcontext()
    with server as pg:
        if pg is not None:
            env.update(pg.env())
            data_dir = pg.data_dir
            cpu_before = _server_cpu(data_dir)
        began = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--worker", case], cwd=REPO, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - began
        if done.returncode != 0:
            raise SystemExit(f"{case} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        result = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
        _, cpu, peak, detail = result.split(" ", 3)
        row = {"case": case, "wall": wall, "cpu": float(cpu), "peak_mb": float(peak), "result": detail}
        if pg is not None:
            row["server_cpu"] = _server_cpu(data_dir) - cpu_before
            import sqlalchemy as sa

            with sa.create_engine(pg.url).connect() as connection:
                row["instance_mb"] = connection.execute(sa.text("select pg_database_size(current_database())")).scalar() / 1e6
        elif case != "ephemeral":
            row["instance_mb"] = _size(home / "dagster") / 1e6
    shutil.rmtree(home, ignore_errors=True)
    return row


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
        return
    cases = sys.argv[1:] or list(CASES)
    print(f"load average before: {os.getloadavg()}", flush=True)
    print("| case | wall s | run CPU s | Postgres server CPU s | peak RSS MB | instance MB |", flush=True)
    print("|---|---|---|---|---|---|", flush=True)
    for case in cases:
        row = run_case(case)
        server = f"{row['server_cpu']:.1f}" if "server_cpu" in row else "–"
        size = f"{row['instance_mb']:.0f}" if "instance_mb" in row else "–"
        print(f"| {case} | {row['wall']:.1f} | {row['cpu']:.1f} | {server} | {row['peak_mb']:.0f} | {size} |"
              f"  <!-- {row['result']}, load {os.getloadavg()[0]:.1f} -->", flush=True)


if __name__ == "__main__":
    main()
