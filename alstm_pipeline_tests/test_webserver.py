"""The Dagster UI loads our definitions: a real webserver on 127.0.0.1, asked over GraphQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from alstm_pipeline_tests.conftest import REPO_ROOT, SAMPLE_PATH

from alstm_pipeline_tests.webserver import graphql, process_group_alive, running_webserver

ASSET_GRAPH = """
{ assetNodes {
    assetKey { path }
    isPartitioned
    dependencies { asset { assetKey { path } } partitionMapping { className description } }
    dependedByKeys { path }
} }
"""

MATERIALIZED = """
{ assetOrError(assetKey: {path: ["raw_ohlcv"]}) { ... on Asset {
    assetMaterializations(limit: 10) { partition runId }
} } }
"""

AUTOMATION = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    jobs { name }
    schedules { name scheduleState { status } }
    sensors { name sensorState { status } }
} } } }
"""

RUNS = """
{ runsOrError { ... on Runs { results { runId pipelineName assetSelection { path } tags { key value } } } } }
"""

SCORING_PARTITIONS = """
{ assetNodeOrError(assetKey: {path: ["predictions"]}) { ... on AssetNode { partitionKeys } } }
"""


@pytest.fixture(scope="module")
def ui_answers(tmp_path_factory):
    """The asset graph, automation state, runs and raw_ohlcv materializations the UI opened
    by `alstm-pipeline ui` (from outside the repository) reports after `alstm-pipeline run`
    wrote into the same home, and whether its process group was gone after shutdown."""
    home = tmp_path_factory.mktemp("ui_home")
    env = {**os.environ, "ALSTM_PIPELINE_HOME": str(home), "ALSTM_PIPELINE_SOURCE": str(SAMPLE_PATH)}
    env.pop("DAGSTER_HOME", None)
    env.pop("ALSTM_PIPELINE_SCORING_START", None)  # the default a user gets (the tests' conftest sets it)
    cli = subprocess.run([sys.executable, "-m", "alstm_pipeline.cli", "run", "--select", "+raw_ohlcv",
                          "--start", "2016-06-27", "--end", "2016-06-28"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    with running_webserver(home, environ=env, via_cli=True) as (port, pgid):
        nodes = graphql(port, ASSET_GRAPH)["assetNodes"]
        repositories = graphql(port, AUTOMATION)["repositoriesOrError"]["nodes"]
        materialized = graphql(port, MATERIALIZED)["assetOrError"]["assetMaterializations"]
        runs = graphql(port, RUNS)["runsOrError"]["results"]
        scoring_keys = graphql(port, SCORING_PARTITIONS)["assetNodeOrError"]["partitionKeys"]
    deadline = time.monotonic() + 10
    while process_group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return {"/".join(n["assetKey"]["path"]): n for n in nodes}, repositories, process_group_alive(pgid), materialized, {
        "runs": runs, "scoring_keys": scoring_keys, "ui_output": (home / "webserver.log").read_text()}


def _upstream(node) -> dict[str, str | None]:
    return {
        "/".join(d["asset"]["assetKey"]["path"]): (d["partitionMapping"] or {}).get("className")
        for d in node["dependencies"]
    }


def test_webserver_stops_without_orphans(ui_answers):
    _, _, alive, *_ = ui_answers
    assert not alive, "a webserver process outlived the test"


def test_ui_shows_the_whole_graph_with_partitioned_lineage(ui_answers):
    nodes, *_ = ui_answers
    assert set(nodes) == {
        "universe", "raw_ohlcv", "trading_calendar", "alpha158_features", "alpha360_features", "labels", "alstm_model",
        "predictions", "ic_daily", "backtest_daily",
    }
    partitioned = {name for name, node in nodes.items() if node["isPartitioned"]}
    assert partitioned == {"raw_ohlcv", "alpha158_features", "alpha360_features", "labels", "alstm_model", "predictions", "ic_daily"}
    assert _upstream(nodes["raw_ohlcv"]) == {"universe": None}
    # Lookback and look-ahead are time-window mappings with offsets (which raw days are read).
    assert _upstream(nodes["alpha158_features"])["raw_ohlcv"] == "TimeWindowPartitionMapping"
    assert _upstream(nodes["alpha360_features"])["raw_ohlcv"] == "TimeWindowPartitionMapping"
    assert _upstream(nodes["labels"])["raw_ohlcv"] == "TimeWindowPartitionMapping"


def test_lineage_of_predictions(ui_answers):
    nodes, *_ = ui_answers
    upstream = _upstream(nodes["predictions"])
    # Either feature table can feed the scores (PredictionsConfig.feature_set).
    assert set(upstream) == {"alpha158_features", "alpha360_features", "alstm_model"}
    assert upstream["alpha158_features"] == upstream["alpha360_features"] == "TimeWindowPartitionMapping"
    downstream = {"/".join(key["path"]) for key in nodes["predictions"]["dependedByKeys"]}
    assert downstream == {"ic_daily", "backtest_daily"}


def test_ui_shows_what_the_cli_ran(ui_answers):
    partitions = sorted(event["partition"] for event in ui_answers[3])
    assert partitions == ["2016-06-27", "2016-06-28"]


def test_schedules_and_sensor_run_by_default(ui_answers):
    _, repositories, *_ = ui_answers
    (repository,) = repositories
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    assert schedules == {"daily_update": "RUNNING", "daily_retrain": "RUNNING"}
    assert sensors == {"follow_raw_backfill": "RUNNING", "score_new_days": "RUNNING", "reap_dead_runs": "RUNNING"}


def test_every_cli_run_is_a_run_of_a_defined_job(ui_answers):
    """The UI links a run to its job and re-executes it only when the code location
    defines that job: the CLI's runs use the defined ones, not an ad-hoc job."""
    _, repositories, _, _, extra = ui_answers
    (repository,) = repositories
    jobs = {job["name"] for job in repository["jobs"]}
    assert {"data_days", "train_vintage", "scoring_days"} <= jobs
    runs = extra["runs"]
    assert runs and {run["pipelineName"] for run in runs} <= jobs
    # The daemon may already have launched follow_raw_backfill's run (the CLI ingested raw
    # days without their features): the CLI's run is the one no sensor or schedule launched.
    (run,) = [run for run in runs if not {tag["key"] for tag in run["tags"]} & {"dagster/sensor_name", "dagster/schedule_name"}]
    assert run["pipelineName"] == "data_days"
    assert {"/".join(key["path"]) for key in run["assetSelection"]} == {"universe", "raw_ohlcv"}


def test_scoring_partitions_start_where_a_vintage_may_serve(ui_answers):
    """predictions / ic_daily have no partition before the fixed split's first test day,
    so no day that no vintage may score shows as missing; their lookback into the
    features still reaches the days before it."""
    nodes, *_, extra = ui_answers
    keys = extra["scoring_keys"]
    assert keys[0] == "2017-01-02" and keys[-1] == "2021-04-21"
    assert _upstream(nodes["predictions"])["alpha158_features"] == "TimeWindowPartitionMapping"


def test_the_ui_command_opens_this_homes_instance(ui_answers):
    """`alstm-pipeline ui` uses the home's instance (no temporary instance that would be
    removed on exit) and binds to 127.0.0.1 only."""
    *_, extra = ui_answers
    output = extra["ui_output"]
    assert "temporary directory" not in output, output
    assert "http://127.0.0.1:" in output
    # Nothing that tells the user to start it differently, nor a second name for the project.
    assert "superseded" not in output and "does not match the name" not in output, output
