"""Checkpoints after a kill and on load (issue 15's table): a folder a killed run published
but never registered is removed by the next training run and never served; loading checks
the model registry's sha256, not only the card that travels with the weights.

The kill is real: a subprocess trains a vintage through the real definitions and is sent
SIGKILL at the one point in question, after the checkpoint folder's rename and before its
registry row. 12 instruments of the bundled sample, one epoch.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch

from alstm_pipeline.model import ALSTMModel, CheckpointError, checkpoint_version, load_checkpoint, save_checkpoint
from alstm_pipeline.model.checkpoint import load_registered
from alstm_pipeline.model.publishing import orphaned_checkpoints
from alstm_pipeline.warehouse import registry
from alstm_pipeline_tests.conftest import REPO_ROOT, SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

INSTRUMENTS = ["AAPL", "AMZN", "BA", "C", "CVX", "GE", "IBM", "JPM", "KO", "MRK", "PG", "XOM"]
FIRST, LAST = "2014-01-02", "2015-03-31"
VINTAGE = "2015-03-02"
ROLLING = {"mode": "rolling", "train_days": 120, "valid_days": 40, "trunc_days": 3, "n_epochs": 1, "seed": 7,
           "batch_size": 200}
RUN_CONFIG = {"ops": {"alstm_model": {"config": ROLLING}}}

# Trains the vintage through the real definitions, and dies by SIGKILL where a kill -9 (the
# OOM killer, a machine restart) hurts most: the folder renamed into place, no registry row.
KILLED_RUN = """
import json, os, signal, sys
from pathlib import Path
from alstm_pipeline.warehouse import registry
from alstm_pipeline_tests.conftest import SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

registry.register_vintage = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
home, universe, vintage, config = sys.argv[1:]
TestPipeline(Path(home), SAMPLE_PATH, Path(universe)).run("alstm_model", run_config=json.loads(config), vintage=vintage)
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> TestPipeline:
    home = tmp_path_factory.mktemp("checkpoint_home")
    universe = home / "universe.txt"
    universe.write_text("".join(f"{code}\t2000-01-01\t2030-12-31\n" for code in INSTRUMENTS))
    pipeline = TestPipeline(home, SAMPLE_PATH, universe)
    pipeline.run("universe,raw_ohlcv,trading_calendar,alpha158_features,labels", FIRST, LAST)
    return pipeline


@pytest.fixture(scope="module")
def killed_run(pipeline) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(pipeline.home), str(pipeline.home / "universe.txt"), VINTAGE,
         json.dumps(RUN_CONFIG)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )


def _registered(pipeline) -> set[str]:
    return {str(path) for path in registry.read_registry(pipeline.warehouse)["checkpoint"]}


def _folders(pipeline) -> set[str]:
    return {str(path) for path in (pipeline.home / "models").iterdir()}


def test_a_run_killed_between_rename_and_registry_leaves_an_orphan_that_is_never_served(pipeline, killed_run):
    assert killed_run.returncode == -signal.SIGKILL, killed_run.stderr[-2000:]
    assert _registered(pipeline) == set()
    (orphan,) = _folders(pipeline)  # the renamed checkpoint folder, whole, and no row names it
    assert (pipeline.home / "models" / orphan / "card.json").is_file()
    assert orphaned_checkpoints(pipeline.home / "models", []) == [pipeline.home / "models" / orphan]
    assert orphaned_checkpoints(pipeline.home / "models", [orphan]) == []
    # Serving looks models up in the registry: with no row, no day is scored.
    pipeline.run("predictions", VINTAGE, "2015-03-06")
    assert pipeline.warehouse.query("SELECT count(*) FROM predictions").iloc[0, 0] == 0


def test_the_next_training_run_removes_the_orphan_and_serves_only_its_registered_model(pipeline, killed_run):
    (orphan,) = _folders(pipeline)
    pipeline.run("alstm_model", run_config=RUN_CONFIG, vintage=VINTAGE)
    registered = _registered(pipeline)
    assert len(registered) == 1 and orphan not in registered
    assert _folders(pipeline) == registered  # the orphan is gone, and nothing else was touched
    pipeline.run("predictions", VINTAGE, "2015-03-06")
    versions = pipeline.warehouse.query("SELECT DISTINCT model_version FROM predictions")["model_version"]
    assert list(versions) == list(registry.read_registry(pipeline.warehouse)["version"])


def test_serving_refuses_a_checkpoint_folder_whose_weights_are_not_the_registered_ones(pipeline, killed_run, tmp_path):
    row = registry.read_registry(pipeline.warehouse).iloc[-1]
    if row["status"] != "promoted":
        pytest.skip("the vintage was not promoted")
    folder = pipeline.home / "models" / row["version"]
    # Other weights with their own, consistent card: the card check alone cannot tell.
    other = _tiny_model(seed=1, d_feat=20)
    written = save_checkpoint(other, tmp_path, {"version": checkpoint_version(other)})
    saved = {name: (folder / name).read_bytes() for name in ("model.safetensors", "card.json")}
    try:
        for name in saved:
            shutil.copyfile(written / name, folder / name)
        load_checkpoint(folder)  # the folder agrees with itself
        error = pipeline.run_expecting_failure("predictions", VINTAGE, "2015-03-06")
        assert "are not the ones the model registry recorded" in error
    finally:
        for name, data in saved.items():
            (folder / name).write_bytes(data)


def _tiny_model(seed: int, d_feat: int = 6) -> ALSTMModel:
    torch.manual_seed(seed)
    return ALSTMModel(d_feat=d_feat, hidden_size=8, num_layers=1)


def test_loading_a_registered_checkpoint_checks_the_registrys_sha256(tmp_path):
    first, second = _tiny_model(1), _tiny_model(2)
    folder = save_checkpoint(first, tmp_path / "models", {"version": checkpoint_version(first)})
    card = json.loads((folder / "card.json").read_text())
    row = pd.Series({"checkpoint": str(folder), "sha256": card["weights_sha256"]})
    model, _ = load_registered(row)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), first.state_dict().values()))

    replacement = save_checkpoint(second, tmp_path / "elsewhere", {"version": checkpoint_version(second)})
    for name in ("model.safetensors", "card.json"):
        shutil.copyfile(replacement / name, folder / name)
    load_checkpoint(folder)  # consistent with its own card: the old check passes
    with pytest.raises(CheckpointError, match="not the ones the model registry recorded"):
        load_registered(row)
