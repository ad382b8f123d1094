"""Input checks run before any training step, so bad data fails fast with a clear message.

Choice for sets smaller than one batch: an error, not a silent smaller batch. Qlib's
loaders drop the last partial batch (§7.2), so such a training set would train on
nothing and such a validation set would have no score; shrinking the batch instead would
quietly change the optimisation. The message says how to proceed (lower batch_size or
widen the segment).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import torch

if TYPE_CHECKING:
    from alstm_pipeline.dataset import SampleSet


class TrainingInputError(ValueError):
    """A training or validation set that cannot be trained on; the message names the problem."""


def _sample_text(samples: SampleSet, sample_id: int) -> str:
    instrument = samples.instruments[sample_id]
    date = pd.Timestamp(samples.dates[sample_id]).date()
    return f"{instrument} on {date}"


def check_finite_rows(samples: SampleSet, name: str) -> None:
    """Every feature row used by a window must be finite (NaN/inf would poison the weights)."""
    bad_rows = ~torch.isfinite(samples.rows).all(dim=1)
    if not bool(bad_rows.any()):  # the usual case: one pass over the rows, no index work
        return
    used_bad = bad_rows[samples.index]  # [S, step_len]: window entry reads a bad row
    if not bool(used_bad.any()):
        return  # bad rows that no window reads cannot reach the model
    first_sample = int(torch.nonzero(used_bad.any(dim=1))[0, 0])
    first_step = int(torch.nonzero(used_bad[first_sample])[0, 0])
    bad_row = samples.index[first_sample, first_step]
    bad_col = int(torch.nonzero(~torch.isfinite(samples.rows[bad_row]))[0, 0])
    n_bad_rows = int(torch.unique(samples.index[used_bad]).numel())
    raise TrainingInputError(
        f"{name} set: {n_bad_rows} feature row(s) contain NaN or inf; the first is feature "
        f"column {bad_col}, used by the window of {_sample_text(samples, first_sample)} "
        f"(features must be filled before training, §5.1 Fillna)"
    )


def check_labels(samples: SampleSet, name: str) -> None:
    """Targets may be NaN (skipped by the loss) but not all of them, and never ±inf."""
    targets = samples.targets()
    if bool(torch.isinf(targets).any()):
        first = int(torch.nonzero(torch.isinf(targets))[0, 0])
        raise TrainingInputError(f"{name} set: label is infinite for {_sample_text(samples, first)}")
    if bool(torch.isnan(targets).all()):
        raise TrainingInputError(f"{name} set: all {len(samples)} labels are NaN, nothing to learn from")


def check_training_inputs(train: SampleSet, valid: SampleSet, d_feat: int, batch_size: int) -> None:
    """Raise TrainingInputError for an empty set, a set below one batch, wrong feature
    width, non-finite features or unusable labels; silent on good input."""
    for name, samples in (("train", train), ("valid", valid)):
        if len(samples) == 0:
            raise TrainingInputError(f"{name} set is empty: no samples in its date range")
        if samples.rows.ndim != 2 or samples.rows.shape[1] != d_feat:
            raise TrainingInputError(
                f"{name} set: feature rows have shape {tuple(samples.rows.shape)}, expected [rows, {d_feat}]"
            )
        if len(samples) < batch_size:
            raise TrainingInputError(
                f"{name} set has {len(samples)} samples, fewer than one batch of {batch_size}: "
                f"with drop_last (§7.2) it would {'train on' if name == 'train' else 'be scored on'} "
                f"nothing; lower batch_size or widen the {name} date range"
            )
        check_finite_rows(samples, name)
        check_labels(samples, name)
    train_steps, valid_steps = train.index.shape[1], valid.index.shape[1]
    if train_steps != valid_steps:
        raise TrainingInputError(f"train windows have {train_steps} steps but valid windows {valid_steps}")
