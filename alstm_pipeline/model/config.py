"""Training hyper-parameters and the two named profiles ("benchmark" and "quick").

"benchmark" is Qlib's ALSTM benchmark configuration (semantics doc §7.2): up to 200 epochs,
early stop after 10 epochs without a strictly better validation loss. "quick" caps the
run at 20 epochs with patience 5 and skips the logging-only train scoring pass, for
development runs and the bundled sample; its weights for the epochs it runs are the same
as the benchmark profile's (same seed, same RNG draws), only the stopping point differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch

from alstm_pipeline.model.network import RNN_TYPES

DEVICE_CHOICES = ("auto", "cpu", "cuda")
# Qlib's benchmark table is mean ± std over 20 seeds (§10); more is refused as a likely typo.
MAX_SEEDS = 20


def _seed_problems(seed, seeds) -> list[str]:
    if not isinstance(seeds, tuple):
        return [f"seeds must be a sequence of ints, got {seeds!r}"]
    if not seeds:
        return []
    problems = []
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        problems.append(f"seeds must be ints, got {list(seeds)}")
    elif len(set(seeds)) != len(seeds):
        problems.append(f"seeds must be distinct (a repeated seed trains the same model twice), got {list(seeds)}")
    if len(seeds) > MAX_SEEDS:
        problems.append(f"at most {MAX_SEEDS} seeds (Qlib's benchmark uses 20), got {len(seeds)}")
    if seed is not None and seed != seeds[0]:
        problems.append(f"seed {seed} disagrees with seeds {list(seeds)}: set seed=None or seeds[0]")
    return problems


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one ALSTM training run (defaults: Qlib's benchmark YAML, §7.2)."""

    d_feat: int = 20
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    n_epochs: int = 200
    lr: float = 1e-3
    batch_size: int = 800
    early_stop: int = 10
    loss: str = "mse"
    rnn_type: str = "GRU"
    # None: not reproducible, like Qlib's YAML (§7.2). An int seeds torch before the model is built.
    seed: int | None = None
    # The seeds trained as one unit (train_seeds): one model per seed, the ensemble predicts
    # their mean. Empty = the single run of `seed`. When set, `seed` must be None or seeds[0].
    seeds: tuple[int, ...] = ()
    # "auto" = CUDA when available, else CPU.
    device: str = "auto"
    # Qlib re-scores the whole train set after every epoch only to log it (§7.2). False skips
    # that computation but still draws its random numbers, so the weights do not change;
    # the logged train loss is then the mean loss of the epoch's training batches.
    score_train: bool = True
    # On CUDA, replay each training step and scoring batch as a CUDA graph (ignored on CPU).
    # False runs the eager loop on the GPU too (the parity reference).
    cuda_graphs: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.seeds, tuple):  # lists from JSON/Dagster config; frozen, hence setattr
            object.__setattr__(self, "seeds", tuple(self.seeds) if isinstance(self.seeds, Sequence) else self.seeds)
        problems += _seed_problems(self.seed, self.seeds)
        if self.loss != "mse":
            problems.append(f"loss must be 'mse' (the only loss Qlib's ALSTM supports), got {self.loss!r}")
        if self.rnn_type.upper() not in RNN_TYPES:
            problems.append(f"rnn_type must be one of {RNN_TYPES}, got {self.rnn_type!r}")
        if self.device not in DEVICE_CHOICES:
            problems.append(f"device must be one of {DEVICE_CHOICES}, got {self.device!r}")
        for name in ("d_feat", "hidden_size", "num_layers", "n_epochs", "batch_size", "early_stop"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict (for the checkpoint card and Dagster metadata)."""
        values = asdict(self)
        values["seeds"] = list(self.seeds)
        return values

    @property
    def seed_list(self) -> tuple[int | None, ...]:
        """The seeds of the unit: `seeds`, or the single `seed` (None = unseeded) when empty."""
        return self.seeds or (self.seed,)

    def for_seed(self, seed: int | None) -> TrainConfig:
        """The single-run config of one member seed (what `train_alstm` gets for it)."""
        return replace(self, seed=seed, seeds=())

    @classmethod
    def profile(cls, name: str, **overrides) -> TrainConfig:
        """Same as `profile_config`: the named profile with `overrides` applied."""
        return profile_config(name, **overrides)


BENCHMARK_PROFILE = TrainConfig()
QUICK_PROFILE = TrainConfig(n_epochs=20, early_stop=5, score_train=False)
PROFILES: dict[str, TrainConfig] = {"benchmark": BENCHMARK_PROFILE, "quick": QUICK_PROFILE}
# workflow_config_alstm_Alpha360.yaml: d_feat 6 (× 60 lags), early_stop 20, rest as above
# (its rnn_type LSTM is swallowed by Qlib's **kwargs: the model is a GRU; docs/alpha360.md).
# Trained by training_flat.train_alstm_flat, not train_alstm; not in PROFILES on purpose.
ALPHA360_PROFILE = TrainConfig(d_feat=6, early_stop=20)


def profile_config(name: str, **overrides) -> TrainConfig:
    """The named profile ("benchmark" or "quick") with `overrides` applied (e.g. seed=0)."""
    if name not in PROFILES:
        raise ValueError(f"unknown training profile {name!r}; choose one of {sorted(PROFILES)}")
    return replace(PROFILES[name], **overrides)


def resolve_device(device: str) -> torch.device:
    """"auto" → CUDA when available else CPU; "cuda" without a GPU is an error, not a silent CPU run."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA GPU")
    if device not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {device!r}")
    return torch.device(device)
