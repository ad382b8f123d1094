"""Alpha158 / Alpha360 features and LABEL0 (pure numpy/pandas, no Dagster)."""

from alstm_pipeline.features.alpha158 import (
    ALPHA158_NAMES,
    FEATURE_INPUTS,
    LABEL_LOOKAHEAD_ROWS,
    LOOKBACK_ROWS,
    compute_alpha158,
    compute_label,
)
from alstm_pipeline.features.alpha360 import (
    ALPHA360_LOOKBACK_ROWS,
    ALPHA360_NAMES,
    compute_alpha360,
)

__all__ = [
    "ALPHA158_NAMES",
    "ALPHA360_LOOKBACK_ROWS",
    "ALPHA360_NAMES",
    "FEATURE_INPUTS",
    "LABEL_LOOKAHEAD_ROWS",
    "LOOKBACK_ROWS",
    "compute_alpha158",
    "compute_alpha360",
    "compute_label",
]
