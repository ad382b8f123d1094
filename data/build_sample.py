"""Build ``data/sp500_sample.parquet``, the bundled sample, from the shared S&P 500 panel.

Rule (reproducible, no randomness):
1. window: 2007-06-01 .. 2021-04-21 (enough history before 2008 for 60-day features,
   up to the panel's last day);
2. keep instruments with a bar on every trading date of the window (full history);
3. rank them by median daily dollar volume (raw close × raw volume) over the window and
   keep the 100 most liquid;
4. keep their rows inside the window, columns instrument, date, open, high, low, close,
   adj_close, volume (raw prices + adj_close: Qlib's factor is derived on read).

Usage: python data/build_sample.py /path/to/sp500_daily.parquet [data/sp500_sample.parquet]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

WINDOW_START = pd.Timestamp("2007-06-01")
WINDOW_END = pd.Timestamp("2021-04-21")
INSTRUMENT_COUNT = 100
COLUMNS = ["instrument", "date", "open", "high", "low", "close", "adj_close", "volume"]


def select_sample(panel: pd.DataFrame) -> pd.DataFrame:
    """The sample rows of ``panel`` (columns as in the shared panel), by the module's rule."""
    panel = panel.assign(date=pd.to_datetime(panel["date"]))
    window = panel[(panel["date"] >= WINDOW_START) & (panel["date"] <= WINDOW_END)]
    trading_days = window["date"].nunique()
    days_held = window.groupby("instrument")["date"].nunique()
    full_history = days_held.index[days_held == trading_days]
    window = window[window["instrument"].isin(full_history)]
    dollar_volume = (window["close"] * window["volume"]).groupby(window["instrument"]).median()
    # ties broken by code so the choice never depends on row order
    ranked = dollar_volume.rename("dv").reset_index().sort_values(["dv", "instrument"], ascending=[False, True])
    chosen = set(ranked["instrument"].head(INSTRUMENT_COUNT))
    sample = window[window["instrument"].isin(chosen)][COLUMNS]
    return sample.sort_values(["instrument", "date"], ignore_index=True)


def write_sample(sample: pd.DataFrame, path: Path) -> None:
    """Parquet with ``date`` as a date32 column, zstd-compressed, one row group per ~100k rows."""
    table = pa.Table.from_pandas(sample, preserve_index=False)
    for name, kind in (("date", pa.date32()), ("instrument", pa.string())):
        table = table.set_column(table.column_names.index(name), name, table[name].cast(kind))
    table = table.replace_schema_metadata(None)  # pandas metadata would describe the pre-cast types
    pq.write_table(table, path, compression="zstd", compression_level=19, row_group_size=100_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("panel", type=Path, help="the shared sp500_daily.parquet")
    parser.add_argument("output", type=Path, nargs="?", default=Path(__file__).with_name("sp500_sample.parquet"))
    args = parser.parse_args()
    sample = select_sample(pd.read_parquet(args.panel))
    write_sample(sample, args.output)
    print(
        f"{args.output}: {len(sample):,} rows, {sample['instrument'].nunique()} instruments, "
        f"{sample['date'].min().date()} .. {sample['date'].max().date()}, "
        f"{args.output.stat().st_size / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
