"""Rolling vintages trained in parallel processes, then registered in order, equal the
sequential rolling evaluation: same gate decisions, same weights, same scores.

12 instruments of the bundled sample, raw 2014-06..2016-03, three rolling vintages
(step 20 from 2015-10-01; train 120, valid 40 trading days), 2 epochs, the default gate.
The sequential run trains each vintage inside its alstm_model run with one torch thread;
the parallel run trains all three in two worker processes with one thread each, then
registers them through alstm_model with ``candidates``. (torch's CPU kernels split their
reductions by thread, so weights are compared at the same thread count per vintage.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from alstm_pipeline import cli, vintages
from alstm_pipeline.settings import Settings
from alstm_pipeline.warehouse import registry, tables
from alstm_pipeline_tests.conftest import SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

INSTRUMENTS = ["AAPL", "AMZN", "BA", "C", "CVX", "GE", "IBM", "JPM", "KO", "MRK", "PG", "XOM"]
FIRST, LAST = "2014-06-02", "2016-03-31"
TEST_START, TEST_END = "2015-10-01", "2015-12-24"
ROLLING = {"mode": "rolling", "train_days": 120, "valid_days": 40, "trunc_days": 3, "n_epochs": 2, "seed": 7, "batch_size": 200}
REGISTRY_COLUMNS = ["vintage", "status", "gate_reason", "sha256", "valid_loss", "valid_ic", "trained_through", "best_epoch"]


def _model_run(config: dict) -> dict:
    return {"ops": {"alstm_model": {"config": config}}}


def _settings(pipeline: TestPipeline) -> Settings:
    return Settings(source=SAMPLE_PATH, home=pipeline.home, universe=None, start=None, end=None, live=False)


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """Two homes holding the same data (the second a copy of the first's warehouse), no vintage yet."""
    sequential_home = tmp_path_factory.mktemp("sequential")
    universe = sequential_home / "universe.txt"
    universe.write_text("".join(f"{code}\t2000-01-01\t2030-12-31\n" for code in INSTRUMENTS))
    sequential = TestPipeline(sequential_home, SAMPLE_PATH, universe)
    sequential.run("universe,raw_ohlcv,trading_calendar,alpha158_features,labels", FIRST, LAST)
    copies = []
    for name in ("parallel", "reversed", "dagster_job"):
        home = tmp_path_factory.mktemp(name)
        shutil.copy(sequential.warehouse.path, home / "warehouse.duckdb")
        copies.append(TestPipeline(home, SAMPLE_PATH, universe))
    return sequential, *copies


@pytest.fixture(scope="module")
def keys(homes):
    calendar = tables.read_calendar(homes[0].warehouse)
    found = vintages.rolling_keys(calendar, TEST_START, TEST_END, step=20)
    assert len(found) == 3
    return found


@pytest.fixture(scope="module")
def sequential_run(homes, keys):
    """The CLI's sequential path: each vintage trained inside its alstm_model run (one torch thread)."""
    pipeline = homes[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = cli.register_in_order(pipeline.defs, pipeline.instance, keys, ROLLING, _settings(pipeline))
    finally:
        torch.set_num_threads(threads)
    assert len(results) < len(keys)  # the gate rejected one (see below): registered, not a failure of the evaluation
    pipeline.run("predictions", keys[0], TEST_END)
    return pipeline


@pytest.fixture(scope="module")
def candidates(homes, keys):
    """The CLI's parallel path, first half: all vintages trained in two processes, nothing registered."""
    pipeline = homes[1]
    folder = cli.train_candidates(keys, tables.read_calendar(pipeline.warehouse), ROLLING, _settings(pipeline), workers=2, threads=1)
    assert sorted(path.name for path in folder.iterdir() if not path.name.startswith(".")) == keys
    assert registry.read_registry(pipeline.warehouse).empty
    return folder


def test_a_candidate_waits_for_the_earlier_ones_and_must_match_the_run(homes, keys, candidates):
    pipeline = homes[1]
    error = pipeline.run_expecting_failure("alstm_model", run_config=_model_run({**ROLLING, "candidates": str(candidates)}),
                                           vintage=keys[1])
    assert f"register the earlier candidates ['{keys[0]}'] first" in error
    error = pipeline.run_expecting_failure(
        "alstm_model", run_config=_model_run({**ROLLING, "n_epochs": 3, "candidates": str(candidates)}), vintage=keys[0])
    assert "hyper-parameters" in error and "'n_epochs': 2" in error
    error = pipeline.run_expecting_failure(
        "alstm_model", run_config=_model_run({**ROLLING, "warm_start": True, "candidates": str(candidates)}), vintage=keys[0])
    assert "trained from scratch" in error
    assert registry.read_registry(pipeline.warehouse).empty


def test_parallel_training_registered_in_order_equals_the_sequential_run(homes, keys, candidates, sequential_run):
    pipeline = homes[1]
    cli.register_in_order(pipeline.defs, pipeline.instance, keys, {**ROLLING, "candidates": str(candidates)}, _settings(pipeline))
    pipeline.run("predictions", keys[0], TEST_END)

    expected = registry.read_registry(sequential_run.warehouse).sort_values("vintage")
    got = registry.read_registry(pipeline.warehouse).sort_values("vintage")
    pd.testing.assert_frame_equal(got[REGISTRY_COLUMNS].reset_index(drop=True),
                                  expected[REGISTRY_COLUMNS].reset_index(drop=True), check_exact=True)
    # Each gate compared with the same vintage in force as in the sequential run.
    assert got["status"].tolist() == expected["status"].tolist()
    in_force = [json.loads(metrics).get("incumbent") for metrics in got["metrics"]]
    assert in_force[0] is None and all(version is not None for version in in_force[1:])

    def scored(home) -> pd.DataFrame:
        frame = home.warehouse.query(
            "SELECT p.date, p.instrument, p.score, m.vintage FROM predictions p "
            "JOIN model_registry m ON p.model_version = m.version ORDER BY p.date, p.instrument")
        assert len(frame) and frame["score"].notna().all()
        return frame

    pd.testing.assert_frame_equal(scored(pipeline), scored(sequential_run), check_exact=True)


def test_registering_the_same_candidates_out_of_order_changes_the_gate(homes, keys, candidates, sequential_run):
    """Why the order is enforced: the same three candidates, each in a folder of its own (so
    nothing stops it), registered newest first, meet other vintages in force."""
    pipeline = homes[2]
    for key in reversed(keys):
        alone = candidates.parent / f"alone-{key}"
        shutil.copytree(candidates / key, alone / key)
        cli.register_in_order(pipeline.defs, pipeline.instance, [key], {**ROLLING, "candidates": str(alone)}, _settings(pipeline))
    in_order = registry.read_registry(sequential_run.warehouse).sort_values("vintage")
    out_of_order = registry.read_registry(pipeline.warehouse).sort_values("vintage")
    assert out_of_order["sha256"].tolist() == in_order["sha256"].tolist()  # the same models
    assert out_of_order["status"].tolist() != in_order["status"].tolist()  # other decisions


def test_the_dagster_job_trains_the_same_candidates_as_parallel_steps(homes, keys, sequential_run):
    """train_vintage_candidates (one step per vintage), then the in-order registration:
    the sequential run's registry again."""
    pipeline = homes[3]
    config = {**ROLLING, "test_start": TEST_START, "test_end": TEST_END, "step": 20}
    result = pipeline.defs.resolve_job_def("train_vintage_candidates").execute_in_process(
        run_config={"ops": {"plan_vintage_candidates": {"config": config}}}, instance=pipeline.instance)
    assert result.success
    folder = result.output_for_node("vintage_candidates_ready")
    assert sorted(path.name for path in Path(folder).iterdir() if not path.name.startswith(".")) == keys
    assert set(pipeline.instance.get_dynamic_partitions("vintages")) >= set(keys)
    cli.register_in_order(pipeline.defs, pipeline.instance, keys, {**ROLLING, "candidates": folder}, _settings(pipeline))
    expected = registry.read_registry(sequential_run.warehouse).sort_values("vintage")
    got = registry.read_registry(pipeline.warehouse).sort_values("vintage")
    pd.testing.assert_frame_equal(got[REGISTRY_COLUMNS].reset_index(drop=True),
                                  expected[REGISTRY_COLUMNS].reset_index(drop=True), check_exact=True)
