"""The production topology on one machine, for the topology test and benchmarks/topology.py.

A real Postgres (alstm_pipeline_tests.postgres) holds the Dagster instance
(deploy/dagster.postgres.yaml); a code server (``dagster code-server start``), the webserver
and the daemon run as separate processes against it, each in its own process group on
127.0.0.1, and are stopped at the end with nothing left behind. Runs are launched through
GraphQL, queued by the queued run coordinator and started by the daemon, whose run worker
is a child of the code server.

The home is seeded through the same instance in this process (``seed``): a small universe,
features and labels, one vintage trained for an epoch, its scores. Then the daily job
covers a few more days the way the schedule would, which is what a deployment does every
evening.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alstm_pipeline.warehouse import Warehouse
from alstm_pipeline_tests.conftest import REPO_ROOT, SAMPLE_PATH
from alstm_pipeline_tests.postgres import Postgres
from alstm_pipeline_tests.webserver import free_port, graphql

INSTANCE_YAML = REPO_ROOT / "deploy" / "dagster.postgres.yaml"
LOCATION = "alstm_pipeline"
INSTRUMENTS = ["AAPL", "AMZN", "BA", "C", "CVX", "GE", "IBM", "JPM"]
# Partition bounds of the deployment: short, so the seed and the UI's partition views are small.
START, END = "2016-01-04", "2017-03-31"
SEED_LAST = "2017-02-28"
VINTAGE = "2017-01-01"
# One epoch on 8 names: enough for every stage to run on real data, not a model to judge.
VINTAGE_CONFIG = {"train_start": "2016-04-01", "train_end": "2016-09-30", "valid_start": "2016-10-01",
                  "valid_end": "2016-12-30", "fit_start": "2016-04-01", "fit_end": "2016-09-30",
                  "handler_start": "2016-04-01", "n_epochs": 1, "seed": 7, "batch_size": 200}
DAILY_DAYS = ("2017-03-01", "2017-03-03")


# ---- THE ONE PLACE THAT CHOOSES THE TOPOLOGY'S WAREHOUSE (the two functions below) ----
def warehouse_env(home: Path, pg: Postgres) -> dict[str, str]:
    """Variables given to every process (the seed, the code server and the run workers it
    starts, the webserver, the daemon): the DuckLake warehouse with its catalog in this
    Postgres (data under the home), written by steps in their own processes (the
    multiprocess executor, two at a time)."""
    return {"ALSTM_PIPELINE_WAREHOUSE": f"ducklake:postgres:dbname={pg.database} host={pg.host} port={pg.port} user={pg.user}",
            "PGPASSWORD": pg.password, "ALSTM_PIPELINE_EXECUTOR": "multiprocess", "ALSTM_PIPELINE_MAX_CONCURRENT": "2"}


def topology_warehouse(home: Path, env: dict[str, str]) -> Warehouse:
    """The warehouse the test reads the rows back from: the one ``warehouse_env`` selects."""
    from alstm_pipeline.warehouse.backends import open_warehouse

    # The test process has no PGPASSWORD of its own: the reader names the password itself.
    return open_warehouse(f"{env['ALSTM_PIPELINE_WAREHOUSE']} password={env['PGPASSWORD']}", home)
# ---- end of the warehouse choice ----


def deployment_env(home: Path, pg: Postgres) -> dict[str, str]:
    """The environment of every process of the deployment."""
    home.mkdir(parents=True, exist_ok=True)
    universe = home / "universe.txt"
    universe.write_text("".join(f"{code}\t2000-01-01\t2030-12-31\n" for code in INSTRUMENTS))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ALSTM_PIPELINE_", "DAGSTER_"))},
        "ALSTM_PIPELINE_HOME": str(home), "ALSTM_PIPELINE_SOURCE": str(SAMPLE_PATH),
        "ALSTM_PIPELINE_UNIVERSE": str(universe), "ALSTM_PIPELINE_START": START, "ALSTM_PIPELINE_END": END,
        "ALSTM_PIPELINE_MLFLOW": "0", "DAGSTER_HOME": str(home / "dagster"),
        # The long-running processes batch materialization events (one INSERT per batch) but
        # keep per-partition planned events, so the UI marks a failed run's partitions failed
        # (alstm_pipeline.instance explains the trade).
        "DAGSTER_EVENT_BATCH_SIZE": "1000",
        **pg.env(), **warehouse_env(home, pg),
    }
    (home / "dagster").mkdir(exist_ok=True)
    (home / "dagster" / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    return env


def seed(env: dict[str, str]) -> list:
    """Universe, raw bars, features, labels through SEED_LAST; the vintage; its scores, IC and
    backtest: the runs the CLI would make, recorded in the Postgres instance."""
    import pytest

    from alstm_pipeline.cli import configuration_selection, open_instance
    from alstm_pipeline.definitions import build_definitions
    from alstm_pipeline.runner import materialize
    from alstm_pipeline.settings import load_settings

    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith(("ALSTM_PIPELINE_", "DAGSTER_"))]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        select, config = configuration_selection("*", "alpha158_ts")
        config["ops"]["alstm_model"]["config"].update(VINTAGE_CONFIG)
        config["ops"]["backtest_daily"] = {"config": {"topk": 5, "n_drop": 1}}
        instance = open_instance(load_settings())
        try:
            return materialize(build_definitions(), select, instance, (START, SEED_LAST), VINTAGE,
                               run_config=config, log_level="WARNING")
        finally:
            instance.dispose()


@dataclass
class Topology:
    home: Path
    env: dict[str, str]
    port: int  # the webserver's
    groups: dict[str, int]  # process group of each server

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return graphql(self.port, query, variables)


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _wait(what: str, ready, processes: list[subprocess.Popen], logs: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [p for p in processes if p.poll() is not None]
        if dead:
            tails = "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in sorted(logs.glob("*.log")))
            raise RuntimeError(f"a server exited while waiting for {what}:\n{tails}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout} s")
        time.sleep(0.5)


@contextlib.contextmanager
def running_topology(home: Path, env: dict[str, str], timeout: float = 240.0) -> Iterator[Topology]:
    """Code server, webserver and daemon against the home's instance; stopped on exit."""
    grpc_port, web_port = free_port(), free_port()
    # The webserver and the daemon reach the code location over gRPC, as in a deployment.
    workspace = home / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n      location_name: {LOCATION}\n")
    bin_dir = Path(sys.executable).parent
    commands = {
        "code-server": [sys.executable, "-m", "dagster", "code-server", "start", "-h", "127.0.0.1", "-p", str(grpc_port),
                        "-m", "alstm_pipeline.definitions", "-a", "defs", "--location-name", LOCATION],
        "webserver": [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(web_port), "-w", str(workspace)],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
    }
    processes: dict[str, subprocess.Popen] = {}
    logs = []
    try:
        for name, command in commands.items():
            log = open(home / f"{name}.log", "wb")
            logs.append(log)
            processes[name] = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True)
            if name == "code-server":
                health = [sys.executable, "-m", "dagster", "api", "grpc-health-check", "-p", str(grpc_port), "-h", "127.0.0.1"]
                _wait("the code server", lambda: subprocess.run(health, env=env, capture_output=True).returncode == 0,
                      list(processes.values()), home, timeout)
        topology = Topology(home, env, web_port, {name: p.pid for name, p in processes.items()})

        def answers() -> bool:
            try:
                nodes = topology.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
            except (urllib.error.URLError, ConnectionError, OSError):
                return False
            return any(entry["locationOrLoadError"]["__typename"] == "RepositoryLocation" for entry in nodes)

        _wait("the webserver", answers, list(processes.values()), home, timeout)
        yield topology
    finally:
        for process in reversed(list(processes.values())):
            _stop(process)
        for log in logs:
            log.close()


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries {
    locationOrLoadError { __typename } } } } }"""

REPOSITORY = """{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"""

LAUNCH = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
} }"""

RUN = """query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
    status tags { key value }
    eventConnection(afterCursor: null) { events { __typename ... on MessageEvent { message } } }
} } }"""

PARTITION_STATUSES = """query Statuses($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
    assetPartitionStatuses { __typename ... on TimePartitionStatuses { ranges { status startKey endKey } } }
} } }"""

MATERIALIZED = """query Materialized($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
    assetMaterializations(limit: 50) { partition runId } } } }"""


def job_selector(topology: Topology, job: str) -> dict:
    (repository,) = topology.graphql(REPOSITORY)["repositoriesOrError"]["nodes"]
    return {"repositoryLocationName": repository["location"]["name"], "repositoryName": repository["name"],
            "pipelineName": job}


def launch(topology: Topology, job: str, tags: dict[str, str], run_config: dict | None = None) -> str:
    selector = job_selector(topology, job)
    params = {"selector": selector, "runConfigData": run_config or {},
              "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
    answer = topology.graphql(LAUNCH, {"params": params})["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def wait_for_run(topology: Topology, run_id: str, timeout: float = 600.0) -> dict:
    """The run once finished (the daemon dequeues and launches it; the code server runs it)."""
    deadline = time.monotonic() + timeout
    while True:
        run = topology.graphql(RUN, {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return run
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(topology.home.glob("*.log")))
            raise TimeoutError(f"run {run_id} still {run['status']} after {timeout} s\n{logs}")
        time.sleep(1.0)


def partition_statuses(topology: Topology, asset: str) -> dict[str, list[tuple[str, str]]]:
    """status → [(first key, last key)] as the UI's partition bar shows them."""
    node = topology.graphql(PARTITION_STATUSES, {"key": {"path": [asset]}})["assetNodeOrError"]
    out: dict[str, list[tuple[str, str]]] = {}
    for part in node["assetPartitionStatuses"]["ranges"]:
        out.setdefault(part["status"], []).append((part["startKey"], part["endKey"]))
    return out
