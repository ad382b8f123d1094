"""The Dagster UI loads our definitions: a real webserver on 127.0.0.1, asked over GraphQL."""

from __future__ import annotations

import time

import pytest

from alstm_pipeline_tests.webserver import graphql, process_group_alive, running_webserver

ASSET_GRAPH = """
{ assetNodes {
    assetKey { path }
    isPartitioned
    dependencies { asset { assetKey { path } } partitionMapping { className description } }
    dependedByKeys { path }
} }
"""

AUTOMATION = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    schedules { name scheduleState { status } }
    sensors { name sensorState { status } }
} } } }
"""


@pytest.fixture(scope="module")
def ui_answers(tmp_path_factory):
    """The asset graph and automation state the running UI reports, and whether the
    webserver's process group was gone after shutdown."""
    with running_webserver(tmp_path_factory.mktemp("ui_home")) as (port, pgid):
        nodes = graphql(port, ASSET_GRAPH)["assetNodes"]
        repositories = graphql(port, AUTOMATION)["repositoriesOrError"]["nodes"]
    deadline = time.monotonic() + 10
    while process_group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return {"/".join(n["assetKey"]["path"]): n for n in nodes}, repositories, process_group_alive(pgid)


def _upstream(node) -> dict[str, str | None]:
    return {
        "/".join(d["asset"]["assetKey"]["path"]): (d["partitionMapping"] or {}).get("className")
        for d in node["dependencies"]
    }


def test_webserver_stops_without_orphans(ui_answers):
    _, _, alive = ui_answers
    assert not alive, "a webserver process outlived the test"


def test_ui_shows_the_whole_graph_with_partitioned_lineage(ui_answers):
    nodes, _, _ = ui_answers
    assert set(nodes) == {
        "universe", "raw_ohlcv", "trading_calendar", "alpha158_features", "labels", "feature_normalizer",
        "train_segment", "valid_segment", "test_segment", "alstm_model", "daily_predictions", "ic_report",
        "backtest_report",
    }
    partitioned = {name for name, node in nodes.items() if node["isPartitioned"]}
    assert partitioned == {"raw_ohlcv", "alpha158_features", "labels", "daily_predictions", "ic_report"}
    assert _upstream(nodes["raw_ohlcv"]) == {"universe": None}
    # Lookback and look-ahead are time-window mappings with offsets (which raw days are read).
    assert _upstream(nodes["alpha158_features"])["raw_ohlcv"] == "TimeWindowPartitionMapping"
    assert _upstream(nodes["labels"])["raw_ohlcv"] == "TimeWindowPartitionMapping"
    assert set(_upstream(nodes["alstm_model"])) == {"train_segment", "valid_segment"}


def test_lineage_of_daily_predictions(ui_answers):
    nodes, _, _ = ui_answers
    predictions = nodes["daily_predictions"]
    upstream = _upstream(predictions)
    assert set(upstream) == {"alpha158_features", "feature_normalizer", "alstm_model"}
    assert upstream["alpha158_features"] == "TimeWindowPartitionMapping"
    downstream = {"/".join(key["path"]) for key in predictions["dependedByKeys"]}
    assert downstream == {"ic_report", "backtest_report"}


def test_schedules_and_sensor_run_by_default(ui_answers):
    _, repositories, _ = ui_answers
    (repository,) = repositories
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    assert schedules == {"daily_update_schedule": "RUNNING", "daily_retrain_schedule": "RUNNING"}
    assert sensors == {"follow_raw_backfill": "RUNNING"}
