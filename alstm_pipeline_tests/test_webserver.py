"""The Dagster UI loads our definitions: a real webserver on 127.0.0.1, asked over GraphQL."""

from __future__ import annotations

import time

from alstm_pipeline_tests.webserver import graphql, process_group_alive, running_webserver

ASSET_GRAPH = """
{ assetNodes { assetKey { path } dependencyKeys { path } isPartitioned } }
"""


def test_webserver_serves_asset_graph_on_loopback_and_stops_cleanly(tmp_path):
    with running_webserver(tmp_path) as (port, pgid):
        nodes = graphql(port, ASSET_GRAPH)["assetNodes"]
    graph = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    partitioned = {"/".join(n["assetKey"]["path"]) for n in nodes if n["isPartitioned"]}
    assert {"universe", "raw_ohlcv", "trading_calendar", "alpha158_features", "labels"} <= set(graph)
    assert graph["raw_ohlcv"] == {"universe"}
    assert "raw_ohlcv" in graph["alpha158_features"] and "raw_ohlcv" in graph["labels"]
    assert {"raw_ohlcv", "alpha158_features", "labels"} <= partitioned
    deadline = time.monotonic() + 10
    while process_group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_group_alive(pgid), "a webserver process outlived the test"
