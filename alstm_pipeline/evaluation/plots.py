"""PNG charts of the evaluation results, for asset metadata and reports.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot state),
so plotting is safe in worker threads and needs no display.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import io

import pandas as pd

from alstm_pipeline.evaluation.backtest import BacktestResult

if TYPE_CHECKING:  # matplotlib loads on the first plot, not when the package is imported
    from matplotlib.figure import Figure


__all__ = ["plot_equity", "plot_ic"]


def plot_ic(ic: pd.Series, rank_ic: pd.Series, rolling_window: int = 20) -> bytes:
    """Daily IC and Rank IC with their rolling means (top) and their cumulative sums (bottom), as PNG."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 6), layout="constrained")
    daily, cumulative = fig.subplots(2, 1, sharex=True)
    for series, colour in ((ic, "tab:blue"), (rank_ic, "tab:orange")):
        name = series.name or ("IC" if series is ic else "Rank IC")
        daily.plot(series.index, series.to_numpy(), color=colour, alpha=0.3, linewidth=0.8, label=f"{name} daily")
        daily.plot(
            series.index,
            series.rolling(rolling_window, min_periods=1).mean().to_numpy(),
            color=colour,
            linewidth=1.5,
            label=f"{name} {rolling_window}-day mean",
        )
        cumulative.plot(series.index, series.fillna(0.0).cumsum().to_numpy(), color=colour, label=f"{name} cumulative")
    daily.axhline(0.0, color="black", linewidth=0.5)
    daily.set_title("Daily IC / Rank IC")
    daily.legend(loc="upper left", fontsize="small")
    cumulative.axhline(0.0, color="black", linewidth=0.5)
    cumulative.set_title("Cumulative IC / Rank IC")
    cumulative.legend(loc="upper left", fontsize="small")
    return _png(fig)


def plot_equity(result: BacktestResult) -> bytes:
    """Cumulative (summed, §9.5 "sum" mode) strategy vs benchmark returns (top) and excess returns (bottom), as PNG."""
    from matplotlib.figure import Figure
    daily = result.daily
    dates = daily["date"]
    after_cost = daily["return"] - daily["cost"]
    fig = Figure(figsize=(10, 6), layout="constrained")
    level, excess = fig.subplots(2, 1, sharex=True)
    level.plot(dates, daily["return"].cumsum(), label="strategy, without cost")
    level.plot(dates, after_cost.cumsum(), label="strategy, with cost")
    level.plot(dates, daily["bench"].cumsum(), label="benchmark", color="black", linewidth=1.0)
    level.set_title("Cumulative return")
    level.legend(loc="upper left", fontsize="small")
    excess.plot(dates, (daily["return"] - daily["bench"]).cumsum(), label="excess, without cost")
    excess.plot(dates, (after_cost - daily["bench"]).cumsum(), label="excess, with cost")
    excess.axhline(0.0, color="black", linewidth=0.5)
    excess.set_title("Cumulative excess return over the benchmark")
    excess.legend(loc="upper left", fontsize="small")
    return _png(fig)


def _png(fig: Figure) -> bytes:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    for axes in fig.axes:
        locator = AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
