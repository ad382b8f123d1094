"""Daily TopkDropout backtest at the close, with Qlib's costs and accounting (§9.2–§9.4).

Timeline: the scores dated t−1 decide the orders of day t, dealt at day t's close,
sells first. The backtest covers the calendar days (the dates of ``prices``) from the
first to the last score date, so the first day has no orders (no earlier signal) and
the last day's scores are never used, as in Qlib's PortAnaRecord over the test segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alstm_pipeline.evaluation.market import MarketPanel, benchmark_returns, round_to_lots
from alstm_pipeline.evaluation.risk import TRADING_DAYS_PER_YEAR, risk_analysis
from alstm_pipeline.evaluation.topk_dropout import TopkDropoutConfig, plan_topk_dropout

__all__ = ["BacktestResult", "backtest_summary", "run_topk_dropout"]

DAILY_COLUMNS = ["date", "account_value", "cash", "return", "cost", "turnover", "bench", "n_holdings"]
TRADE_COLUMNS = ["date", "instrument", "direction", "amount", "price", "value", "cost"]
POSITION_COLUMNS = ["date", "instrument", "amount", "price", "value", "weight"]


@dataclass(frozen=True)
class BacktestResult:
    """What a backtest produced.

    daily: one row per backtest day —
        account_value  cash + Σ amount·price after the close (§9.4),
        return         (V_t − V_(t−1) + cost paid_t) / V_(t−1): the return before costs,
        cost           costs paid on day t / V_(t−1),
        turnover       value traded on day t (buys + sells) / V_(t−1),
        bench          the benchmark's return that day (NaN → 0),
        n_holdings     names held after the close.
    trades: every executed deal, in execution order (direction "sell" / "buy"; amount in
        adjusted units; price = the deal price; value = amount·price; cost paid).
    positions: the holdings after each day's close, marked at their last known close;
        weight = value / account_value, Qlib's position weight (share of stock + cash).
    """

    daily: pd.DataFrame
    trades: pd.DataFrame
    positions: pd.DataFrame
    config: TopkDropoutConfig


@dataclass
class _Holding:
    amount: float  # adjusted units: raw shares = amount × factor
    price: float  # last known close; a suspended or delisted stock keeps it (§9.4)


@dataclass
class _Book:
    cash: float
    holdings: dict[str, _Holding] = field(default_factory=dict)  # insertion = holding order

    def value(self) -> float:
        return self.cash + sum(h.amount * h.price for h in self.holdings.values())


def run_topk_dropout(
    scores: pd.DataFrame,
    prices: pd.DataFrame,
    config: TopkDropoutConfig | None = None,
    benchmark: pd.Series | str | Sequence[str] | None = None,
) -> BacktestResult:
    """Simulate TopkDropout on daily ``scores`` (date, instrument, score) against ``prices``.

    ``prices``: see ``alstm_pipeline.evaluation.market`` (adjusted close, optional factor
    and change; open when dealing at the open). ``benchmark``: daily returns indexed by
    date, or an instrument code (or codes) of ``prices`` for ``benchmark_returns``;
    default the equal-weight portfolio of ``prices``.

    Raises ValueError for empty scores, NaN scores, duplicate rows, instruments that have
    no prices at all, and score dates that are not trading days of ``prices``.
    """
    config = config or TopkDropoutConfig()
    market = MarketPanel.from_prices(prices)
    signal = _signal_by_day(scores, market)
    first_day, last_day = min(signal), max(signal)
    dates = market.dates[first_day : last_day + 1]
    if benchmark is None or isinstance(benchmark, (str, list, tuple)):
        benchmark = benchmark_returns(prices, benchmark)
    if config.deal_price == "open" and market.open is None:
        raise ValueError("deal_price 'open' needs an 'open' column in prices")
    bench = pd.Series(benchmark, dtype="float64").reindex(dates).fillna(0.0).to_numpy()

    book = _Book(cash=float(config.account))
    previous_value = float(config.account)
    daily_rows, trades, positions = [], [], []
    for offset, day in enumerate(range(first_day, last_day + 1)):
        date = market.dates[day]
        day_trades: list[dict] = []
        day_signal = signal.get(day - 1)  # none on the first day: no orders (§9.3)
        if day_signal is not None:
            day_scores, ranked = day_signal
            plan = plan_topk_dropout(day_scores, list(book.holdings), config.topk, config.n_drop, ranked)
            _execute_sells(book, plan.sell, market, day, config, day_trades)
            _execute_buys(book, plan.buy, market, day, config, day_trades)
        _mark_to_market(book, market, day)

        value = book.value()
        day_cost = sum(t["cost"] for t in day_trades)
        day_traded = sum(t["value"] for t in day_trades)
        daily_rows.append(
            {
                "date": date,
                "account_value": value,
                "cash": book.cash,
                "return": (value - previous_value + day_cost) / previous_value,
                "cost": day_cost / previous_value,
                "turnover": day_traded / previous_value,
                "bench": bench[offset],
                "n_holdings": len(book.holdings),
            }
        )
        trades.extend({"date": date, **t} for t in day_trades)
        positions.extend(
            {"date": date, "instrument": name, "amount": h.amount, "price": h.price,
             "value": h.amount * h.price, "weight": h.amount * h.price / value}
            for name, h in book.holdings.items()
        )
        previous_value = value

    return BacktestResult(
        daily=pd.DataFrame(daily_rows, columns=DAILY_COLUMNS),
        trades=pd.DataFrame(trades, columns=TRADE_COLUMNS),
        positions=pd.DataFrame(positions, columns=POSITION_COLUMNS),
        config=config,
    )


def backtest_summary(result: BacktestResult, N: int = TRADING_DAYS_PER_YEAR) -> dict:
    """risk_analysis (§9.5, sum mode) of the excess return without and with cost, and mean turnover.

    The published table is ``excess_return_with_cost`` = return − bench − cost (§10).
    """
    daily = result.daily
    excess = daily["return"] - daily["bench"]
    return {
        "excess_return_without_cost": risk_analysis(excess, N=N),
        "excess_return_with_cost": risk_analysis(excess - daily["cost"], N=N),
        "mean_turnover": float(daily["turnover"].mean()),
    }


def _execute_sells(
    book: _Book, sell: list[str], market: MarketPanel, day: int, config: TopkDropoutConfig, trades: list[dict]
) -> None:
    """§9.3: sell the whole position of each planned name that can trade today, in holding order.

    Every holding was bought on an earlier day, so Qlib's hold_thresh of 1 day always holds here.
    """
    planned = set(sell)
    direction = None if config.forbid_all_trade_at_limit else "sell"
    for name in [n for n in book.holdings if n in planned]:
        col = market.column_of(name)
        if not market.is_tradable(day, col, config.limit_threshold, direction):
            continue  # suspended / at limit / delisted: kept, the book may exceed topk (§9.3)
        holding = book.holdings.pop(name)
        price = market.deal_price(day, col, config.deal_price)
        value = holding.amount * price
        cost = max(value * config.close_cost, config.min_cost)
        book.cash += value - cost
        trades.append(_trade(name, "sell", holding.amount, price, cost))


def _execute_buys(
    book: _Book, buy: list[str], market: MarketPanel, day: int, config: TopkDropoutConfig, trades: list[dict]
) -> None:
    """§9.3: equal cash per planned buy (untradable names keep their share idle), lots, then cash limits."""
    if not buy:
        return
    per_stock = book.cash * config.risk_degree / len(buy)
    direction = None if config.forbid_all_trade_at_limit else "buy"
    for name in buy:
        col = market.column_of(name)
        if not market.is_tradable(day, col, config.limit_threshold, direction):
            continue
        price = market.deal_price(day, col, config.deal_price)
        factor = market.factor[day, col]
        amount = round_to_lots(per_stock / price, factor, config.trade_unit)
        amount = _fit_buy_to_cash(amount, price, factor, book.cash, config)
        if amount <= 0:
            continue  # a zero deal changes nothing and costs nothing
        value = amount * price
        cost = max(value * config.open_cost, config.min_cost)
        book.cash -= value + cost
        book.holdings[name] = _Holding(amount=amount, price=price)
        trades.append(_trade(name, "buy", amount, price, cost))


def _fit_buy_to_cash(amount: float, price: float, factor: float, cash: float, config: TopkDropoutConfig) -> float:
    """§9.3: shrink a buy that cash cannot pay for (value + cost) to what cash allows, in lots."""
    value = amount * price
    cost = max(value * config.open_cost, config.min_cost)
    if cash < cost:
        return 0.0
    if cash >= value + cost:
        return amount
    # Below this much cash the minimum cost binds: spend cash − min_cost on shares.
    min_cost_binds_below = config.min_cost / config.open_cost + config.min_cost if config.open_cost > 0 else np.inf
    if cash >= min_cost_binds_below:
        affordable = cash / (1 + config.open_cost) / price
    else:
        affordable = (cash - config.min_cost) / price
    return round_to_lots(min(amount, affordable), factor, config.trade_unit)


def _mark_to_market(book: _Book, market: MarketPanel, day: int) -> None:
    """§9.4: value holdings at today's close; no quote today → keep the last known price."""
    for name, holding in book.holdings.items():
        close = market.close[day, market.column_of(name)]
        if not np.isnan(close):
            holding.price = close


def _trade(name: str, direction: str, amount: float, price: float, cost: float) -> dict:
    return {"instrument": name, "direction": direction, "amount": amount, "price": price, "value": amount * price, "cost": cost}


def _signal_by_day(scores: pd.DataFrame, market: MarketPanel) -> dict[int, tuple[dict[str, float], list[str]]]:
    """Validate the scores; map calendar position → ({instrument: score}, instruments best first)."""
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be a pandas DataFrame, got {type(scores).__name__}")
    missing = [c for c in ("date", "instrument", "score") if c not in scores.columns]
    if missing:
        raise ValueError(f"scores is missing column(s) {missing}; it has {list(scores.columns)}")
    if scores.empty:
        raise ValueError("scores is empty: the backtest needs at least one day of predictions")
    frame = scores[["date", "instrument", "score"]].copy()
    frame["date"] = pd.to_datetime(frame["date"])
    _reject(frame["score"].isna(), frame, "scores has NaN score(s)")
    _reject(frame.duplicated(["date", "instrument"]), frame, "scores has duplicate rows")
    _reject(
        ~frame["instrument"].isin(market.instruments),
        frame,
        "scores name instrument(s) that have no prices at all",
    )
    day_of = market.dates.get_indexer(frame["date"])
    _reject(pd.Series(day_of < 0, index=frame.index), frame, "scores are dated on day(s) with no prices (not trading days)")

    # One sort for all days: date, then best score first, ties by instrument code
    # (the order rank_by_score uses).
    order = np.lexsort((frame["instrument"].to_numpy(), -frame["score"].to_numpy(dtype="float64"), day_of))
    days = day_of[order]
    names = frame["instrument"].to_numpy()[order]
    values = frame["score"].to_numpy(dtype="float64")[order]
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    ends = np.r_[starts[1:], len(days)]
    signal = {}
    for start, end in zip(starts, ends):
        ranked = names[start:end].tolist()
        signal[int(days[start])] = (dict(zip(ranked, values[start:end].tolist())), ranked)
    return signal


def _reject(bad: pd.Series, frame: pd.DataFrame, problem: str) -> None:
    if bad.any():
        rows = frame[bad.to_numpy()].head(3)
        examples = ", ".join(f"{r.instrument} on {r.date:%Y-%m-%d}" for r in rows.itertuples())
        raise ValueError(f"{problem}: {int(bad.sum())} row(s), e.g. {examples}")
