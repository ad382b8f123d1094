"""Qlib's ALSTM dataset stage: processors (§5) and TSDataSampler windows (§6), pure pandas/torch.

The windows (torch tensors) load on first use, so code that only needs the processors or
STEP_LEN (the Dagster definitions) does not import torch.
"""

from alstm_pipeline.dataset.data_keys import DATA_COLUMNS, infer_frame, learn_frame
from alstm_pipeline.dataset.processing import (
    ALSTM_FEATURES,
    LABEL_COLUMN,
    apply_normalizer,
    fit_normalizer,
    process_features,
    process_label,
)
from alstm_pipeline.dataset.constants import STEP_LEN

_WINDOWS = ("SampleSet", "build_samples")


def __getattr__(name: str):
    if name in _WINDOWS:
        from alstm_pipeline.dataset import windows

        return getattr(windows, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ALSTM_FEATURES",
    "DATA_COLUMNS",
    "LABEL_COLUMN",
    "STEP_LEN",
    "SampleSet",
    "apply_normalizer",
    "build_samples",
    "fit_normalizer",
    "infer_frame",
    "learn_frame",
    "process_features",
    "process_label",
]
