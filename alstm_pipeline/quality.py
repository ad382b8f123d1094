"""Data-quality rules for raw bars, as pure functions returning the offending rows.

The Dagster asset checks on ``raw_ohlcv`` call these and show the rows they return, so a
failing check says which instrument and date broke which rule.
"""

from __future__ import annotations

import pandas as pd

# A day whose instrument count falls below this share of the previous trading day's is a
# collapse (a partial file, a broken download), not a normal listing or delisting.
MIN_INSTRUMENT_RATIO = 0.5


def duplicate_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """Rows whose (instrument, date) occurs more than once."""
    return raw[raw.duplicated(["instrument", "date"], keep=False)]


def price_order_violations(raw: pd.DataFrame) -> pd.DataFrame:
    """Rows where open or close lies outside [low, high]."""
    bad = (
        (raw["low"] > raw["open"])
        | (raw["low"] > raw["close"])
        | (raw["open"] > raw["high"])
        | (raw["close"] > raw["high"])
    )
    return raw[bad]


def non_positive_prices(raw: pd.DataFrame) -> pd.DataFrame:
    """Rows with a price that is missing, zero or negative."""
    prices = raw[["open", "high", "low", "close"]]
    return raw[(prices.isna() | (prices <= 0)).any(axis=1)]


def negative_volume(raw: pd.DataFrame) -> pd.DataFrame:
    """Rows with negative or missing volume (zero volume is real and allowed)."""
    return raw[raw["volume"].isna() | (raw["volume"] < 0)]


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
