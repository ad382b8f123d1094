"""Scores for every sample of a set (semantics doc §7.3): eval mode, in order, no drop_last.

A SeedEnsemble scores each member as a model alone and averages (ensemble.py); eager on
every device: prediction runs once per segment (0.19 s for the 400-stock test segment on
an H100, DESIGN.md), so it does not need the training loop's CUDA graphs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from alstm_pipeline.model.checks import check_finite_rows
from alstm_pipeline.model.config import resolve_device
from alstm_pipeline.model.ensemble import SeedEnsemble, members_of
from alstm_pipeline.model.network import ALSTMModel

if TYPE_CHECKING:
    from alstm_pipeline.dataset import SampleSet


def predict(
    model: ALSTMModel | SeedEnsemble, samples: SampleSet, batch_size: int = 800, device: str = "auto"
) -> np.ndarray:
    """float32 score of every sample, in the SampleSet's (Qlib's) order; NaN labels are fine.

    Every sample is scored, the last partial batch included (§7.3). An empty set gives an
    empty array (a market holiday has no samples). The model's device and train/eval mode
    are restored afterwards. An ensemble's score is the float64 mean of its members'
    float32 scores, as float32.
    """
    if not isinstance(model, SeedEnsemble):
        return _predict_model(model, samples, batch_size, device)
    per_seed = predict_per_seed(model, samples, batch_size, device)
    return np.mean(np.stack(list(per_seed.values())).astype(np.float64), axis=0).astype(np.float32)


def predict_per_seed(
    model: ALSTMModel | SeedEnsemble, samples: SampleSet, batch_size: int = 800, device: str = "auto"
) -> dict[int | None, np.ndarray]:
    """seed → float32 scores of that seed's model (a bare model: {None: scores}), seeds in order."""
    return {seed: _predict_model(member, samples, batch_size, device) for seed, member in members_of(model)}


@torch.inference_mode()
def _predict_model(model: ALSTMModel, samples: SampleSet, batch_size: int, device: str) -> np.ndarray:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if len(samples) == 0:
        return np.empty(0, dtype=np.float32)
    if samples.rows.shape[1] != model.d_feat:
        raise ValueError(
            f"feature rows have {samples.rows.shape[1]} columns but the model expects {model.d_feat}"
        )
    check_finite_rows(samples, "prediction")
    target_device = resolve_device(device)
    was_training, original_device = model.training, next(model.parameters()).device
    model.to(target_device).eval()
    samples = samples.to(target_device)
    try:
        scores = [
            model(samples.windows(slice(start, start + batch_size)))
            for start in range(0, len(samples), batch_size)
        ]
        return torch.cat(scores).cpu().numpy().astype(np.float32, copy=False)
    finally:
        model.to(original_device).train(was_training)
