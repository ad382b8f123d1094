"""Qlib's ALSTM dataset stage: processors (§5) and TSDataSampler windows (§6), pure pandas/torch."""

from alstm_pipeline.dataset.data_keys import DATA_COLUMNS, infer_frame, learn_frame
from alstm_pipeline.dataset.processing import (
    ALSTM_FEATURES,
    LABEL_COLUMN,
    apply_normalizer,
    fit_normalizer,
    process_features,
    process_label,
)
from alstm_pipeline.dataset.windows import STEP_LEN, SampleSet, build_samples

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
