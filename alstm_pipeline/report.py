"""What the main job prints at the end: where things are and what they say."""

from __future__ import annotations

from alstm_pipeline.settings import Settings
from alstm_pipeline.warehouse import Warehouse

SUMMARY_TABLES = ("raw_ohlcv", "alpha158", "labels")


def print_summary(settings: Settings) -> None:
    """Row counts and date ranges of the warehouse tables that exist."""
    store = Warehouse(settings.warehouse_path)
    print(f"\nwarehouse: {settings.warehouse_path}")
    for table in SUMMARY_TABLES:
        if not store.table_exists(table):
            continue
        rows, instruments, first, last = store.query(
            f'SELECT count(*), count(DISTINCT instrument), min(date)::DATE, max(date)::DATE FROM "{table}"'
        ).iloc[0]
        print(f"  {table:<20} {rows:>10,} rows  {instruments:>4} instruments  {first}..{last}")
