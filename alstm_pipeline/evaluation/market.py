"""The market a backtest trades in: daily closes as a dense day × instrument grid (§9.2).

``prices`` is a long frame with columns ``date``, ``instrument``, ``close`` and
optionally ``factor`` and ``change``:

- ``close`` is the *adjusted* close (Qlib's ``$close`` = raw close × factor) and is
  both the deal price and the mark-to-market price;
- ``factor`` converts adjusted units to raw shares (raw shares = amount × factor), used
  only for lot rounding; absent → 1 (``close`` is then taken as the traded price);
- ``change`` is the raw close-to-close return, used only for price limits; absent or
  NaN never triggers a limit (§9.2). ``raw_change`` derives it when a source has none;
- ``open`` (optional) is the adjusted open, the deal price when a backtest deals at the open.

The calendar is the sorted set of dates present in ``prices``; a missing row or a NaN
close on a calendar day means "no quote": the stock cannot trade that day (§9.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["MarketPanel", "benchmark_returns", "equal_weight_benchmark", "raw_change", "round_to_lots"]

_REQUIRED_PRICE_COLUMNS = ("date", "instrument", "close")


@dataclass(frozen=True)
class MarketPanel:
    """Dense price grid: rows are calendar days, columns are instruments (both sorted)."""

    dates: pd.DatetimeIndex
    instruments: pd.Index
    close: np.ndarray  # float64 [day, instrument], NaN = no quote
    factor: np.ndarray  # float64 [day, instrument]
    change: np.ndarray | None  # float64 [day, instrument] or None when not supplied
    open: np.ndarray | None = None  # float64 [day, instrument] or None when not supplied

    @classmethod
    def from_prices(cls, prices: pd.DataFrame) -> MarketPanel:
        """Validate a long price frame and pivot it to the dense grid."""
        frame = _validated_prices(prices)
        dates = pd.DatetimeIndex(frame["date"].unique()).sort_values()
        instruments = pd.Index(frame["instrument"].unique()).sort_values()
        rows = dates.get_indexer(frame["date"])
        cols = instruments.get_indexer(frame["instrument"])

        def grid(column: str, fill: float) -> np.ndarray:
            values = np.full((len(dates), len(instruments)), fill, dtype="float64")
            values[rows, cols] = frame[column].to_numpy(dtype="float64")
            return values

        close = grid("close", np.nan)
        factor = grid("factor", np.nan) if "factor" in frame else np.ones_like(close)
        change = grid("change", np.nan) if "change" in frame else None
        opens = grid("open", np.nan) if "open" in frame else None
        return cls(dates=dates, instruments=instruments, close=close, factor=factor, change=change, open=opens)

    def column_of(self, instrument: str) -> int:
        """Column position of ``instrument`` (KeyError if the panel has no prices for it)."""
        return self.instruments.get_loc(instrument)

    def is_tradable(self, day: int, col: int, limit_threshold: float | None, direction: str | None = None) -> bool:
        """§9.2: a stock trades if it has a close that day and is not at a price limit.

        Qlib's exchange blocks buying at the up limit (change ≥ threshold) and selling at
        the down limit (change ≤ −threshold); ``direction`` None asks for both at once,
        which is what the strategy's ``forbid_all_trade_at_limit`` (default) does.
        """
        if np.isnan(self.close[day, col]):
            return False
        if limit_threshold is None or self.change is None:
            return True
        change = self.change[day, col]
        # A NaN change compares False both ways, so it never triggers the limit (§9.2).
        up, down = change >= limit_threshold, change <= -limit_threshold
        if direction == "buy":
            return not up
        if direction == "sell":
            return not down
        return not (up or down)

    def deal_price(self, day: int, col: int, which: str = "close") -> float:
        """The price of a deal on ``day``: the close, or the open when asked.

        Qlib's exchange falls back to the close when the deal price is missing or not
        positive, so an open-price backtest deals a stock without an open at its close.
        """
        close = self.close[day, col]
        if which == "close":
            return close
        if self.open is None:
            raise ValueError("deal_price 'open' needs an 'open' column in prices")
        price = self.open[day, col]
        return price if price > 1e-8 else close  # NaN compares False: fallback too


def round_to_lots(amount: float, factor: float, trade_unit: float | None) -> float:
    """§9.2 lot rounding: whole ``trade_unit`` lots of *raw* shares, expressed in adjusted units.

    raw shares = amount × factor; the +0.1 raw share absorbs float error just below a
    lot boundary. ``trade_unit`` None means fractional shares: no rounding.
    """
    if trade_unit is None:
        return amount
    return ((amount * factor + 0.1) // trade_unit) * trade_unit / factor


def equal_weight_benchmark(prices: pd.DataFrame) -> pd.Series:
    """Daily return of an equal-weight portfolio of every instrument in ``prices``.

    Each instrument's return on day t is close_t / close_(t−1) − 1 over consecutive
    calendar days (NaN when either close is missing, so a suspension or a listing day
    contributes nothing); the benchmark is the mean of the available returns, and 0 on a
    day with none (e.g. the first calendar day), as §9.4 turns a NaN bench into 0.
    Indexed by date, named ``bench``.
    """
    panel = MarketPanel.from_prices(prices)
    previous = np.vstack([np.full((1, panel.close.shape[1]), np.nan), panel.close[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = panel.close / previous - 1.0
    counts = np.isfinite(returns).sum(axis=1)
    sums = np.where(np.isfinite(returns), returns, 0.0).sum(axis=1)
    bench = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return pd.Series(bench, index=panel.dates.rename("date"), name="bench")


def benchmark_returns(prices: pd.DataFrame, benchmark: str | Sequence[str] | None = None) -> pd.Series:
    """The benchmark's daily return, indexed by date, named ``bench``.

    ``benchmark`` None: the equal-weight portfolio of every instrument in ``prices``.
    A code (e.g. ``^GSPC`` or ``SH000300``): that instrument's close_t / close_(t−1) − 1 over
    consecutive calendar days, 0 where either close is missing (Qlib: ``$close/Ref($close,1)-1``,
    NaN → 0). A list of codes: the mean of their returns that day (Qlib's list benchmark).
    A code without prices is an error naming it: a silent 0 benchmark would flatter every
    excess-return figure.
    """
    if benchmark is None:
        return equal_weight_benchmark(prices)
    codes = [benchmark] if isinstance(benchmark, str) else list(benchmark)
    frame = _validated_prices(prices)
    present = set(frame.loc[frame["close"].notna(), "instrument"])
    missing = [code for code in codes if code not in present]
    if missing:
        known = sorted(present)
        raise ValueError(
            f"benchmark instrument(s) {missing} have no prices; the price data holds {len(known)} "
            f"instrument(s), e.g. {known[:5]}. Add the index series to the data or use the equal-weight universe"
        )
    panel = MarketPanel.from_prices(frame)
    closes = panel.close[:, panel.instruments.get_indexer(codes)]
    previous = np.vstack([np.full((1, len(codes)), np.nan), closes[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = closes / previous - 1.0
    counts = np.isfinite(returns).sum(axis=1)
    sums = np.where(np.isfinite(returns), returns, 0.0).sum(axis=1)
    bench = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return pd.Series(bench, index=panel.dates.rename("date"), name="bench")


def raw_change(prices: pd.DataFrame) -> pd.Series:
    """Qlib's ``$change`` rebuilt from prices: the raw close over the previous raw close − 1.

    raw close = close / factor (the traded price, §1.2). Like the Yahoo collector, the
    previous close is the last *available* one, so the day after a suspension compares
    with the close before it; a row without a close has NaN change. Aligned with
    ``prices``' index, for ``prices.assign(change=raw_change(prices))`` when a source
    stores no change field.
    """
    frame = _validated_prices(prices)
    raw = frame["close"] / (frame["factor"] if "factor" in frame else 1.0)
    order = frame.assign(_raw=raw).sort_values(["instrument", "date"])
    last = order.groupby("instrument")["_raw"].transform(lambda s: s.ffill().shift(1))
    change = order["_raw"] / last - 1.0
    return change.reindex(frame.index).rename("change")


def _validated_prices(prices: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(prices, pd.DataFrame):
        raise TypeError(f"prices must be a pandas DataFrame, got {type(prices).__name__}")
    missing = [c for c in _REQUIRED_PRICE_COLUMNS if c not in prices.columns]
    if missing:
        raise ValueError(f"prices is missing column(s) {missing}; it has {list(prices.columns)}")
    if prices.empty:
        raise ValueError("prices is empty: a backtest needs at least one day of closes")
    columns = [c for c in ("date", "instrument", "close", "factor", "change", "open") if c in prices.columns]
    frame = prices[columns].copy()
    frame["date"] = pd.to_datetime(frame["date"])
    duplicated = frame.duplicated(["date", "instrument"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise ValueError(f"prices has duplicate rows for {row['instrument']} on {row['date']:%Y-%m-%d}")
    bad_close = frame["close"] <= 0
    if bad_close.any():
        row = frame[bad_close].iloc[0]
        raise ValueError(
            f"prices has a non-positive close ({row['close']}) for {row['instrument']} on {row['date']:%Y-%m-%d}"
        )
    if "factor" in frame:
        bad_factor = frame["close"].notna() & ~(frame["factor"] > 0)
        if bad_factor.any():
            row = frame[bad_factor].iloc[0]
            raise ValueError(
                f"prices has a missing or non-positive factor ({row['factor']}) where a close exists: "
                f"{row['instrument']} on {row['date']:%Y-%m-%d}"
            )
    return frame
