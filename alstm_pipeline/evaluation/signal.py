"""Signal analysis: daily IC / Rank IC of a prediction against the realised label (§8).

Pure pandas/numpy, no Dagster. Both inputs are Series indexed by a two-level
MultiIndex whose first level is the trading day and whose second is the instrument
(Qlib's ``(datetime, instrument)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["calc_ic", "ic_summary", "rolling_ic"]


def calc_ic(pred: pd.Series, label: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Per-day Pearson IC and Spearman Rank IC of ``pred`` against ``label``.

    §8: on each day only the instruments where both values are non-NaN count; Rank IC
    is the Pearson correlation of average ranks (ties share their mean rank) of those
    pairs. A day with fewer than two pairs, or a constant side, gets NaN (kept, so a
    caller sees it; ``ic_summary`` skips it). Returns ``(ic, rank_ic)`` indexed by day,
    covering every day present in either input.
    """
    _check_day_instrument_index(pred, "pred")
    _check_day_instrument_index(label, "label")
    # Outer join, as §8's join on (datetime, instrument): a row missing on one side is a NaN pair.
    pairs = pd.DataFrame({"pred": pred, "label": label})
    all_days = pairs.index.get_level_values(0).unique().sort_values()
    # float64 throughout, like Qlib's correlation (float32 sums of deviations lose ~1e-7).
    pairs = pairs.dropna().astype("float64")
    day = pairs.index.get_level_values(0)

    ic = _pearson_by_day(pairs["pred"], pairs["label"], day)
    # Ranks are taken within the day over the surviving pairs only (§8), so a
    # stock whose label is NaN does not shift the other ranks.
    ranks = pairs.groupby(level=0).rank(method="average")
    rank_ic = _pearson_by_day(ranks["pred"], ranks["label"], day)

    day_name = pred.index.names[0]
    ic = ic.reindex(all_days).rename("IC").rename_axis(day_name)
    rank_ic = rank_ic.reindex(all_days).rename("Rank IC").rename_axis(day_name)
    return ic, rank_ic


def ic_summary(ic: pd.Series, rank_ic: pd.Series) -> dict[str, float]:
    """SigAnaRecord's summary (§8): means and mean/std (ddof 1, not annualised); NaN days skipped."""
    return {
        "IC": float(ic.mean()),
        "ICIR": float(ic.mean() / ic.std(ddof=1)),
        "Rank IC": float(rank_ic.mean()),
        "Rank ICIR": float(rank_ic.mean() / rank_ic.std(ddof=1)),
    }


def rolling_ic(ic: pd.Series, window: int, min_periods: int | None = None) -> pd.Series:
    """Rolling mean of a daily IC series over ``window`` days (NaN days do not count toward ``min_periods``)."""
    if window < 1:
        raise ValueError(f"rolling_ic window must be >= 1, got {window}")
    return ic.rolling(window, min_periods=min_periods).mean()


def _pearson_by_day(x: pd.Series, y: pd.Series, day: pd.Index) -> pd.Series:
    """Pearson correlation of x and y within each day (inputs already NaN-free)."""
    x_dev = x - x.groupby(day).transform("mean")
    y_dev = y - y.groupby(day).transform("mean")
    sums = pd.DataFrame(
        {"xy": x_dev * y_dev, "xx": x_dev * x_dev, "yy": y_dev * y_dev}
    ).groupby(day).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])
    # 0/0 (one pair or a constant side) is NaN; a rounding overshoot past ±1 is clipped.
    corr = corr.where(np.isfinite(corr)).clip(-1.0, 1.0)
    return corr


def _check_day_instrument_index(series: pd.Series, name: str) -> None:
    if not isinstance(series, pd.Series):
        raise TypeError(f"{name} must be a pandas Series, got {type(series).__name__}")
    index = series.index
    if not isinstance(index, pd.MultiIndex) or index.nlevels != 2:
        raise ValueError(
            f"{name} must be indexed by a 2-level MultiIndex (datetime, instrument); "
            f"got index levels {list(index.names)}"
        )
    if index.has_duplicates:
        first = index[index.duplicated()][0]
        raise ValueError(f"{name} has duplicate (datetime, instrument) rows, e.g. {first}")
