"""ALSTM training loop (semantics doc §7.2), prediction (§7.3), input checks, run cards.

Data: 8 instruments of Qlib's processed golden frame (features + CSRankNorm'd learn label),
cut into train 2012–2014 / valid 2015 windows by the dataset module's `build_samples`.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from alstm_pipeline.dataset import DATA_COLUMNS, build_samples
from alstm_pipeline.model import (
    QUICK_PROFILE,
    ALSTMModel,
    TrainConfig,
    TrainingInputError,
    build_card,
    load_checkpoint,
    plot_losses,
    predict,
    profile_config,
    resolve_device,
    save_checkpoint,
    train_alstm,
)
from alstm_pipeline.model.checks import check_finite_rows

N_INSTRUMENTS = 8
TRAIN_RANGE = ("2012-01-01", "2014-12-31")
VALID_RANGE = ("2015-01-01", "2015-12-31")
# Real labels, patience 2: on this slice the run stops early after a few epochs.
SEEDED = TrainConfig(seed=0, n_epochs=6, early_stop=2)


@pytest.fixture(scope="module")
def learn_slice(golden_dir) -> pd.DataFrame:
    processed = pd.read_parquet(golden_dir / "alstm_processed.parquet")
    instruments = sorted(processed["instrument"].unique())[:N_INSTRUMENTS]
    frame = processed[processed["instrument"].isin(instruments)].rename(columns={"LABEL0_learn": "LABEL0"})
    return frame.dropna(subset=["LABEL0"])[list(DATA_COLUMNS)]  # DK_L keeps labelled rows only


def _train_valid(frame: pd.DataFrame):
    calendar = pd.DatetimeIndex(np.unique(frame["date"]))
    return build_samples(frame, *TRAIN_RANGE, calendar), build_samples(frame, *VALID_RANGE, calendar)


@pytest.fixture(scope="module")
def real_sets(learn_slice):
    return _train_valid(learn_slice)


@pytest.fixture(scope="module")
def seeded_run(real_sets):
    lines: list[str] = []
    result = train_alstm(*real_sets, SEEDED, log=lines.append)
    return result, lines


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def _dataloader_reference(train, valid, config: TrainConfig, n_epochs: int):
    """§7.2 written the plain way: torch DataLoaders over float64 [window | label] arrays."""

    def as_dataset(samples):
        label_column = samples.labels[samples.index].unsqueeze(-1)  # label of every window row
        return torch.cat([samples.windows().double(), label_column], dim=2)

    def mse(pred, label):
        keep = ~torch.isnan(label)
        return torch.mean(torch.ones_like(label)[keep] * (pred[keep] - label[keep]) ** 2)

    def score(loader):
        model.eval()
        scores = []
        for batch in loader:
            with torch.no_grad():
                scores.append(-mse(model(batch[:, :, :-1].float()), batch[:, -1, -1]).item())
        return np.mean(scores)

    torch.manual_seed(config.seed)
    model = ALSTMModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_loader = DataLoader(as_dataset(train), batch_size=config.batch_size, shuffle=True, drop_last=True)
    valid_loader = DataLoader(as_dataset(valid), batch_size=config.batch_size, shuffle=False, drop_last=True)
    train_losses, valid_losses, best_state = [], [], None
    for _ in range(n_epochs):
        model.train()
        for batch in train_loader:
            loss = mse(model(batch[:, :, :-1].float()), batch[:, -1, -1])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 3.0)
            optimizer.step()
        train_losses.append(-score(train_loader))
        valid_losses.append(-score(valid_loader))
        if valid_losses[-1] == min(valid_losses):
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return train_losses, valid_losses, model


def test_seeded_run_matches_a_plain_dataloader_loop_bit_for_bit(real_sets, seeded_run):
    result, _ = seeded_run
    train_losses, valid_losses, reference = _dataloader_reference(*real_sets, SEEDED, result.epochs_run)
    assert result.train_losses == train_losses
    assert result.valid_losses == valid_losses
    assert _states_equal(result.model, reference)


def test_same_seed_repeats_losses_and_weights_exactly(real_sets, seeded_run):
    first, _ = seeded_run
    second = train_alstm(*real_sets, SEEDED, log=lambda line: None)
    assert second.train_losses == first.train_losses
    assert second.valid_losses == first.valid_losses
    assert _states_equal(second.model, first.model)


def test_early_stop_keeps_the_best_epochs_weights(real_sets, seeded_run):
    result, _ = seeded_run
    _, valid = real_sets
    assert result.stopped_early
    assert result.best_epoch == int(np.argmin(result.valid_losses))
    assert result.epochs_run == result.best_epoch + 1 + SEEDED.early_stop
    # Re-scoring the returned model on the validation batches gives the best epoch's loss.
    scores = torch.from_numpy(predict(result.model, valid, device="cpu"))
    targets = valid.targets()
    n_full = len(valid) // SEEDED.batch_size * SEEDED.batch_size
    batch_losses = [
        torch.mean((scores[i : i + SEEDED.batch_size] - targets[i : i + SEEDED.batch_size]) ** 2).item()
        for i in range(0, n_full, SEEDED.batch_size)
    ]
    assert float(np.mean(batch_losses)) == result.valid_losses[result.best_epoch]


def test_one_log_line_per_epoch_with_losses_and_seconds(seeded_run):
    result, lines = seeded_run
    epoch_line = re.compile(r"epoch +\d+ +train loss [\d.]+ +valid loss [\d.]+ +[\d.]+s")
    epoch_lines = [line for line in lines if epoch_line.match(line)]
    assert len(epoch_lines) == result.epochs_run == len(result.epoch_seconds)
    assert f"valid loss {result.valid_losses[0]:.6f}" in epoch_lines[0]


def test_skipping_train_scoring_leaves_the_weights_unchanged(real_sets, seeded_run):
    # The skipped pass still draws its shuffle, so the RNG stream (and the weights) are Qlib's.
    full, _ = seeded_run
    quick = train_alstm(*real_sets, replace(SEEDED, score_train=False), log=lambda line: None)
    assert quick.valid_losses == full.valid_losses
    assert _states_equal(quick.model, full.model)
    assert quick.train_loss_source == "training batches" and full.train_loss_source == "scoring pass"


def test_training_on_a_learnable_target_lowers_the_valid_loss(learn_slice):
    # The real label is close to unpredictable (IC ~0.03), so learning is pinned on a target
    # that is a known function of the real features of the sample's own row.
    frame = learn_slice.assign(LABEL0=(learn_slice["RESI5"] - 0.5 * learn_slice["CORR5"]).astype("float64"))
    train, valid = _train_valid(frame)
    config = TrainConfig(seed=1, n_epochs=3, lr=1e-2, score_train=False)
    torch.manual_seed(config.seed)
    untrained_loss = float(np.mean((predict(ALSTMModel(), valid) - valid.targets().numpy()) ** 2))
    result = train_alstm(train, valid, config, log=lambda line: None)
    trained_loss = float(np.mean((predict(result.model, valid) - valid.targets().numpy()) ** 2))
    assert result.best_valid_loss < 0.25 * untrained_loss
    assert trained_loss < 0.25 * untrained_loss


def test_warm_start_continues_from_the_given_weights(real_sets, seeded_run):
    start, _ = seeded_run
    before = {k: v.clone() for k, v in start.model.state_dict().items()}
    # lr so small that one epoch barely moves the weights: its valid loss is the start model's.
    config = replace(SEEDED, n_epochs=1, lr=1e-12, score_train=False)
    warm = train_alstm(*real_sets, config, log=lambda line: None, initial_model=start.model)
    assert warm.valid_losses[0] == pytest.approx(start.best_valid_loss, rel=1e-9)
    assert all(torch.equal(before[k], v) for k, v in start.model.state_dict().items())  # input untouched
    with pytest.raises(ValueError, match="warm start"):
        train_alstm(*real_sets, config, log=lambda line: None, initial_model=ALSTMModel(hidden_size=32))


def test_nan_labels_are_left_out_of_the_loss(real_sets):
    train, valid = real_sets
    labels = train.labels.clone()
    labels[train.index[::3, -1]] = float("nan")  # a third of the targets
    result = train_alstm(replace(train, labels=labels), valid, replace(SEEDED, n_epochs=1), log=lambda line: None)
    assert np.isfinite(result.train_losses[0]) and np.isfinite(result.valid_losses[0])
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_predict_scores_every_sample_in_order(seeded_run, real_sets):
    result, _ = seeded_run
    _, valid = real_sets
    scores = predict(result.model, valid, batch_size=800, device="cpu")
    assert scores.dtype == np.float32 and scores.shape == (len(valid),)
    assert len(valid) % 800 != 0 and np.isfinite(scores).all()  # the partial last batch is scored too
    with torch.no_grad():
        direct = result.model.eval()(valid.windows(torch.arange(len(valid) - 5, len(valid)))).numpy()
    np.testing.assert_allclose(scores[-5:], direct, rtol=0, atol=1e-6)
    np.testing.assert_allclose(predict(result.model, valid, batch_size=97), scores, rtol=0, atol=1e-6)


def test_predict_on_an_empty_set_returns_an_empty_array(seeded_run, real_sets):
    result, _ = seeded_run
    _, valid = real_sets
    empty = replace(valid, index=valid.index[:0], dates=valid.dates[:0], instruments=valid.instruments[:0])
    assert predict(result.model, empty).shape == (0,)


# --- bad input: refused before the first training step ------------------------------------


def _refused(train, valid, config=SEEDED) -> str:
    lines: list[str] = []
    with pytest.raises(TrainingInputError) as raised:
        train_alstm(train, valid, config, log=lines.append)
    assert lines == []  # nothing started
    return str(raised.value)


def test_empty_train_set_is_refused(real_sets):
    train, valid = real_sets
    empty = replace(train, index=train.index[:0], dates=train.dates[:0], instruments=train.instruments[:0])
    assert "train set is empty" in _refused(empty, valid)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_non_finite_feature_is_refused_naming_instrument_and_date(real_sets, bad_value):
    train, valid = real_sets
    rows = valid.rows.clone()
    sample = 100
    rows[valid.index[sample, -1], 3] = bad_value
    message = _refused(train, replace(valid, rows=rows))
    date = pd.Timestamp(valid.dates[sample]).date()
    assert "valid set" in message and "feature column 3" in message
    assert f"{valid.instruments[sample]} on {date}" in message


def test_nan_in_a_row_that_no_window_reads_is_accepted(real_sets):
    _, valid = real_sets
    rows = torch.cat([valid.rows, torch.full((1, valid.rows.shape[1]), float("nan"))])
    labels = torch.cat([valid.labels, torch.zeros(1, dtype=torch.float64)])
    check_finite_rows(replace(valid, rows=rows, labels=labels), "valid")  # no error


def test_all_nan_labels_are_refused(real_sets):
    train, valid = real_sets
    nan_labels = torch.full_like(train.labels, float("nan"))
    assert "all 6032 labels are NaN" in _refused(replace(train, labels=nan_labels), valid)


def test_infinite_label_is_refused(real_sets):
    train, valid = real_sets
    labels = train.labels.clone()
    labels[train.index[7, -1]] = float("inf")
    assert "label is infinite" in _refused(replace(train, labels=labels), valid)


def test_set_smaller_than_one_batch_is_refused(real_sets):
    train, valid = real_sets
    message = _refused(train, valid, replace(SEEDED, batch_size=len(valid) + 1))
    assert "valid set has 2016 samples, fewer than one batch of 2017" in message
    assert "lower batch_size" in message


def test_wrong_feature_width_is_refused(real_sets):
    train, valid = real_sets
    assert "expected [rows, 21]" in _refused(train, valid, replace(SEEDED, d_feat=21))


# --- configuration, run card, plot -------------------------------------------------------


def test_profiles_quick_and_benchmark():
    assert profile_config("benchmark") == TrainConfig()
    assert (TrainConfig().n_epochs, TrainConfig().early_stop, TrainConfig().batch_size) == (200, 10, 800)
    assert profile_config("quick", seed=7) == replace(QUICK_PROFILE, seed=7)
    assert QUICK_PROFILE.n_epochs == 20 and QUICK_PROFILE.early_stop == 5
    with pytest.raises(ValueError, match="unknown training profile 'fast'"):
        profile_config("fast")


def test_invalid_config_names_each_problem():
    with pytest.raises(ValueError, match="loss must be 'mse'.*batch_size must be at least 1"):
        TrainConfig(loss="mae", batch_size=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_requested_without_a_gpu_is_an_error():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_run_card_round_trips_and_plots(seeded_run, tmp_path):
    result, _ = seeded_run
    card = build_card(result, {"train": list(TRAIN_RANGE), "valid": list(VALID_RANGE)}, code="test")
    folder = save_checkpoint(result.model, tmp_path, card)
    assert folder == tmp_path / card["version"]
    loaded_model, loaded_card = load_checkpoint(folder)
    assert _states_equal(loaded_model, result.model)
    assert loaded_card["valid_losses"] == result.valid_losses
    assert loaded_card["best_epoch"] == result.best_epoch and loaded_card["device"] == "cpu"
    assert loaded_card["data"] == {
        "train": list(TRAIN_RANGE),
        "valid": list(VALID_RANGE),
        "n_train_samples": 6032,
        "n_valid_samples": 2016,
    }
    assert loaded_card["config"] == json.loads(json.dumps(SEEDED.to_dict()))
    assert loaded_card["parameter_count"] == 53_505
    png = plot_losses(loaded_card)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
