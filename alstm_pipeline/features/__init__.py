"""Alpha158 features and LABEL0 (pure numpy/pandas, no Dagster)."""

from alstm_pipeline.features.alpha158 import (
    ALPHA158_NAMES,
    FEATURE_INPUTS,
    LABEL_LOOKAHEAD_ROWS,
    LOOKBACK_ROWS,
    compute_alpha158,
    compute_label,
)

__all__ = [
    "ALPHA158_NAMES",
    "FEATURE_INPUTS",
    "LABEL_LOOKAHEAD_ROWS",
    "LOOKBACK_ROWS",
    "compute_alpha158",
    "compute_label",
]
