"""Qlib's ALSTM processors: FilterCol → RobustZScoreNorm → Fillna, and DropnaLabel → CSRankNorm.

Pure pandas/numpy (semantics doc §3, §5.1). The normaliser is split into a fit step that
returns a small tidy statistics frame (stored by the Dagster layer, so inference reuses the
training-time statistics) and an apply step.

The feature columns are a parameter: the Alpha158 configuration keeps the 20
ALSTM_FEATURES (FilterCol, the default), the Alpha360 configuration all 360 columns (its
YAML has no FilterCol; see docs/alpha360.md). Everything else is the same chain.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# §3: FilterCol keeps the frame's (Alpha158) order, not the YAML list's order.
ALSTM_FEATURES: tuple[str, ...] = (
    "KLEN", "KLOW", "ROC60", "STD5",
    "RSQR5", "RSQR10", "RSQR20", "RSQR60",
    "RESI5", "RESI10",
    "CORR5", "CORR10", "CORR20", "CORR60",
    "CORD5", "CORD10", "CORD60",
    "VSTD5", "WVMA5", "WVMA60",
)

KEY_COLUMNS: tuple[str, str] = ("instrument", "date")
LABEL_COLUMN = "LABEL0"
STATS_COLUMNS: tuple[str, str, str] = ("feature", "median", "scale")
# Qlib without a $vwap field yields all-NaN VWAP lags (§1.3, golden alpha360 README): its
# RobustZScoreNorm then has a NaN median and Fillna makes the column 0. Only these columns
# may be all NaN in the fit window; any other all-NaN column is a data problem and fails.
ALL_NAN_ALLOWED: frozenset[str] = frozenset(f"VWAP{lag}" for lag in range(60))

# §5.1 RobustZScoreNorm constants.
_MAD_TO_STD = np.float32(1.4826)
_EPS = 1e-12
_CLIP = 3
# §5.1 CSRankNorm constants.
_RANK_CENTRE = 0.5
_RANK_SCALE = 3.46


def require_columns(frame: pd.DataFrame, columns, what: str) -> None:
    """Raise a ValueError naming the columns of `columns` that `frame` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing columns {missing} (has {list(frame.columns)[:12]}...)")


def _date_range_text(dates: pd.Series) -> str:
    if len(dates) == 0:
        return "no rows at all"
    return f"{pd.Timestamp(dates.min()).date()}..{pd.Timestamp(dates.max()).date()}"


def fit_normalizer(
    features: pd.DataFrame, fit_start, fit_end, columns: Sequence[str] = ALSTM_FEATURES
) -> pd.DataFrame:
    """Fit RobustZScoreNorm on the rows dated within [fit_start, fit_end] (inclusive).

    Every row in the window counts, including rows whose label is NaN (§5.1). Per feature:
    ``median = nanmedian(x)`` and ``scale = (nanmedian(|x - median|) + 1e-12) * 1.4826``,
    all in float32 as Qlib does. Returns a frame with columns ``feature, median, scale``
    (float32), one row per name of ``columns`` (default: the 20 ALSTM_FEATURES), in that
    order. A column of ALL_NAN_ALLOWED that is all NaN gets NaN statistics (Qlib's result).
    """
    columns = list(columns)
    require_columns(features, (*KEY_COLUMNS, *columns), "features frame")
    fit_start, fit_end = pd.Timestamp(fit_start), pd.Timestamp(fit_end)
    dates = pd.to_datetime(features["date"])
    in_window = ((dates >= fit_start) & (dates <= fit_end)).to_numpy()
    if not in_window.any():
        raise ValueError(
            f"fit window {fit_start.date()}..{fit_end.date()} has no rows; "
            f"the features cover {_date_range_text(dates)}"
        )
    values = features[columns].to_numpy(dtype=np.float32)[in_window]
    all_nan = np.isnan(values).all(axis=0)
    names = [name for name, bad in zip(columns, all_nan) if bad and name not in ALL_NAN_ALLOWED]
    if names:
        raise ValueError(
            f"features {names} are all NaN in the fit window {fit_start.date()}..{fit_end.date()}"
        )
    # float32 throughout (§1.5/§5.1): nanmedian of float32 stays float32, and the Python
    # scalars 1e-12 / 1.4826 do not promote (the 1e-12 only matters when the MAD is 0).
    median = np.full(len(columns), np.nan, dtype=np.float32)
    scale = np.full(len(columns), np.nan, dtype=np.float32)
    # Columns are independent, so the all-NaN ones are simply left NaN (no numpy warning).
    fit = ~all_nan
    median[fit] = np.nanmedian(values[:, fit], axis=0)
    mad = np.nanmedian(np.abs(values[:, fit] - median[fit]), axis=0)
    scale[fit] = (mad + _EPS) * _MAD_TO_STD
    return pd.DataFrame(
        {
            "feature": columns,
            "median": median,
            "scale": scale,
        }
    )


def _stats_vectors(stats: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    require_columns(stats, STATS_COLUMNS, "normalizer statistics")
    by_name = stats.set_index("feature")
    missing = [name for name in columns if name not in by_name.index]
    if missing:
        raise ValueError(f"normalizer statistics lack features {missing[:12]}")
    ordered = by_name.loc[list(columns)]
    # Stored as DOUBLE or REAL, a float32 statistic round-trips exactly back to float32.
    return (
        ordered["median"].to_numpy(dtype=np.float32),
        ordered["scale"].to_numpy(dtype=np.float32),
    )


def apply_normalizer(
    features: pd.DataFrame, stats: pd.DataFrame, columns: Sequence[str] = ALSTM_FEATURES
) -> pd.DataFrame:
    """FilterCol → RobustZScoreNorm transform → clip to [-3, 3] → Fillna(0) (§5.1).

    Keeps the input's row order. Returns ``instrument, date`` and ``columns`` (default the
    20 ALSTM features in Alpha158 order), float32 (no NaN left).
    """
    columns = list(columns)
    require_columns(features, (*KEY_COLUMNS, *columns), "features frame")
    median, scale = _stats_vectors(stats, columns)
    values = features[columns].to_numpy(dtype=np.float32)
    # float32 arithmetic (§5.1); clip maps ±inf to ±3 and leaves NaN, which Fillna makes 0
    # (also a NaN median, the all-NaN VWAP lags of Alpha360).
    normalised = np.clip((values - median) / scale, -_CLIP, _CLIP)
    normalised[np.isnan(normalised)] = 0.0
    out = pd.DataFrame(normalised, columns=columns, index=features.index)
    out.insert(0, "date", features["date"].to_numpy())
    out.insert(0, "instrument", features["instrument"].to_numpy())
    return out.reset_index(drop=True)


def process_features(
    features: pd.DataFrame, fit_start, fit_end, columns: Sequence[str] = ALSTM_FEATURES
) -> pd.DataFrame:
    """The infer-side chain in one call: fit RobustZScoreNorm on the window, then apply it.

    ``columns``: ALSTM_FEATURES (Alpha158 configuration, default) or ALPHA360_NAMES.
    """
    return apply_normalizer(features, fit_normalizer(features, fit_start, fit_end, columns), columns)


def process_label(label: pd.DataFrame) -> pd.DataFrame:
    """DropnaLabel → CSRankNorm (§5.1): per date, ``(average rank / count - 0.5) * 3.46``.

    Input: ``instrument, date, LABEL0``. Output: the rows with a label, same columns,
    LABEL0 as float64 (ranks are 1-based with ties averaged; count = labels of that date).
    """
    require_columns(label, (*KEY_COLUMNS, LABEL_COLUMN), "label frame")
    labelled = label.loc[label[LABEL_COLUMN].notna(), [*KEY_COLUMNS, LABEL_COLUMN]]
    # pandas' pct rank = average rank / number of non-NaN values in the group: exactly §5.1.
    pct = labelled.groupby("date", sort=False)[LABEL_COLUMN].rank(method="average", pct=True)
    pct = pct.astype(np.float64)
    out = labelled[list(KEY_COLUMNS)].copy()
    out[LABEL_COLUMN] = (pct - _RANK_CENTRE) * _RANK_SCALE
    return out.reset_index(drop=True)
