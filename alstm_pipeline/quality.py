"""Data-quality rules for raw bars and features, as pure functions.

The Dagster asset checks on ``raw_ohlcv`` and ``alpha158_features`` call these and show
the rows they return, so a failing check says which instrument and date broke which rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# A day whose instrument count falls below this share of the previous trading day's is a
# collapse (a partial file, a broken download), not a normal listing or delisting.
MIN_INSTRUMENT_RATIO = 0.5
# An adjusted close that moves more than this factor in one day is a data error.
MAX_DAILY_PRICE_RATIO = 3.0
# Weekdays the newest bars may trail the last partition (a long holiday weekend) before
# the data counts as stale.
MAX_STALE_WEEKDAYS = 4


def price_order_violations(raw: pd.DataFrame) -> pd.DataFrame:
    """Rows where open or close lies outside [low, high]."""
    bad = (
        (raw["low"] > raw["open"])
        | (raw["low"] > raw["close"])
        | (raw["open"] > raw["high"])
        | (raw["close"] > raw["high"])
    )
    return raw[bad]


def adjusted_price_jumps(bars: pd.DataFrame, previous: pd.DataFrame, ratio: float = MAX_DAILY_PRICE_RATIO) -> pd.DataFrame:
    """Rows whose adjusted close moved by more than ``ratio``× (up or down) from the
    instrument's previous stored close: a split or dividend missing from the factor, or a
    unit change, not a market move (the largest real S&P 500 daily moves are under 2×).

    ``previous`` holds the last close before ``bars`` of each instrument (may be empty).
    """
    closes = pd.concat([previous[["instrument", "date", "close"]], bars[["instrument", "date", "close"]]], ignore_index=True)
    closes = closes.sort_values(["instrument", "date"])
    before = closes.groupby("instrument")["close"].shift(1)
    move = closes["close"] / before
    jumped = closes[(move > ratio) | (move < 1 / ratio)].assign(previous_close=before, ratio=move)
    return jumped[jumped["date"].isin(bars["date"])]


def stale_days(last_ingested: pd.Timestamp | None, expected_last: pd.Timestamp, max_weekdays: int = MAX_STALE_WEEKDAYS) -> int:
    """Weekdays by which the newest ingested day trails ``expected_last`` beyond
    ``max_weekdays`` (0 when fresh): a source that stopped updating."""
    if last_ingested is None:
        return int(np.busday_count(np.datetime64("1970-01-01"), np.datetime64(expected_last.date())))
    lag = int(np.busday_count(np.datetime64(last_ingested.date()), np.datetime64(expected_last.date())))
    return max(0, lag - max_weekdays)


def instrument_count_collapses(counts: pd.Series, ratio: float = MIN_INSTRUMENT_RATIO) -> pd.DataFrame:
    """Trading days whose instrument count fell below ``ratio`` × the previous day's.

    ``counts`` is indexed by date (sorted) and should start one trading day before the
    range being checked, so its first day has a predecessor to compare with.
    """
    previous = counts.shift(1)
    collapsed = counts < ratio * previous
    return pd.DataFrame(
        {"date": counts.index[collapsed], "instruments": counts[collapsed].values,
         "previous_day_instruments": previous[collapsed].astype("int64").values}
    )


def infinite_rows(features: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """(instrument, date) of rows holding ±inf in any of ``columns``."""
    values = features[list(columns)].to_numpy()
    return features.loc[np.isinf(values).any(axis=1), ["instrument", "date"]]


def nan_shares(features: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Share of NaN rows per column (0 for an empty frame)."""
    if features.empty:
        return pd.Series(0.0, index=list(columns))
    return features[list(columns)].isna().mean()


def feature_row_coverage(features: pd.DataFrame, traded: pd.DataFrame) -> tuple[int, int]:
    """(suspended_rows, missing_rows): feature rows with no raw bar that day (an
    instrument inside its span that did not trade, a NaN-input row as in Qlib), and raw
    bars with no feature row (a bug: every traded day must have its features)."""
    keys = ["instrument", "date"]
    matched = len(features[keys].merge(traded[keys], on=keys, how="inner"))
    return len(features) - matched, len(traded) - matched


def as_markdown(rows: pd.DataFrame, limit: int = 20) -> str:
    """The first ``limit`` rows as a markdown table for Dagster metadata."""
    shown = rows.head(limit).copy()
    for column in shown.columns:
        if pd.api.types.is_datetime64_any_dtype(shown[column]):
            shown[column] = shown[column].dt.strftime("%Y-%m-%d")
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    more = [f"\n… and {len(rows) - limit} more rows"] if len(rows) > limit else []
    return "\n".join([header, rule, *body, *more])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
