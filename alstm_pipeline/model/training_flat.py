"""Qlib's non-TS ALSTM training loop (``pytorch_alstm.py``, the Alpha360 configuration).

One sample is one processed feature row (360 columns for Alpha360), not a 20-step window.
The loop follows Qlib's ``ALSTM.fit`` / ``train_epoch`` / ``test_epoch`` (docs/alpha360.md,
"Training"): per epoch a numpy shuffle of the row indices, batches sliced from it with the
last partial batch dropped, labels cast to float32, MSE over the non-NaN labels, gradients
clipped element-wise to ±3, Adam; then the train and the valid set are scored in row order
(last partial batch dropped), score = −(mean of the batch MSEs), strict improvement, stop
after ``early_stop`` epochs without one, best weights restored.

Differences from the TS loop (training.py) that change numbers: the shuffle comes from
numpy's RNG (Qlib seeds ``np.random`` and shuffles with it; no DataLoader, so the torch RNG
is only used by the initialisation), the labels and therefore the loss are float32, and the
train scoring pass is sequential (it draws no random numbers, so skipping it with
``score_train=False`` cannot change the weights).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from alstm_pipeline.model.checks import TrainingInputError
from alstm_pipeline.model.config import TrainConfig, resolve_device
from alstm_pipeline.model.network import ALSTMModel
from alstm_pipeline.model.results import TrainResult, mean_ignoring_nan
from alstm_pipeline.model.steps import batch_mse, build_model, optimizer_step
from alstm_pipeline.progress import Progress

LABEL_COLUMN = "LABEL0"


@dataclass(frozen=True)
class FlatSet:
    """Rows of one segment in Qlib's handler order (date, then instrument).

    ``features`` [N, F] float32 (what ``x_train.values`` is), ``labels`` [N] as stored
    (float64 after CSRankNorm for DK_L; float32 raw for DK_I), ``instruments``/``dates`` [N].
    """

    features: np.ndarray
    labels: np.ndarray
    instruments: np.ndarray
    dates: np.ndarray

    def __len__(self) -> int:
        return len(self.features)


def flat_set(frame: pd.DataFrame, columns: Sequence[str]) -> FlatSet:
    """A learn/infer frame (``instrument, date, <columns>, LABEL0``) as a :class:`FlatSet`.

    Rows are sorted by (date, instrument): Qlib's handler frames are date-major, and the
    shuffle permutes row positions, so the order fixes which rows form a batch.
    """
    columns = list(columns)
    missing = [c for c in ("instrument", "date", *columns, LABEL_COLUMN) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing[:12]}")
    ordered = frame.sort_values(["date", "instrument"], kind="stable")
    return FlatSet(
        features=np.ascontiguousarray(ordered[columns].to_numpy(dtype=np.float32)),
        labels=ordered[LABEL_COLUMN].to_numpy(),
        instruments=ordered["instrument"].to_numpy(),
        dates=ordered["date"].to_numpy(),
    )


def check_flat_inputs(train: FlatSet, valid: FlatSet, d_feat: int, batch_size: int) -> None:
    """Fail before any step on sets that Qlib would train on silently wrongly (see checks.py)."""
    for name, samples in (("train", train), ("valid", valid)):
        if len(samples) == 0:
            raise TrainingInputError(f"{name} set is empty: no rows in its date range")
        width = samples.features.shape[1]
        if width % d_feat:
            raise TrainingInputError(f"{name} set: {width} feature columns is not a multiple of d_feat={d_feat}")
        if len(samples) < batch_size:
            raise TrainingInputError(
                f"{name} set has {len(samples)} rows, fewer than one batch of {batch_size}: the last "
                f"partial batch is dropped, so it would {'train on' if name == 'train' else 'be scored on'} "
                f"nothing; lower batch_size or widen the {name} date range"
            )
        bad = ~np.isfinite(samples.features).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise TrainingInputError(
                f"{name} set: {int(bad.sum())} feature row(s) contain NaN or inf, the first "
                f"{samples.instruments[first]} on {pd.Timestamp(samples.dates[first]).date()} "
                f"(features must be filled before training, §5.1 Fillna)"
            )
        labels = samples.labels.astype(np.float64)
        if np.isinf(labels).any():
            raise TrainingInputError(f"{name} set: a label is infinite")
        if np.isnan(labels).all():
            raise TrainingInputError(f"{name} set: all {len(samples)} labels are NaN, nothing to learn from")


class _DeviceSet:
    """A FlatSet's features and float32 labels as tensors on the training device."""

    def __init__(self, samples: FlatSet, device: torch.device) -> None:
        self.features = torch.from_numpy(samples.features).to(device)
        # Qlib: torch.from_numpy(y[batch]).float(): the float64 label rounded to float32.
        self.labels = torch.from_numpy(samples.labels.astype(np.float64)).float().to(device)
        self.has_nan = bool(torch.isnan(self.labels).any())
        self.device = device

    def __len__(self) -> int:
        return len(self.labels)


def _batch_starts(n: int, batch_size: int) -> range:
    """Qlib slices every batch_size rows and breaks at a remainder shorter than a batch."""
    return range(0, n - batch_size + 1, batch_size)


def _train_pass(
    model: ALSTMModel, optimizer: torch.optim.Optimizer, data: _DeviceSet, batch_size: int, rng: np.random.RandomState,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    model.train()
    indices = np.arange(len(data))
    rng.shuffle(indices)  # Qlib: np.random.shuffle(indices), once per epoch
    order = torch.from_numpy(indices).to(data.device)
    starts = _batch_starts(len(data), batch_size)
    losses = torch.empty(len(starts), dtype=torch.float64, device=data.device)
    for i, start in enumerate(starts):
        ids = order[start : start + batch_size]
        target = data.labels[ids]
        if data.has_nan and bool(torch.isnan(target).all()):
            # Qlib would take the mean of nothing (NaN) and poison every weight; skip instead.
            losses[i] = float("nan")
            continue
        loss = batch_mse(model(data.features[ids]), target, data.has_nan)  # float32 (labels float32)
        optimizer_step(model, optimizer, loss)
        losses[i] = loss.detach()
        if progress is not None:
            progress(i + 1, len(starts))
    return losses


@torch.inference_mode()
def _score_pass(model: ALSTMModel, data: _DeviceSet, batch_size: int) -> float:
    """Qlib's test_epoch loss: mean over the in-order full batches of each batch's MSE.

    Qlib keeps score = −loss per batch and early-stops on the mean score; the mean of the
    negated values is exactly the negated mean, so comparing losses is the same decision.
    """
    model.eval()
    starts = _batch_starts(len(data), batch_size)
    # float32 batch losses held as float64: Qlib's loss.item() is that float32 value as a
    # Python float, and np.mean of those floats is a float64 mean.
    losses = torch.empty(len(starts), dtype=torch.float64, device=data.device)
    for i, start in enumerate(starts):
        stop = start + batch_size
        losses[i] = batch_mse(model(data.features[start:stop]), data.labels[start:stop], data.has_nan)
    return mean_ignoring_nan(losses)


def train_alstm_flat(
    train: FlatSet,
    valid: FlatSet,
    config: TrainConfig,
    log: Callable[[str], None] = print,
    initial_model: ALSTMModel | None = None,
) -> TrainResult:
    """Train Qlib's non-TS ALSTM on flat rows, early-stopping on `valid` (docs/alpha360.md).

    `config.d_feat` is the number of features per step (6 for Alpha360: 360 columns = 6 × 60
    lags). With `config.seed` set, torch is seeded before the model is built and the
    epoch shuffles come from ``np.random.RandomState(seed)``, the stream Qlib's
    ``np.random.seed(seed)`` + ``np.random.shuffle`` produce (a private generator, so numpy's
    global state is neither read nor changed); a seeded CPU run repeats bit for bit.
    """
    check_flat_inputs(train, valid, config.d_feat, config.batch_size)
    device = resolve_device(config.device)
    started = time.perf_counter()

    rng = np.random.RandomState(config.seed)  # None: fresh entropy, like an unseeded Qlib run
    # torch seeded before the model is built (the init draws, §7.1); numpy's RandomState above
    # draws from its own stream, so the order of the two does not matter.
    model = build_model(config, initial_model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_data, valid_data = _DeviceSet(train, device), _DeviceSet(valid, device)
    log(
        f"training ALSTM (flat rows, {train.features.shape[1]} columns) on {device}: "
        f"{len(train)} train rows ({len(train) // config.batch_size} batches of {config.batch_size}), "
        f"{len(valid)} valid rows, up to {config.n_epochs} epochs, early stop {config.early_stop}, "
        f"seed {config.seed}"
    )

    train_losses: list[float] = []
    valid_losses: list[float] = []
    epoch_seconds: list[float] = []
    best_loss, best_epoch, best_state, epochs_since_best = float("inf"), -1, None, 0
    stopped_early = False
    for epoch in range(config.n_epochs):
        epoch_start = time.perf_counter()
        batch_losses = _train_pass(model, optimizer, train_data, config.batch_size, rng,
                                   Progress(f"epoch {epoch}: training batches", log))
        if config.score_train:
            train_loss = _score_pass(model, train_data, config.batch_size)
        else:
            train_loss = mean_ignoring_nan(batch_losses)
        valid_loss = _score_pass(model, valid_data, config.batch_size)
        seconds = time.perf_counter() - epoch_start
        train_losses.append(train_loss)
        valid_losses.append(valid_loss)
        epoch_seconds.append(seconds)
        improved = valid_loss < best_loss  # strict; a NaN loss never improves
        if improved:
            best_loss, best_epoch, epochs_since_best = valid_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            epochs_since_best += 1
        log(
            f"epoch {epoch:3d}  train loss {train_loss:.6f}  valid loss {valid_loss:.6f}  "
            f"{seconds:6.1f}s{'  *best' if improved else ''}"
        )
        if epochs_since_best >= config.early_stop:
            stopped_early = True
            break

    if best_state is None:
        raise RuntimeError(
            f"the validation loss was never finite in {len(valid_losses)} epochs "
            f"(last {valid_losses[-1]}); training diverged, no model to keep"
        )
    model.load_state_dict(best_state)
    model.cpu().eval()
    wall_seconds = time.perf_counter() - started
    log(
        f"best epoch {best_epoch} (valid loss {best_loss:.6f}); "
        f"{len(valid_losses)} epochs{' (early stop)' if stopped_early else ''} in {wall_seconds:.1f}s"
    )
    return TrainResult(
        model=model,
        config=config,
        best_epoch=best_epoch,
        train_losses=train_losses,
        valid_losses=valid_losses,
        epoch_seconds=epoch_seconds,
        device=str(device),
        wall_seconds=wall_seconds,
        stopped_early=stopped_early,
        n_train_samples=len(train),
        n_valid_samples=len(valid),
        train_loss_source="scoring pass" if config.score_train else "training batches",
    )


@torch.inference_mode()
def predict_flat(model: ALSTMModel, samples: FlatSet, batch_size: int = 800, device: str = "auto") -> np.ndarray:
    """float32 score of every row of `samples`, in its order (Qlib's ALSTM.predict).

    Batches of `batch_size` in row order, the last partial batch included, eval mode. The
    model's device and train/eval mode are restored afterwards.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if len(samples) == 0:
        return np.empty(0, dtype=np.float32)
    if not np.isfinite(samples.features).all():
        raise ValueError("prediction rows contain NaN or inf (features must be filled, §5.1 Fillna)")
    target_device = resolve_device(device)
    was_training, original_device = model.training, next(model.parameters()).device
    model.to(target_device).eval()
    features = torch.from_numpy(samples.features).to(target_device)
    try:
        scores = [model(features[start : start + batch_size]) for start in range(0, len(samples), batch_size)]
        return torch.cat(scores).cpu().numpy().astype(np.float32, copy=False)
    finally:
        model.to(original_device).train(was_training)
