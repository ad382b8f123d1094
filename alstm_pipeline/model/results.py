"""What every training loop returns and keeps per epoch: TrainResult, SeedsResult, the run log.

Shared by the TS loop (training.py), the flat-row loop (training_flat.py) and the CUDA-graph
loop (graphs.py), and the source of a run's checkpoint card (`build_card`). It imports none
of them, only checkpoint.py (the card's version and code figures) and the modules below it,
so every arrow between the loops, the results and the checkpoints points one way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch

from alstm_pipeline.model.checkpoint import checkpoint_version, code_version
from alstm_pipeline.model.config import TrainConfig
from alstm_pipeline.model.ensemble import ENSEMBLE_METHOD, SeedEnsemble
from alstm_pipeline.model.network import ALSTMModel, parameter_count


@dataclass
class TrainResult:
    """Outcome of one training run (`train_alstm`, `train_alstm_flat`). Epochs are numbered from 0, as in Qlib's log."""

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
    # "eager" or "cuda graphs" (graphs.py); with K seeds on CUDA, epoch_seconds is the
    # wall time of the lockstep epoch of all K.
    engine: str = "eager"
    parameter_count: int = field(init=False)

    def __post_init__(self) -> None:
        self.parameter_count = parameter_count(self.model)

    @property
    def seed(self) -> int | None:
        return self.config.seed

    @property
    def predictor(self) -> ALSTMModel:
        """What to save and score with (as SeedsResult.predictor): the model itself."""
        return self.model

    @property
    def best_valid_loss(self) -> float:
        return self.valid_losses[self.best_epoch]

    @property
    def epochs_run(self) -> int:
        return len(self.valid_losses)

    def card(self, data_ranges=None, code: str | None = None) -> dict[str, object]:
        """The checkpoint card of this run (build_card below)."""
        return build_card(self, data_ranges, code)


@dataclass
class SeedsResult:
    """Outcome of `train_seeds`: one TrainResult per seed and their ensemble (mean score)."""

    config: TrainConfig
    runs: list[TrainResult]  # in config.seed_list order
    ensemble: SeedEnsemble  # members on the CPU, eval mode
    device: str
    engine: str
    wall_seconds: float

    @property
    def seeds(self) -> list[int | None]:
        return [run.seed for run in self.runs]

    @property
    def predictor(self) -> ALSTMModel | SeedEnsemble:
        """What to save and score with: the bare model for one seed (Qlib's keys), else the ensemble."""
        return self.runs[0].model if len(self.runs) == 1 else self.ensemble

    def card(self, data_ranges=None, code: str | None = None) -> dict[str, object]:
        """The checkpoint card of the unit (build_card below)."""
        return build_card(self, data_ranges, code)


def mean_ignoring_nan(losses: torch.Tensor) -> float:
    """np.mean of the batch losses (Qlib averages python floats with np.mean: same number).

    A batch whose labels are all NaN has a NaN loss; it is left out instead of making the
    whole epoch's loss NaN (only possible when a set has NaN labels at all).
    """
    values = losses.cpu().numpy()
    values = values[~np.isnan(values)]
    return float(np.mean(values)) if len(values) else float("nan")


class RunLog:
    """Per-epoch losses, §7.2's strict-improvement early stopping and the best weights of one run."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None], prefix: str = "") -> None:
        self.config, self.log, self.prefix = config, log, prefix
        self.train_losses: list[float] = []
        self.valid_losses: list[float] = []
        self.epoch_seconds: list[float] = []
        self.best_loss, self.best_epoch, self.best_state, self.epochs_since_best = float("inf"), -1, None, 0
        self.stopped = False  # patience ran out (early stop)

    def record(self, model: ALSTMModel, train_loss: float, valid_loss: float, seconds: float) -> bool:
        """Add one epoch; True when training must stop now (patience ran out)."""
        epoch = len(self.valid_losses)
        self.train_losses.append(train_loss)
        self.valid_losses.append(valid_loss)
        self.epoch_seconds.append(seconds)
        improved = valid_loss < self.best_loss  # strict; a NaN loss never improves
        if improved:
            self.best_loss, self.best_epoch, self.epochs_since_best = valid_loss, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.epochs_since_best += 1
        self.log(
            f"{self.prefix}epoch {epoch:3d}  train loss {train_loss:.6f}  valid loss {valid_loss:.6f}  "
            f"{seconds:6.1f}s{'  *best' if improved else ''}"
        )
        self.stopped = self.epochs_since_best >= self.config.early_stop
        return self.stopped

    def finish(
        self, model: ALSTMModel, device: torch.device, started: float, n_train: int, n_valid: int, engine: str
    ) -> TrainResult:
        """Restore the best epoch's weights into `model` (moved to the CPU, eval mode) → TrainResult."""
        if self.best_state is None:
            raise RuntimeError(
                f"{self.prefix}the validation loss was never finite in {len(self.valid_losses)} epochs "
                f"(last {self.valid_losses[-1]}); training diverged, no model to keep"
            )
        model.load_state_dict(self.best_state)
        model.cpu().eval()
        wall_seconds = time.perf_counter() - started
        self.log(
            f"{self.prefix}best epoch {self.best_epoch} (valid loss {self.best_loss:.6f}); {len(self.valid_losses)} "
            f"epochs{' (early stop)' if self.stopped else ''} in {wall_seconds:.1f}s"
        )
        return TrainResult(
            model=model,
            config=self.config,
            best_epoch=self.best_epoch,
            train_losses=self.train_losses,
            valid_losses=self.valid_losses,
            epoch_seconds=self.epoch_seconds,
            device=str(device),
            wall_seconds=wall_seconds,
            stopped_early=self.stopped,
            n_train_samples=n_train,
            n_valid_samples=n_valid,
            train_loss_source="scoring pass" if self.config.score_train else "training batches",
            engine=engine,
        )


def _json_number(value: float) -> float | None:
    """Strict JSON has no NaN/inf: write them as null."""
    return value if math.isfinite(value) else None


def seed_figures(result: TrainResult) -> dict[str, object]:
    """One seed's training figures, as the card's ``per_seed`` entries hold them."""
    return {
        "seed": result.seed,
        "best_epoch": result.best_epoch,
        "best_valid_loss": _json_number(result.best_valid_loss),
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "train_losses": [_json_number(v) for v in result.train_losses],
        "valid_losses": [_json_number(v) for v in result.valid_losses],
        "epoch_seconds": result.epoch_seconds,
        "wall_seconds": result.wall_seconds,
    }


def build_card(
    result: TrainResult | SeedsResult,
    data_ranges: Mapping[str, object] | None = None,
    code: str | None = None,
    when: datetime | None = None,
) -> dict[str, object]:
    """The card of a training run or seed unit: version, config, data ranges, the seeds and
    each seed's figures (``per_seed``), device, engine, timing, code version.

    One seed: the seed's figures are also top-level keys (best_epoch, best_valid_loss,
    epochs_run, stopped_early, train/valid_losses, epoch_seconds), as before seeds existed.
    K > 1 seeds: only ``per_seed``, plus ``ensemble`` saying how the ensemble scores.
    `data_ranges` is free-form and JSON-ready, e.g. ``{"train": ["2008-01-01", "2014-12-31"],
    "valid": [...]}``; the sample counts are added from `result`. `when` (default now) dates
    the version.
    """
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    runs = getattr(result, "runs", None) or [result]
    predictor = result.predictor if hasattr(result, "runs") else result.model
    first = runs[0]
    card: dict[str, object] = {
        "version": checkpoint_version(predictor, when),
        "created_utc": when.isoformat(),
        "config": result.config.to_dict(),
        "data": {
            **dict(data_ranges or {}),
            "n_train_samples": first.n_train_samples,
            "n_valid_samples": first.n_valid_samples,
        },
        "seeds": [run.seed for run in runs],
        "ensemble_size": len(runs),
    }
    if len(runs) == 1:
        single = seed_figures(first)
        del single["seed"], single["wall_seconds"]
        card.update(single)
    else:
        card["ensemble"] = ENSEMBLE_METHOD
    card.update(
        {
            "per_seed": [seed_figures(run) for run in runs],
            "train_loss_source": first.train_loss_source,
            "device": result.device,
            "engine": getattr(result, "engine", "eager"),
            "wall_seconds": result.wall_seconds,
            "code_version": code if code is not None else code_version(),
            "torch_version": torch.__version__,
            "parameter_count": first.parameter_count,
        }
    )
    return card
