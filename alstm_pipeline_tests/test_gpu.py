"""CUDA-graph training and seeds together on a real GPU (skipped without CUDA).

Data: 24 synthetic instruments × 2010–2012 business days, 20 random features clipped to
±3 like the processed ones, label = a fixed function of the row's features + noise (so
training moves the weights); train 2010–2011, valid 2012. No shared files needed, so
this runs on a bare GPU machine. Tolerances from issue 10: graphs vs eager per-epoch
losses ≤ 1e-6 relative and predictions ≤ 1e-5; seeds together vs alone ≤ 1e-5.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from alstm_pipeline.dataset import ALSTM_FEATURES, LABEL_COLUMN, build_samples
from alstm_pipeline.model import SeedEnsemble, TrainConfig, load_checkpoint, predict, save_checkpoint, train_alstm, train_seeds

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")

CONFIG = TrainConfig(seed=0, n_epochs=4, early_stop=5, device="cuda")


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2010-01-01", "2012-12-31")
    instruments = [f"S{i:02d}" for i in range(24)]
    frame = pd.DataFrame(
        [(name, day) for name in instruments for day in dates], columns=["instrument", "date"]
    )
    features = np.clip(rng.standard_normal((len(frame), len(ALSTM_FEATURES))), -3, 3).astype(np.float32)
    frame = pd.concat([frame, pd.DataFrame(features, columns=list(ALSTM_FEATURES))], axis=1)
    frame[LABEL_COLUMN] = 0.5 * features[:, 0] - 0.3 * features[:, 5] + 0.1 * rng.standard_normal(len(frame))
    return (
        build_samples(frame, "2010-01-01", "2011-12-31", dates),
        build_samples(frame, "2012-01-01", "2012-12-31", dates),
    )


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def test_graphed_training_matches_the_eager_loop(sets):
    train, valid = sets
    eager = train_alstm(train, valid, replace(CONFIG, cuda_graphs=False), log=lambda line: None)
    graphed = train_alstm(train, valid, CONFIG, log=lambda line: None)
    assert (eager.engine, graphed.engine) == ("eager", "cuda graphs")
    assert len(graphed.valid_losses) == len(eager.valid_losses) == CONFIG.n_epochs
    assert _rel(graphed.train_losses, eager.train_losses) <= 1e-6
    assert _rel(graphed.valid_losses, eager.valid_losses) <= 1e-6
    np.testing.assert_allclose(predict(graphed.model, valid), predict(eager.model, valid), rtol=0, atol=1e-5)


def test_graphed_run_repeats_with_the_same_seed(sets):
    first = train_alstm(*sets, replace(CONFIG, n_epochs=2), log=lambda line: None)
    second = train_alstm(*sets, replace(CONFIG, n_epochs=2), log=lambda line: None)
    assert _rel(second.valid_losses, first.valid_losses) <= 1e-6


def test_seeds_together_match_each_seed_alone(sets, tmp_path):
    train, valid = sets
    config = replace(CONFIG, seed=None, seeds=(0, 1, 2), n_epochs=3, early_stop=1)
    together = train_seeds(train, valid, config, log=lambda line: None)
    assert together.engine == "cuda graphs" and together.seeds == [0, 1, 2]
    for run in together.runs:
        alone = train_alstm(train, valid, config.for_seed(run.seed), log=lambda line: None)
        assert run.epochs_run == alone.epochs_run and run.best_epoch == alone.best_epoch
        assert _rel(run.valid_losses, alone.valid_losses) <= 1e-5
        assert _rel(run.train_losses, alone.train_losses) <= 1e-5
        np.testing.assert_allclose(predict(run.model, valid), predict(alone.model, valid), rtol=0, atol=1e-5)
    # The ensemble trained on the GPU saves and loads like any other.
    folder = save_checkpoint(together.ensemble, tmp_path, together.card(code="test"))
    loaded, card = load_checkpoint(folder)
    assert isinstance(loaded, SeedEnsemble) and card["engine"] == "cuda graphs"
    np.testing.assert_array_equal(predict(loaded, valid, device="cpu"), predict(together.ensemble, valid, device="cpu"))


def test_nan_training_labels_fall_back_to_the_eager_loop(sets):
    train, valid = sets
    labels = train.labels.clone()
    labels[train.index[::5, -1]] = float("nan")
    result = train_alstm(replace(train, labels=labels), valid, replace(CONFIG, n_epochs=1), log=lambda line: None)
    assert result.engine == "eager" and np.isfinite(result.valid_losses[0])
