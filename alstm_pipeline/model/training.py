"""Qlib's ALSTM training loop (semantics doc §7.2), without DataLoaders or Dagster.

Per epoch: one shuffled training pass (batch 800, last partial batch dropped; MSE on the
non-NaN labels in float64; gradients clipped element-wise to ±3; Adam), then the train
set is scored on a NEW shuffled pass and the validation set in sample order, both with
drop_last. A score is the mean over batches of each batch's MSE. The validation loss
must improve strictly; after `early_stop` epochs without improvement training stops and
the best epoch's weights are restored.

With a seed, torch's global RNG is consumed exactly as Qlib's loaders consume it
(batching.py), so a seeded CPU run repeats bit for bit and follows Qlib's shuffles.
Windows are gathered on the training device from the SampleSet's row table, and the
per-batch losses stay on the device until the end of the pass: no host sync per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from alstm_pipeline.model.batching import full_batches, sequential_pass_start, shuffled_pass_order
from alstm_pipeline.model.checks import check_training_inputs
from alstm_pipeline.model.config import TrainConfig, resolve_device
from alstm_pipeline.model.network import ALSTMModel, parameter_count

if TYPE_CHECKING:
    from alstm_pipeline.dataset import SampleSet

GRAD_CLIP_VALUE = 3.0  # §7.2: clip every gradient element to [-3, 3]


@dataclass
class TrainResult:
    """Outcome of `train_alstm`. Epochs are numbered from 0, as in Qlib's log."""

    model: ALSTMModel  # best epoch's weights, on the CPU, in eval mode
    config: TrainConfig
    best_epoch: int
    train_losses: list[float]  # per epoch; see train_loss_source
    valid_losses: list[float]  # per epoch: mean validation batch MSE
    epoch_seconds: list[float]
    device: str
    wall_seconds: float
    stopped_early: bool
    n_train_samples: int
    n_valid_samples: int
    # "scoring pass" (Qlib's re-scored train loss) or "training batches" (score_train=False).
    train_loss_source: str = "scoring pass"
    parameter_count: int = field(init=False)

    def __post_init__(self) -> None:
        self.parameter_count = parameter_count(self.model)

    @property
    def best_valid_loss(self) -> float:
        return self.valid_losses[self.best_epoch]

    @property
    def epochs_run(self) -> int:
        return len(self.valid_losses)

    def card(self, data_ranges=None, code: str | None = None) -> dict[str, object]:
        """The checkpoint card of this run (see checkpoint.build_card)."""
        from alstm_pipeline.model.checkpoint import build_card  # checkpoint imports this module

        return build_card(self, data_ranges, code)


def batch_mse(pred: torch.Tensor, target: torch.Tensor, labels_have_nan: bool) -> torch.Tensor:
    """Mean squared error over the non-NaN targets, in float64 (float32 pred − float64 label).

    Boolean masking needs the mask's count on the host, so it is only done when the set
    has NaN labels at all (never for Qlib's learn data); otherwise the batch is used whole,
    which gives the same value and gradient.
    """
    if labels_have_nan:
        keep = ~torch.isnan(target)
        pred, target = pred[keep], target[keep]
    return torch.mean((pred - target) ** 2)


def _train_pass(
    model: ALSTMModel,
    optimizer: torch.optim.Optimizer,
    samples: SampleSet,
    batch_size: int,
    labels_have_nan: bool,
) -> torch.Tensor:
    """One shuffled pass of Adam steps; returns the per-batch training losses (on the device)."""
    model.train()
    device = samples.rows.device
    batches = full_batches(shuffled_pass_order(len(samples)).to(device), batch_size)
    losses = torch.empty(len(batches), dtype=torch.float64, device=device)
    for i, ids in enumerate(batches):
        target = samples.targets(ids)
        if labels_have_nan and bool(torch.isnan(target).all()):
            # Qlib would take the mean of nothing (NaN) and poison every weight; skip instead.
            losses[i] = float("nan")
            continue
        loss = batch_mse(model(samples.windows(ids)), target, labels_have_nan)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), GRAD_CLIP_VALUE)
        optimizer.step()
        losses[i] = loss.detach()
    return losses


@torch.inference_mode()
def _score_pass(
    model: ALSTMModel, samples: SampleSet, batches: list[torch.Tensor], labels_have_nan: bool
) -> float:
    """Mean over the given batches of each batch's MSE, in eval mode (§7.2 evaluate)."""
    model.eval()
    losses = torch.empty(len(batches), dtype=torch.float64, device=samples.rows.device)
    for i, ids in enumerate(batches):
        losses[i] = batch_mse(model(samples.windows(ids)), samples.targets(ids), labels_have_nan)
    return _mean_ignoring_nan(losses)


def _mean_ignoring_nan(losses: torch.Tensor) -> float:
    """np.mean of the batch losses (Qlib averages python floats with np.mean: same number).

    A batch whose labels are all NaN has a NaN loss; it is left out instead of making the
    whole epoch's loss NaN (only possible when a set has NaN labels at all).
    """
    values = losses.cpu().numpy()
    values = values[~np.isnan(values)]
    return float(np.mean(values)) if len(values) else float("nan")


def _load_initial_weights(model: ALSTMModel, initial_model: ALSTMModel) -> None:
    if initial_model.architecture() != model.architecture():
        raise ValueError(
            f"warm start: the initial model's architecture {initial_model.architecture()} "
            f"differs from the config's {model.architecture()}"
        )
    model.load_state_dict({k: v.detach().cpu() for k, v in initial_model.state_dict().items()})


def train_alstm(
    train: SampleSet,
    valid: SampleSet,
    config: TrainConfig = TrainConfig(),
    log: Callable[[str], None] = print,
    initial_model: ALSTMModel | None = None,
) -> TrainResult:
    """Train Qlib's ALSTM on `train`, early-stopping on `valid` (§7.2); returns the best model.

    Raises TrainingInputError before any step for unusable inputs (checks.py). With
    `config.seed` set, consumes torch's global RNG like Qlib and is deterministic on CPU
    (cuDNN kernels may not be bit-reproducible on CUDA). `initial_model` (warm start)
    supplies the starting weights; its architecture must match the config. It is not
    modified.
    """
    check_training_inputs(train, valid, config.d_feat, config.batch_size)
    device = resolve_device(config.device)
    started = time.perf_counter()

    if config.seed is not None:
        torch.manual_seed(config.seed)  # §7.2: seed before the model is built (init draws)
    model = ALSTMModel(
        d_feat=config.d_feat,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout,
        rnn_type=config.rnn_type,
    )
    if initial_model is not None:
        _load_initial_weights(model, initial_model)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    train, valid = train.to(device), valid.to(device)
    train_has_nan = bool(torch.isnan(train.targets()).any())
    valid_has_nan = bool(torch.isnan(valid.targets()).any())
    # The validation loader is never shuffled, so its batches are the same every epoch.
    valid_batches = full_batches(torch.arange(len(valid), device=device), config.batch_size)
    log(
        f"training ALSTM on {device}: {len(train)} train samples "
        f"({len(train) // config.batch_size} batches of {config.batch_size}), {len(valid)} valid samples "
        f"({len(valid_batches)} batches), up to {config.n_epochs} epochs, "
        f"early stop {config.early_stop}, seed {config.seed}"
    )

    train_losses: list[float] = []
    valid_losses: list[float] = []
    epoch_seconds: list[float] = []
    best_loss, best_epoch, best_state, epochs_since_best = float("inf"), -1, None, 0
    stopped_early = False
    for epoch in range(config.n_epochs):
        epoch_start = time.perf_counter()
        batch_losses = _train_pass(model, optimizer, train, config.batch_size, train_has_nan)
        # The train scoring pass draws its shuffle even when skipped, to keep Qlib's RNG stream.
        train_score_batches = full_batches(shuffled_pass_order(len(train)).to(device), config.batch_size)
        if config.score_train:
            train_loss = _score_pass(model, train, train_score_batches, train_has_nan)
        else:
            train_loss = _mean_ignoring_nan(batch_losses)
        sequential_pass_start()
        valid_loss = _score_pass(model, valid, valid_batches, valid_has_nan)
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
