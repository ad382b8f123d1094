"""The non-TS (flat-row) training loop: Qlib's pytorch_alstm.py semantics on small synthetic data.

The reference below is a literal, independent restatement of Qlib's ALSTM.fit /
train_epoch / test_epoch (global np.random seeded, per-batch numpy slicing, .float()
labels, score = −loss) with a tiny network, so a full run takes a second.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from alstm_pipeline.model import (
    ALPHA360_PROFILE,
    ALSTMModel,
    TrainConfig,
    TrainingInputError,
    flat_set,
    load_checkpoint,
    save_checkpoint,
    train_alstm_flat,
)
from alstm_pipeline.model.training_flat import FlatSet

D_FEAT, STEPS = 3, 4
COLUMNS = [f"F{g}_{lag}" for g in range(D_FEAT) for lag in range(STEPS - 1, -1, -1)]
CONFIG = TrainConfig(d_feat=D_FEAT, hidden_size=8, n_epochs=6, batch_size=32, early_stop=3, seed=7, device="cpu")


def _frame(n_days: int, n_inst: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=n_days)
    keys = pd.MultiIndex.from_product([[f"S{i:02d}" for i in range(n_inst)], dates], names=["instrument", "date"])
    frame = keys.to_frame(index=False)  # instrument-major, as our learn frames come
    x = rng.normal(size=(len(frame), len(COLUMNS))).astype(np.float32)
    frame[COLUMNS] = x
    frame["LABEL0"] = (x[:, :4].sum(axis=1) * 0.3 + rng.normal(size=len(frame))).astype(np.float64)
    return frame


@pytest.fixture(scope="module")
def sets() -> tuple[FlatSet, FlatSet]:
    return flat_set(_frame(30, 7, 1), COLUMNS), flat_set(_frame(12, 7, 2), COLUMNS)


def _qlib_reference(train: FlatSet, valid: FlatSet, config: TrainConfig):
    """Qlib's loop, step by step as pytorch_alstm.py does it (np.random global state)."""
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    model = ALSTMModel(d_feat=config.d_feat, hidden_size=config.hidden_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    bs = config.batch_size

    def loss_fn(pred, label):
        mask = ~torch.isnan(label)
        return torch.mean((pred[mask] - label[mask]) ** 2)

    def test_epoch(x, y):
        model.eval()
        scores = []
        for i in range(len(x))[::bs]:
            if len(x) - i < bs:
                break
            with torch.no_grad():
                pred = model(torch.from_numpy(x[i : i + bs]).float())
                label = torch.from_numpy(y[i : i + bs]).float()
                scores.append(-loss_fn(pred, label).item())
        return np.mean(scores)

    best_score, stop_steps, best_epoch, valid_scores = -np.inf, 0, 0, []
    for step in range(config.n_epochs):
        model.train()
        indices = np.arange(len(train.features))
        np.random.shuffle(indices)
        for i in range(len(indices))[::bs]:
            if len(indices) - i < bs:
                break
            feature = torch.from_numpy(train.features[indices[i : i + bs]]).float()
            label = torch.from_numpy(train.labels[indices[i : i + bs]]).float()
            loss = loss_fn(model(feature), label)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 3.0)
            optimizer.step()
        test_epoch(train.features, train.labels)
        val_score = test_epoch(valid.features, valid.labels)
        valid_scores.append(val_score)
        if val_score > best_score:
            best_score, stop_steps, best_epoch = val_score, 0, step
            best_param = copy.deepcopy(model.state_dict())
        else:
            stop_steps += 1
            if stop_steps >= config.early_stop:
                break
    return best_param, best_epoch, valid_scores


def test_flat_set_orders_rows_date_major(sets):
    train, _ = sets
    order = pd.DataFrame({"date": train.dates, "instrument": train.instruments})
    assert order.equals(order.sort_values(["date", "instrument"]).reset_index(drop=True))
    assert train.features.dtype == np.float32 and train.labels.dtype == np.float64


def test_matches_qlibs_loop_weights_losses_and_stopping(sets):
    train, valid = sets
    state, best_epoch, valid_scores = _qlib_reference(train, valid, CONFIG)
    result = train_alstm_flat(train, valid, CONFIG, log=lambda _: None)
    assert result.best_epoch == best_epoch
    assert result.valid_losses == [-s for s in valid_scores]  # exact: same float32 batches
    for key, value in state.items():
        assert torch.equal(result.model.state_dict()[key], value), key


def test_early_stop_counts_epochs_without_strict_improvement(sets):
    train, valid = sets
    result = train_alstm_flat(train, valid, replace(CONFIG, n_epochs=60, lr=0.05), log=lambda _: None)
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + CONFIG.early_stop + 1
    assert min(result.valid_losses) == result.valid_losses[result.best_epoch]


def test_same_seed_same_weights_and_skipping_train_scoring_changes_nothing(sets):
    train, valid = sets
    runs = [
        train_alstm_flat(train, valid, CONFIG, log=lambda _: None),
        train_alstm_flat(train, valid, CONFIG, log=lambda _: None),
        train_alstm_flat(train, valid, replace(CONFIG, score_train=False), log=lambda _: None),
    ]
    for other in runs[1:]:
        for key, value in runs[0].model.state_dict().items():
            assert torch.equal(other.model.state_dict()[key], value), key
    other_seed = train_alstm_flat(train, valid, replace(CONFIG, seed=8), log=lambda _: None)
    assert not torch.equal(other_seed.model.state_dict()["fc_out.weight"], runs[0].model.state_dict()["fc_out.weight"])


def test_numpy_global_state_is_left_alone(sets):
    train, valid = sets
    np.random.seed(123)
    expected = np.random.random_sample()
    np.random.seed(123)
    train_alstm_flat(train, valid, replace(CONFIG, n_epochs=1), log=lambda _: None)
    assert np.random.random_sample() == expected


def test_bad_inputs_fail_before_training(sets):
    train, valid = sets
    with pytest.raises(TrainingInputError, match="fewer than one batch"):
        train_alstm_flat(train, valid, replace(CONFIG, batch_size=10_000), log=lambda _: None)
    with pytest.raises(TrainingInputError, match="multiple of d_feat"):
        train_alstm_flat(train, valid, replace(CONFIG, d_feat=5), log=lambda _: None)
    nan_row = FlatSet(train.features.copy(), train.labels, train.instruments, train.dates)
    nan_row.features[5, 2] = np.nan
    with pytest.raises(TrainingInputError, match="NaN or inf"):
        train_alstm_flat(nan_row, valid, CONFIG, log=lambda _: None)


def test_alpha360_profile_is_the_yaml():
    assert (ALPHA360_PROFILE.d_feat, ALPHA360_PROFILE.early_stop, ALPHA360_PROFILE.batch_size) == (6, 20, 800)
    assert (ALPHA360_PROFILE.lr, ALPHA360_PROFILE.n_epochs, ALPHA360_PROFILE.rnn_type) == (1e-3, 200, "GRU")


def test_flat_trained_model_round_trips_through_checkpoints(sets, tmp_path):
    train, valid = sets
    result = train_alstm_flat(train, valid, replace(CONFIG, n_epochs=1), log=lambda _: None)
    path = save_checkpoint(result.model, tmp_path, result.card())
    model, card = load_checkpoint(path)
    assert card["architecture"]["d_feat"] == D_FEAT
    x = torch.from_numpy(valid.features[:40])
    with torch.no_grad():
        assert torch.equal(model.eval()(x), result.model.eval()(x))
