"""One optimisation step as Qlib's loops make it, and the run's fresh model (§7.2).

Shared by every training loop (training.py, training_flat.py, graphs.py).
"""

from __future__ import annotations

import torch

from alstm_pipeline.model.config import TrainConfig
from alstm_pipeline.model.network import ALSTMModel

GRAD_CLIP_VALUE = 3.0  # §7.2: clip every gradient element to [-3, 3]


def build_model(config: TrainConfig, initial_model: ALSTMModel | None = None) -> ALSTMModel:
    """The run's fresh model on the CPU: torch seeded first (§7.2: init draws), then warm-start weights."""
    if config.seed is not None:
        torch.manual_seed(config.seed)
    model = ALSTMModel(
        d_feat=config.d_feat,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout,
        rnn_type=config.rnn_type,
    )
    if initial_model is not None:
        load_initial_weights(model, initial_model)
    return model


def load_initial_weights(model: ALSTMModel, initial_model: ALSTMModel) -> None:
    if initial_model.architecture() != model.architecture():
        raise ValueError(
            f"warm start: the initial model's architecture {initial_model.architecture()} "
            f"differs from the config's {model.architecture()}"
        )
    model.load_state_dict({k: v.detach().cpu() for k, v in initial_model.state_dict().items()})


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


def optimizer_step(model: ALSTMModel, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One update as Qlib's train_epoch makes it (§7.2): backward, clip every gradient
    element to ±GRAD_CLIP_VALUE, Adam step."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), GRAD_CLIP_VALUE)
    optimizer.step()
