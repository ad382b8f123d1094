"""Evaluation of daily scores: IC / Rank IC (§8), TopkDropout backtest (§9.2–9.4), risk metrics (§9.5), plots.

Pure computation: pandas/numpy/matplotlib only, no Dagster.
"""

from alstm_pipeline.evaluation.backtest import BacktestResult, backtest_summary, run_topk_dropout
from alstm_pipeline.evaluation.market import MarketPanel, benchmark_returns, equal_weight_benchmark, raw_change, round_to_lots
from alstm_pipeline.evaluation.plots import plot_equity, plot_ic
from alstm_pipeline.evaluation.risk import TRADING_DAYS_PER_YEAR, risk_analysis
from alstm_pipeline.evaluation.seeds import (
    BENCHMARK_COLUMNS,
    ensemble_scores,
    seed_benchmark_table,
    seed_table_markdown,
    signal_and_backtest,
)
from alstm_pipeline.evaluation.signal import calc_ic, ic_summary, rolling_ic
from alstm_pipeline.evaluation.topk_dropout import TopkDropoutConfig, TradePlan, plan_topk_dropout, rank_by_score

__all__ = [
    "BENCHMARK_COLUMNS",
    "TRADING_DAYS_PER_YEAR",
    "BacktestResult",
    "MarketPanel",
    "TopkDropoutConfig",
    "TradePlan",
    "backtest_summary",
    "benchmark_returns",
    "calc_ic",
    "ensemble_scores",
    "equal_weight_benchmark",
    "ic_summary",
    "plan_topk_dropout",
    "plot_equity",
    "plot_ic",
    "raw_change",
    "rank_by_score",
    "risk_analysis",
    "rolling_ic",
    "round_to_lots",
    "run_topk_dropout",
    "seed_benchmark_table",
    "seed_table_markdown",
    "signal_and_backtest",
]
