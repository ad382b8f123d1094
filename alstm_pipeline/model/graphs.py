"""The §7.2 training loop on CUDA with every batch replayed from a captured CUDA graph.

Why: on an H100 an eager ALSTM step (batch 800) costs 2.75–3.9 ms, almost all of it kernel
launch overhead; the same step as a CUDA graph costs 1.29 ms, and K graphed models on K
streams 0.44 ms per model-step for K ≥ 8 (DESIGN.md, Known costs). So K seeds train in
lockstep: batch i of every live seed is launched, each on its own stream, before batch i+1.

Per seed, three graphs are captured over one static int64 buffer of batch_size sample ids:
  - the training step: gather windows and targets, forward, float64 MSE, backward, clip
    every gradient element to ±3, Adam(capturable=True) step;
  - the train scoring batch and the validation scoring batch: eval-mode forward + MSE.
A pass copies each batch's ids into the buffer and replays; the batch losses are copied
into a device vector read once per pass. Every pass of §7.2 uses full batches only
(drop_last on all three loaders), so the graphs see exactly the samples the eager loop
does; no padding, no partial batch. (Prediction, §7.3, scores the last partial batch
too; it stays eager in inference.py: it runs once per segment and is not the cost.)

Equivalence with a seed's run alone: each seed builds its model after torch.manual_seed
(§7.2) and then draws its shuffles from a private torch.Generator holding a copy of the
global CPU RNG state at that point: exactly the numbers its single run draws from the
global generator. Capturing needs warm-up steps (cuDNN/cuBLAS handles, Adam's lazily
created state); their effect on the weights and Adam's moments is undone before the first
real step. Numbers differ from the eager CUDA loop only by kernel-level rounding
(capturable Adam computes its bias corrections on the device).

Nothing here runs without CUDA: training.py imports this module only for a CUDA device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from alstm_pipeline.model.batching import sequential_pass_start, shuffled_pass_order
from alstm_pipeline.model.config import TrainConfig
from alstm_pipeline.model.network import ALSTMModel
from alstm_pipeline.model.results import RunLog, TrainResult, mean_ignoring_nan
from alstm_pipeline.model.steps import GRAD_CLIP_VALUE, build_model

if TYPE_CHECKING:
    from alstm_pipeline.dataset import SampleSet

WARMUP_STEPS = 3  # PyTorch's whole-network capture recipe warms up on a side stream first


def _batch_loss(
    model: ALSTMModel, samples: SampleSet, ids: torch.Tensor, labels_have_nan: bool
) -> torch.Tensor:
    """Float64 MSE of one batch, written with fixed shapes (a mask instead of boolean indexing).

    Without NaN labels it is batch_mse's own expression. With NaN labels (scoring only) the
    mean over the labelled samples is sum/count; an all-NaN batch gives 0/0 = NaN, which the
    pass mean leaves out, as the eager loop does.
    """
    window_rows = samples.index[ids]
    pred = model(samples.rows[window_rows])
    target = samples.labels[window_rows[:, -1]]
    if not labels_have_nan:
        return torch.mean((pred - target) ** 2)
    keep = ~torch.isnan(target)
    squared = torch.where(keep, pred - target, torch.zeros_like(target)) ** 2
    return squared.sum() / keep.sum()


class CudaOps:
    """Every CUDA call of the loop, in one place: streams, capture, sync, the capturable Adam.

    Tests on machines without a GPU swap in a stand-in (alstm_pipeline_tests/test_training.py)
    that re-runs the captured work eagerly at each replay, to check the loop's own logic:
    per-seed RNG streams, the undone warm-up, lockstep passes, per-seed early stopping.
    """

    @staticmethod
    def new_stream(device: torch.device):
        return torch.cuda.Stream(device)

    @staticmethod
    def on(stream):
        return torch.cuda.stream(stream)

    @staticmethod
    def wait_for_default(stream) -> None:
        stream.wait_stream(torch.cuda.current_stream())

    @staticmethod
    def synchronize(device: torch.device) -> None:
        torch.cuda.synchronize(device)

    @staticmethod
    def optimizer(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        # capturable: the step count and bias corrections live on the device, so the
        # captured step advances them on every replay.
        return torch.optim.Adam(params, lr=lr, capturable=True)

    @staticmethod
    def capture(work: Callable[[], torch.Tensor], before_each: Callable[[], None]):
        """Warm `work` up on a side stream, then capture it; returns (graph, its static output)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                before_each()
                work()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        before_each()
        with torch.cuda.graph(graph):
            output = work()
        return graph, output


OPS = CudaOps


class _GraphedSeed:
    """One seed's model, Adam, RNG stream, CUDA stream, static id buffer and captured graphs."""

    def __init__(
        self,
        config: TrainConfig,
        initial_model: ALSTMModel | None,
        train: SampleSet,
        valid: SampleSet,
        valid_has_nan: bool,
        device: torch.device,
        log: Callable[[str], None],
        prefix: str,
    ) -> None:
        self.config, self.train, self.valid = config, train, valid
        self.model = build_model(config, initial_model)  # seeds the global RNG first (§7.2)
        # From here on this seed draws only from its own copy of the stream (module doc).
        self.source = torch.Generator()
        self.source.set_state(torch.get_rng_state())
        self.model.to(device)
        self.run = RunLog(config, log, prefix)
        self.stream = OPS.new_stream(device)
        OPS.wait_for_default(self.stream)
        self.ids = torch.zeros(config.batch_size, dtype=torch.int64, device=device)
        params = list(self.model.parameters())
        self.optimizer = OPS.optimizer(params, config.lr)
        start_weights = [p.detach().clone() for p in params]

        # Each work function sets its module mode itself: a capture bakes the mode in, and the
        # CPU stand-in of the tests re-runs the function at every replay.
        def train_step() -> torch.Tensor:
            self.model.train()
            loss = _batch_loss(self.model, train, self.ids, False)  # graphs need NaN-free train labels
            loss.backward()
            torch.nn.utils.clip_grad_value_(params, GRAD_CLIP_VALUE)
            self.optimizer.step()
            return loss.detach()

        def zero_grad() -> None:
            # None, not zeros: the captured backward then writes (not adds) the gradients.
            self.optimizer.zero_grad(set_to_none=True)

        def score(samples: SampleSet, labels_have_nan: bool) -> Callable[[], torch.Tensor]:
            def work() -> torch.Tensor:
                self.model.eval()
                with torch.no_grad():
                    return _batch_loss(self.model, samples, self.ids, labels_have_nan)

            return work

        self.step_graph, self.step_loss = OPS.capture(train_step, zero_grad)
        self.train_score_graph, self.train_score_loss = OPS.capture(score(train, False), lambda: None)
        self.valid_score_graph, self.valid_score_loss = OPS.capture(score(valid, valid_has_nan), lambda: None)
        with torch.no_grad():
            # Undo the warm-up steps: start weights back, Adam's moments and step count to
            # their fresh values (zeros), so the first replay is the run's first step.
            for param, start in zip(params, start_weights, strict=True):
                param.copy_(start)
            for state in self.optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
        OPS.synchronize(device)
        self.losses: torch.Tensor | None = None

    # Each pass: `begin` draws the order and allocates the loss vector, `batch` replays one
    # batch, the caller synchronises and reads `losses` once.
    def begin(self, order: torch.Tensor | None, n_batches: int) -> None:
        # The best-weights copy of the last epoch ran on the default stream: wait for it
        # before this seed's replays overwrite the weights.
        OPS.wait_for_default(self.stream)
        with OPS.on(self.stream):
            self.order = None if order is None else order.to(self.ids.device)
            self.losses = torch.empty(n_batches, dtype=torch.float64, device=self.ids.device)

    def batch(self, i: int, graph: torch.cuda.CUDAGraph, loss: torch.Tensor) -> None:
        size = self.config.batch_size
        with OPS.on(self.stream):
            if self.order is None:  # validation: sample order, ids i*size ..
                torch.arange(i * size, (i + 1) * size, out=self.ids)
            else:
                self.ids.copy_(self.order[i * size : (i + 1) * size])
            graph.replay()
            self.losses[i].copy_(loss)

    def release(self) -> None:
        """Drop the graphs and optimizer (their memory pools) before the model leaves the GPU."""
        del self.step_graph, self.train_score_graph, self.valid_score_graph, self.optimizer
        self.step_loss = self.train_score_loss = self.valid_score_loss = self.losses = self.order = None


def _pass_mean(losses: torch.Tensor) -> float:
    return mean_ignoring_nan(losses)


def train_graphed(
    train: SampleSet,
    valid: SampleSet,
    configs: list[TrainConfig],
    log: Callable[[str], None],
    initial_models: list[ALSTMModel | None],
    device: torch.device,
    prefixes: list[str],
) -> list[TrainResult]:
    """Train one model per config (one per seed; same data and shapes) in lockstep on `device`.

    The caller has checked the inputs and that graphs apply (training.graphs_unusable).
    Returns the runs' TrainResults in `configs` order. The global CPU RNG ends where the
    last seed's single run would leave it.
    """
    if device.type != "cuda" and OPS is CudaOps:
        raise RuntimeError(f"CUDA-graph training needs a CUDA device, got {device}")
    started = time.perf_counter()
    batch_size = configs[0].batch_size
    train, valid = train.to(device), valid.to(device)
    valid_has_nan = bool(torch.isnan(valid.targets()).any())
    n_train, n_valid = len(train), len(valid)
    n_train_batches, n_valid_batches = n_train // batch_size, n_valid // batch_size
    log(
        f"training ALSTM on {device} with CUDA graphs: {n_train} train samples ({n_train_batches} batches of "
        f"{batch_size}), {n_valid} valid samples ({n_valid_batches} batches), up to {configs[0].n_epochs} epochs, "
        f"early stop {configs[0].early_stop}, seeds {[c.seed for c in configs]}"
    )
    seeds = [
        _GraphedSeed(config, initial, train, valid, valid_has_nan, device, log, prefix)
        for config, initial, prefix in zip(configs, initial_models, prefixes, strict=True)
    ]

    def run_pass(live: list[_GraphedSeed], orders, n_batches: int, graph_of, loss_of) -> list[float]:
        for seed, order in zip(live, orders, strict=True):
            seed.begin(order, n_batches)
        for i in range(n_batches):  # lockstep: batch i of every live seed, each on its stream
            for seed in live:
                seed.batch(i, graph_of(seed), loss_of(seed))
        OPS.synchronize(device)
        return [_pass_mean(seed.losses) for seed in live]

    live = list(seeds)
    for _ in range(configs[0].n_epochs):
        if not live:
            break
        epoch_start = time.perf_counter()
        # Draw order per seed, as its single run: training shuffle, train-scoring shuffle
        # (drawn even when the pass is skipped), then the validation loader's base seed.
        train_orders = [shuffled_pass_order(n_train, seed.source) for seed in live]
        step_means = run_pass(live, train_orders, n_train_batches, lambda s: s.step_graph, lambda s: s.step_loss)
        score_orders = [shuffled_pass_order(n_train, seed.source) for seed in live]
        if configs[0].score_train:
            train_losses = run_pass(
                live, score_orders, n_train_batches, lambda s: s.train_score_graph, lambda s: s.train_score_loss
            )
        else:
            train_losses = step_means
        for seed in live:
            sequential_pass_start(seed.source)
        valid_losses = run_pass(
            live, [None] * len(live), n_valid_batches, lambda s: s.valid_score_graph, lambda s: s.valid_score_loss
        )
        seconds = time.perf_counter() - epoch_start
        for seed, train_loss, valid_loss in zip(live, train_losses, valid_losses, strict=True):
            seed.run.record(seed.model, train_loss, valid_loss, seconds)
        live = [seed for seed in live if not seed.run.stopped]  # early stopping per seed

    torch.set_rng_state(seeds[-1].source.get_state())
    results = []
    for seed in seeds:
        seed.release()
        results.append(seed.run.finish(seed.model, device, started, n_train, n_valid, "cuda graphs"))
    return results
