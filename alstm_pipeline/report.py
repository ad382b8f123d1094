"""What the main job prints at the end: where things are and what they say."""

from __future__ import annotations

from alstm_pipeline.evaluation import ic_summary, risk_analysis
from alstm_pipeline.model import CARD_FILE, latest_checkpoint
from alstm_pipeline.settings import Settings
from alstm_pipeline.warehouse import Warehouse

SUMMARY_TABLES = ("raw_ohlcv", "alpha158", "labels", "predictions", "ic_daily", "backtest_daily")


def print_summary(settings: Settings) -> None:
    """Tables, the IC summary over the test segment, the backtest summary, the model card."""
    store = Warehouse(settings.warehouse_path)
    if not store.path.exists():
        return
    print(f"\nwarehouse: {store.path}")
    for table in SUMMARY_TABLES:
        if store.table_exists(table):
            rows, first, last = store.query(f"SELECT count(*), strftime(min(date), '%Y-%m-%d'), strftime(max(date), '%Y-%m-%d') FROM \"{table}\"").iloc[0]
            print(f"  {table:<16} {rows:>10,} rows  {first}..{last}")

    if store.table_exists("ic_daily") and store.table_exists("test_segment_range"):
        start, end = store.query("""SELECT strftime(start, '%Y-%m-%d'), strftime("end", '%Y-%m-%d') FROM test_segment_range""").iloc[0]
        ic = store.query("SELECT ic, rank_ic FROM ic_daily WHERE date BETWEEN ? AND ?", [start, end])
        if len(ic) > 1:
            summary = ic_summary(ic["ic"], ic["rank_ic"])
            print(f"\nIC over the test segment {start}..{end} ({len(ic)} days, SigAnaRecord):")
            print("  " + "  ".join(f"{name} {value:+.4f}" for name, value in summary.items()))

    if store.table_exists("backtest_daily"):
        daily = store.query("SELECT * FROM backtest_daily ORDER BY date")
        excess = daily["return"] - daily["bench"]
        print(f"\nTopkDropout backtest vs equal-weight benchmark ({len(daily)} days, risk_analysis sum mode, 238 days/year):")
        for label, series in (("without cost", excess), ("with cost", excess - daily["cost"])):
            risk = risk_analysis(series)
            print(f"  excess return {label:<12} annualized {risk['annualized_return']:+.4f}  "
                  f"information ratio {risk['information_ratio']:+.3f}  max drawdown {risk['max_drawdown']:+.4f}")
        print(f"  mean daily turnover {daily['turnover'].mean():.4f}")

    checkpoint = latest_checkpoint(settings.models_dir) if settings.models_dir.exists() else None
    if checkpoint is not None:
        print(f"\nmodel card: {checkpoint / CARD_FILE}")
