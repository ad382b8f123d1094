"""The production topology, for real on one machine: Postgres in a temp dir, then a code
server, the webserver and the daemon as separate processes against it. The daily job is
launched for three days through GraphQL, queued, started by the daemon and run by a worker
of the code server; then the rows, the run and the UI's view of it are checked. A CLI run
that fails on the same instance must show its partitions as failed in the UI.

The warehouse comes from ``topology.warehouse_env`` (the one place to switch it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from alstm_pipeline.runner import RANGE_END_TAG, RANGE_START_TAG
from alstm_pipeline_tests import topology as topo
from alstm_pipeline_tests.conftest import REPO_ROOT
from alstm_pipeline_tests.postgres import postgres  # noqa: F401  (the fixture)
from alstm_pipeline_tests.webserver import process_group_alive

FAILING_DAYS = ("2017-03-06", "2017-03-10")


@pytest.fixture(scope="module")
def deployment(postgres, tmp_path_factory):  # noqa: F811
    home = tmp_path_factory.mktemp("topology_home")
    env = topo.deployment_env(home, postgres)
    seeded = topo.seed(env)
    with topo.running_topology(home, env) as topology:
        multiprocess = env.get("ALSTM_PIPELINE_EXECUTOR") == "multiprocess"  # topology.warehouse_env
        # The evening's two runs, as the daily_update schedule and the score_new_days sensor
        # launch them: the data days, then their scores.
        run_id = topo.launch(topology, "data_days", {RANGE_START_TAG: DAILY[0], RANGE_END_TAG: DAILY[1]})
        run = topo.wait_for_run(topology, run_id)
        scoring = topo.wait_for_run(topology, topo.launch(topology, "scoring_days",
                                                          {RANGE_START_TAG: DAILY[0], RANGE_END_TAG: DAILY[1]}))
        # A CLI run on the same instance whose source is gone: it fails, with the partition-
        # subset flag on (the CLI's default), and the UI must still mark its days failed.
        cli = subprocess.run(
            [sys.executable, "-m", "alstm_pipeline.cli", "run", "--select", "raw_ohlcv",
             "--start", FAILING_DAYS[0], "--end", FAILING_DAYS[1]],
            cwd=REPO_ROOT, env={**env, "ALSTM_PIPELINE_SOURCE": str(home / "gone.parquet")},
            capture_output=True, text=True, timeout=300)
        answers = SimpleNamespace(
            seeded=seeded, run_id=run_id, run=run, scoring=scoring, multiprocess=multiprocess, cli=cli, groups=topology.groups,
            raw_statuses=topo.partition_statuses(topology, "raw_ohlcv"),
            raw_materialized=topology.graphql(topo.MATERIALIZED, {"key": {"path": ["raw_ohlcv"]}})["assetOrError"]
            ["assetMaterializations"],
            instance_yaml=(home / "dagster" / "dagster.yaml").read_text(),
        )
    deadline = time.monotonic() + 10
    while any(process_group_alive(g) for g in answers.groups.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    answers.alive = [name for name, group in answers.groups.items() if process_group_alive(group)]
    warehouse = topo.topology_warehouse(home, env)
    answers.raw = warehouse.query("SELECT date, count(*) AS n FROM raw_ohlcv WHERE date BETWEEN ? AND ? GROUP BY date ORDER BY date",
                                  list(DAILY))
    answers.scores = warehouse.query("SELECT date, count(*) AS n, min(model_version) AS version FROM predictions "
                                     "WHERE date BETWEEN ? AND ? GROUP BY date ORDER BY date", list(DAILY))
    answers.ic_days = warehouse.query("SELECT date FROM ic_daily WHERE date BETWEEN ? AND ? ORDER BY date", list(DAILY))
    answers.vintage = warehouse.query("SELECT version FROM model_registry WHERE vintage = ?", [topo.VINTAGE])
    return answers


DAILY = topo.DAILY_DAYS


def test_the_seed_ran_through_the_postgres_instance(deployment):
    assert deployment.seeded and all(result.success for result in deployment.seeded)
    assert "postgres:" in deployment.instance_yaml and "QueuedRunCoordinator" in deployment.instance_yaml


def test_daily_run_was_queued_then_started_by_the_daemon_and_succeeded(deployment):
    run = deployment.run
    assert run["status"] == "SUCCESS", [e.get("message") for e in run["eventConnection"]["events"]][-20:]
    assert deployment.scoring["status"] == "SUCCESS", [e.get("message") for e in deployment.scoring["eventConnection"]["events"]][-20:]
    kinds = [event["__typename"] for event in run["eventConnection"]["events"]]
    # Enqueued by the webserver's launch; only the daemon's run queue moves a queued run on
    # to STARTING (the launcher hands it to a worker of the code server), then it starts.
    assert {"RunEnqueuedEvent", "RunStartingEvent", "RunStartEvent"} <= set(kinds), kinds
    assert kinds.index("RunEnqueuedEvent") < kinds.index("RunStartingEvent") < kinds.index("RunStartEvent")
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert (tags[RANGE_START_TAG], tags[RANGE_END_TAG]) == DAILY


def test_daily_run_used_the_multiprocess_executor(deployment):
    messages = " ".join(event.get("message") or "" for event in deployment.run["eventConnection"]["events"])
    # ALSTM_PIPELINE_EXECUTOR=multiprocess in every process of the deployment (topology.warehouse_env).
    assert deployment.multiprocess and "multiprocess executor" in messages, messages[:2000]


def test_daily_run_wrote_every_instrument_for_each_day(deployment):
    days = ["2017-03-01", "2017-03-02", "2017-03-03"]
    assert [str(d.date()) for d in deployment.raw["date"]] == days
    assert deployment.raw["n"].tolist() == [len(topo.INSTRUMENTS)] * 3
    assert [str(d.date()) for d in deployment.scores["date"]] == days
    assert deployment.scores["n"].tolist() == [len(topo.INSTRUMENTS)] * 3
    # Scored by the seeded vintage, the only one in force.
    assert set(deployment.scores["version"]) == set(deployment.vintage["version"])
    # The IC of 2017-03-01 needs the bars of 03-03, which the same run ingested.
    assert "2017-03-01" in [str(d.date()) for d in deployment.ic_days["date"]]


def test_ui_shows_the_daily_runs_partitions(deployment):
    by_partition = {event["partition"]: event["runId"] for event in deployment.raw_materialized}
    assert {day: by_partition.get(day) for day in ("2017-03-01", "2017-03-02", "2017-03-03")} == \
        dict.fromkeys(("2017-03-01", "2017-03-02", "2017-03-03"), deployment.run_id)
    materialized = deployment.raw_statuses["MATERIALIZED"]
    assert materialized == [(topo.START, DAILY[1])]


def test_a_failed_cli_run_shows_its_partitions_failed_in_the_ui(deployment):
    assert deployment.cli.returncode == 1, deployment.cli.stdout + deployment.cli.stderr
    assert deployment.raw_statuses.get("FAILED") == [FAILING_DAYS]


def test_servers_stop_without_orphans(deployment):
    assert deployment.alive == []
