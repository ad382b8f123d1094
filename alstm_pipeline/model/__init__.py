"""Qlib's ALSTM: network (§7.1), training loops (§7.2; flat rows: docs/alpha360.md), prediction, checkpoints. Pure torch."""

from alstm_pipeline.model.checkpoint import (
    CARD_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    checkpoint_version,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from alstm_pipeline.model.checks import TrainingInputError
from alstm_pipeline.model.config import (
    ALPHA360_PROFILE,
    BENCHMARK_PROFILE,
    MAX_SEEDS,
    PROFILES,
    QUICK_PROFILE,
    TrainConfig,
    profile_config,
    resolve_device,
)
from alstm_pipeline.model.ensemble import ENSEMBLE_METHOD, SeedEnsemble
from alstm_pipeline.model.inference import predict, predict_per_seed
from alstm_pipeline.model.network import ALSTMModel, parameter_count
from alstm_pipeline.model.plots import plot_losses
from alstm_pipeline.model.results import SeedsResult, TrainResult, build_card, seed_figures
from alstm_pipeline.model.training import train_alstm, train_seeds
from alstm_pipeline.model.training_flat import FlatSet, flat_set, predict_flat, train_alstm_flat

__all__ = [
    "ALPHA360_PROFILE",
    "ALSTMModel",
    "BENCHMARK_PROFILE",
    "CARD_FILE",
    "CheckpointError",
    "FlatSet",
    "ENSEMBLE_METHOD",
    "MAX_SEEDS",
    "PROFILES",
    "QUICK_PROFILE",
    "SeedEnsemble",
    "SeedsResult",
    "TrainConfig",
    "TrainResult",
    "TrainingInputError",
    "WEIGHTS_FILE",
    "build_card",
    "checkpoint_version",
    "flat_set",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "parameter_count",
    "plot_losses",
    "predict",
    "predict_flat",
    "predict_per_seed",
    "profile_config",
    "resolve_device",
    "save_checkpoint",
    "seed_figures",
    "train_alstm",
    "train_alstm_flat",
    "train_seeds",
]
