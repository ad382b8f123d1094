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

On CUDA (config.cuda_graphs) each training step and scoring batch replays a captured CUDA
graph over static batch buffers instead (graphs.py); every pass already uses full
batches only (Qlib's drop_last), so the graphs train and score exactly the samples this
loop does. The CPU loop below is unchanged and stays eager.

`train_seeds` trains the K seeds of `config.seed_list` as one unit: on the CPU one after
another (each run is the single run of its seed, bit for bit), on CUDA as K graphs on K
streams in lockstep, each seed with its own copy of the RNG stream it would draw alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from alstm_pipeline.model.batching import full_batches, sequential_pass_start, shuffled_pass_order
from alstm_pipeline.model.checks import check_training_inputs
from alstm_pipeline.model.config import TrainConfig, resolve_device
from alstm_pipeline.model.ensemble import SeedEnsemble
from alstm_pipeline.model.network import ALSTMModel
from alstm_pipeline.model.results import RunLog, SeedsResult, TrainResult, mean_ignoring_nan
from alstm_pipeline.model.steps import batch_mse, build_model, optimizer_step
from alstm_pipeline.progress import Progress

if TYPE_CHECKING:
    from alstm_pipeline.dataset import SampleSet

def _train_pass(
    model: ALSTMModel,
    optimizer: torch.optim.Optimizer,
    samples: SampleSet,
    batch_size: int,
    labels_have_nan: bool,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """One shuffled pass of Adam steps; returns the per-batch training losses (on the device).
    ``progress(done, total)`` is called after each batch (progress.Progress logs every 30 s)."""
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
        optimizer_step(model, optimizer, loss)
        losses[i] = loss.detach()
        if progress is not None:
            progress(i + 1, len(batches))
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
    return mean_ignoring_nan(losses)


def graphs_unusable(config: TrainConfig, device: torch.device, train: SampleSet) -> str | None:
    """Why the CUDA-graph loop cannot run this config (None: it can).

    Graphs need fixed shapes and no host decisions: NaN training labels need a boolean mask
    (dynamic shape) and an all-NaN batch must skip its step, so those runs stay eager; with
    dropout > 0, K seeds side by side would interleave their draws from the one CUDA
    generator, so each seed would no longer equal its run alone.
    """
    if device.type != "cuda":
        return "not a CUDA device"
    if not config.cuda_graphs:
        return "cuda_graphs=False"
    if config.dropout > 0:
        return f"dropout {config.dropout} > 0"
    if bool(torch.isnan(train.targets()).any()):
        return "the training labels contain NaN"
    return None


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
    modified. `config.seeds` is ignored here (see train_seeds).
    """
    config = config.for_seed(config.seed) if config.seeds else config
    check_training_inputs(train, valid, config.d_feat, config.batch_size)
    device = resolve_device(config.device)
    if graphs_unusable(config, device, train) is None:
        from alstm_pipeline.model.graphs import train_graphed  # CUDA only

        return train_graphed(train, valid, [config], log, [initial_model], device, prefixes=[""])[0]
    started = time.perf_counter()

    model = build_model(config, initial_model)
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

    run = RunLog(config, log)
    for _ in range(config.n_epochs):
        epoch_start = time.perf_counter()
        progress = Progress(f"{run.prefix}epoch {len(run.valid_losses)}: training batches", log)
        batch_losses = _train_pass(model, optimizer, train, config.batch_size, train_has_nan, progress)
        # The train scoring pass draws its shuffle even when skipped, to keep Qlib's RNG stream.
        train_score_batches = full_batches(shuffled_pass_order(len(train)).to(device), config.batch_size)
        if config.score_train:
            train_loss = _score_pass(model, train, train_score_batches, train_has_nan)
        else:
            train_loss = mean_ignoring_nan(batch_losses)
        sequential_pass_start()
        valid_loss = _score_pass(model, valid, valid_batches, valid_has_nan)
        if run.record(model, train_loss, valid_loss, time.perf_counter() - epoch_start):
            break
    return run.finish(model, device, started, len(train), len(valid), "eager")


def train_seeds(
    train: SampleSet,
    valid: SampleSet,
    config: TrainConfig = TrainConfig(),
    log: Callable[[str], None] = print,
    initial_models: list[ALSTMModel] | None = None,
) -> SeedsResult:
    """Train one model per seed of `config.seed_list`; each equals the same seed's `train_alstm` run.

    CPU (or a config the graph loop cannot run): the seeds one after another, so each
    member is bit for bit its single run. CUDA: K graphs on K streams, per-seed RNG streams
    and early stopping; within float tolerance of the single runs. `initial_models` (warm
    start) gives one starting model per seed, in order.
    """
    seeds = config.seed_list
    if initial_models is not None and len(initial_models) != len(seeds):
        raise ValueError(f"warm start: {len(initial_models)} initial models for {len(seeds)} seeds")
    initials = list(initial_models) if initial_models is not None else [None] * len(seeds)
    check_training_inputs(train, valid, config.d_feat, config.batch_size)
    device = resolve_device(config.device)
    configs = [config.for_seed(seed) for seed in seeds]
    prefixes = [f"[seed {seed}] " if len(seeds) > 1 else "" for seed in seeds]
    started = time.perf_counter()
    reason = graphs_unusable(config, device, train)
    if reason is None and len(seeds) > 1:
        from alstm_pipeline.model.graphs import train_graphed  # CUDA only

        log(f"training {len(seeds)} seeds {list(seeds)} together on {device}: one CUDA graph and stream per seed")
        runs = train_graphed(train, valid, configs, log, initials, device, prefixes)
    else:
        if len(seeds) > 1:
            log(f"training {len(seeds)} seeds {list(seeds)} one after another on {device} ({reason})")
        runs = [
            train_alstm(train, valid, seed_config, _prefixed(log, prefix), initial)
            for seed_config, prefix, initial in zip(configs, prefixes, initials, strict=True)
        ]
    return SeedsResult(
        config=config,
        runs=runs,
        ensemble=SeedEnsemble([run.model for run in runs], list(seeds)),
        device=str(device),
        engine=runs[0].engine,
        wall_seconds=time.perf_counter() - started,
    )


def _prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return log if not prefix else (lambda line: log(prefix + line))
