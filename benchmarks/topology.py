"""The production topology on this machine, timed: what the topology test does, with the clock on.

    python benchmarks/topology.py [--keep]

A real Postgres on 127.0.0.1 in a temp dir (durable: fsync on); the home seeded through it
(8 instruments of the bundled sample, features and labels 2016-01..2017-02, one vintage
trained for an epoch, its scores); then a code server, the webserver and the daemon as
separate processes; the daily job launched through GraphQL for 2017-03-01..03, run by the
multiprocess executor into a DuckLake warehouse (catalog in the same Postgres). Prints the
seconds of each phase, the run's status and the rows it wrote. ``--keep`` leaves the servers up until Enter is pressed
(open the printed UI address to look around). The warehouse is chosen in
alstm_pipeline_tests/topology.py (``warehouse_env``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alstm_pipeline.runner import RANGE_END_TAG, RANGE_START_TAG  # noqa: E402
from alstm_pipeline_tests import topology as topo  # noqa: E402
from alstm_pipeline_tests.postgres import running_postgres  # noqa: E402


def main() -> None:
    keep = "--keep" in sys.argv[1:]
    print(f"load average: {os.getloadavg()}", flush=True)
    home = Path(tempfile.mkdtemp(prefix="alstm-topology-"))
    clock = time.perf_counter()
    with running_postgres(durable=True) as pg:
        print(f"postgres up on 127.0.0.1:{pg.port}: {time.perf_counter() - clock:.1f} s", flush=True)
        env = topo.deployment_env(home, pg)
        clock = time.perf_counter()
        seeded = topo.seed(env)
        assert all(result.success for result in seeded), "the seed failed"
        print(f"seed ({len(seeded)} runs through the Postgres instance): {time.perf_counter() - clock:.1f} s", flush=True)
        clock = time.perf_counter()
        with topo.running_topology(home, env) as topology:
            print(f"code server + webserver + daemon ready: {time.perf_counter() - clock:.1f} s "
                  f"(UI http://127.0.0.1:{topology.port})", flush=True)
            multiprocess = env.get("ALSTM_PIPELINE_EXECUTOR") == "multiprocess"  # topology.warehouse_env
            clock = time.perf_counter()
            days = {RANGE_START_TAG: topo.DAILY_DAYS[0], RANGE_END_TAG: topo.DAILY_DAYS[1]}
            for job in ("data_days", "scoring_days"):  # the evening's two runs
                run = topo.wait_for_run(topology, topo.launch(topology, job, days))
                print(f"{job} {topo.DAILY_DAYS[0]}..{topo.DAILY_DAYS[1]} launched via GraphQL → {run['status']}: "
                      f"{time.perf_counter() - clock:.1f} s (executor: {'multiprocess' if multiprocess else 'in-process'})",
                      flush=True)
            if keep:
                input("servers up; press Enter to stop them ")
        rows = topo.topology_warehouse(home, env).query(
            "SELECT (SELECT count(*) FROM raw_ohlcv WHERE date BETWEEN ? AND ?) AS raw, "
            "(SELECT count(*) FROM predictions WHERE date BETWEEN ? AND ?) AS scores", list(topo.DAILY_DAYS) * 2)
        print(f"rows written for the days: raw_ohlcv {int(rows['raw'][0])}, predictions {int(rows['scores'][0])}")
    print(f"home (warehouse, logs): {home}")


if __name__ == "__main__":
    main()
