"""One-line text charts (sparklines) of a series, for metadata the UI shows inline.

Dagster's asset page shows a text metadata value as it is, while a PNG is markdown that
opens behind a "[Show Markdown]" link (the UI renders only markdown under 1,000 characters
inline, and an embedded image is far longer). So the curves a user looks for first — loss
per epoch, equity, rolling IC — are also given as a sparkline with their first, last,
lowest and highest values. Pure: numpy/pandas only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

BLOCKS = "▁▂▃▄▅▆▇█"
# About the width of the metadata table's value column on a laptop screen (1,600 px wide).
WIDTH = 32


def sparkline(values: Sequence[float] | pd.Series, width: int = WIDTH) -> str:
    """``values`` as at most ``width`` block characters, lowest ▁ to highest █; a series
    longer than ``width`` is averaged over consecutive equal bins. Missing values are
    left out; an empty or all-missing series gives ""."""
    series = pd.Series(values, dtype="float64").dropna()
    if series.empty:
        return ""
    points = series.to_numpy()
    if len(points) > width:
        points = np.array([chunk.mean() for chunk in np.array_split(points, width)])
    low, high = float(points.min()), float(points.max())
    if high == low:
        return BLOCKS[len(BLOCKS) // 2 - 1] * len(points)
    levels = np.round((points - low) / (high - low) * (len(BLOCKS) - 1)).astype(int)
    return "".join(BLOCKS[level] for level in levels)


def described(values: Sequence[float] | pd.Series, digits: int = 4, width: int = WIDTH) -> str:
    """First → last value, the range and the sparkline last, e.g.
    ``+0.0000 → +0.4210 (min …, max …; 1082 points) ▁▃▆█``: the UI wraps text at spaces,
    so the sparkline, one unbreakable word, moves whole to its own line in a narrow column."""
    series = pd.Series(values, dtype="float64").dropna()
    if series.empty:
        return "no values"
    fmt = f"{{:+.{digits}f}}"
    return (f"{fmt.format(series.iloc[0])} → {fmt.format(series.iloc[-1])} (min {fmt.format(series.min())}, "
            f"max {fmt.format(series.max())}; {len(series)} points) {sparkline(series, width)}")
