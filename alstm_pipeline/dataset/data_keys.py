"""Qlib's data keys as frames (§5.1, §5.2): what the windows of each segment are cut from.

- DK_L (learn: train/valid) = processed features joined with the processed label, so only
  rows that survived DropnaLabel exist; label float64 (CSRankNorm'd).
- DK_I (infer: test/prediction) = every processed-feature row with its raw label (NaN allowed).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from alstm_pipeline.dataset.processing import (
    ALSTM_FEATURES,
    KEY_COLUMNS,
    LABEL_COLUMN,
    require_columns,
)

DATA_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, *ALSTM_FEATURES, LABEL_COLUMN)


def _require_unique_keys(frame: pd.DataFrame, what: str) -> None:
    duplicated = frame.duplicated(list(KEY_COLUMNS))
    if duplicated.any():
        first = frame.loc[duplicated, list(KEY_COLUMNS)].iloc[0]
        raise ValueError(
            f"{what} has {int(duplicated.sum())} duplicated (instrument, date) rows, "
            f"e.g. {first['instrument']} on {pd.Timestamp(first['date']).date()}"
        )


def _join(
    features: pd.DataFrame, label: pd.DataFrame, how: str, what: str, columns: Sequence[str]
) -> pd.DataFrame:
    columns = list(columns)
    require_columns(features, (*KEY_COLUMNS, *columns), f"{what}: features frame")
    require_columns(label, (*KEY_COLUMNS, LABEL_COLUMN), f"{what}: label frame")
    _require_unique_keys(features, f"{what}: features frame")
    _require_unique_keys(label, f"{what}: label frame")
    joined = features[[*KEY_COLUMNS, *columns]].merge(
        label[[*KEY_COLUMNS, LABEL_COLUMN]], on=list(KEY_COLUMNS), how=how, validate="one_to_one"
    )
    return joined[[*KEY_COLUMNS, *columns, LABEL_COLUMN]]


def learn_frame(
    processed_features: pd.DataFrame,
    processed_label: pd.DataFrame,
    columns: Sequence[str] = ALSTM_FEATURES,
) -> pd.DataFrame:
    """DK_L: rows present in both frames (the label frame is process_label's output).

    ``columns``: the feature set (ALSTM_FEATURES by default, ALPHA360_NAMES for Alpha360).
    """
    return _join(processed_features, processed_label, "inner", "learn frame", columns)


def infer_frame(
    processed_features: pd.DataFrame,
    raw_label: pd.DataFrame,
    columns: Sequence[str] = ALSTM_FEATURES,
) -> pd.DataFrame:
    """DK_I: every feature row, with its raw label (NaN where the label frame has none)."""
    return _join(processed_features, raw_label, "left", "infer frame", columns)
