"""What the CLI prints at the end: where things are and what they say."""

from __future__ import annotations

import pandas as pd

from alstm_pipeline.evaluation import ic_summary, risk_analysis
from alstm_pipeline.settings import Settings
from alstm_pipeline.warehouse import registry, tables

SUMMARY_TABLES = ("raw_ohlcv", "alpha158_features", "alpha360_features", "labels", "predictions", "ic_daily", "backtest_daily")
DEFAULT_PERIOD_START = "2017-01-01"


def benchmark_name(codes: str) -> str:
    """The backtest's benchmark as BacktestConfig.benchmark names it ("" = equal weight)."""
    return codes or "the equal-weight universe"


def print_summary(settings: Settings, start=None, end=None, experiment: str = registry.DEFAULT_EXPERIMENT,
                  benchmark: str = "") -> None:
    """Tables, the vintages, the IC summary and backtest of the evaluation period (of ``experiment``);
    ``benchmark`` is the backtest's (BacktestConfig.benchmark, "" = equal-weight universe)."""
    store = settings.open_warehouse()
    if not store.exists():
        return
    print(f"\nwarehouse: {store.location}")
    for table in SUMMARY_TABLES:
        found = tables.table_summary(store, table)
        if found is not None:
            rows, first, last = found
            print(f"  {table:<18} {rows:>10,} rows  {first}..{last}")

    known = registry.read_registry(store, experiment)
    if len(known):
        print(f"\nmodel_registry, experiment {experiment!r} ({len(known)} vintages; a day is scored by the newest promoted one "
              "serving from it or earlier):")
        for row in known.tail(8).itertuples():
            print(f"  {row.vintage}  {row.feature_set:<11} {row.version}  {row.status:<10} trained through {row.trained_through.date()}  "
                  f"{row.checkpoint}")

    start = pd.Timestamp(start or DEFAULT_PERIOD_START)
    ic = tables.read_ic_daily(store, start, end, experiment)
    if len(ic) > 1:
        last = pd.Timestamp(ic["date"].max()).date()
        print(f"\nIC over {start.date()}..{last} ({len(ic)} days, SigAnaRecord):")
        print("  " + "  ".join(f"{name} {value:+.4f}" for name, value in ic_summary(ic["ic"], ic["rank_ic"]).items()))

    daily = tables.read_backtest(store, experiment=experiment)
    if len(daily):
        excess = daily["return"] - daily["bench"]
        print(f"\nTopkDropout backtest vs {benchmark_name(benchmark)} ({len(daily)} days, risk_analysis sum mode, 238 days/year):")
        for label, series in (("without cost", excess), ("with cost", excess - daily["cost"])):
            risk = risk_analysis(series)
            print(f"  excess return {label:<12} annualized {risk['annualized_return']:+.4f}  "
                  f"information ratio {risk['information_ratio']:+.3f}  max drawdown {risk['max_drawdown']:+.4f}")
        print(f"  mean daily turnover {daily['turnover'].mean():.4f}")
