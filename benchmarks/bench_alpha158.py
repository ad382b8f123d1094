"""Throughput of the pure Alpha158 + LABEL0 computation on the shared S&P 500 panel.

Usage: ``python benchmarks/bench_alpha158.py [--instruments 100 400] [--repeat 3]``

Instruments: the ones with the most rows in 2008-01-01 .. 2020-12-31 (ties by name).
Dates: exactly 2008-01-01 .. 2020-12-31 (no extra lookback; every window is computed,
partial windows at the start included). Fields are converted to Qlib's convention:
factor = adj_close / close, open/high/low/close × factor, volume ÷ factor, float32.
Each size runs in its own process so that its peak RSS (ru_maxrss, which includes the
panel load) is its own. Reference: Qlib 0.9.7 takes 45.3 s for 400 instruments.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from alstm_pipeline.features import compute_alpha158, compute_label  # noqa: E402

PANEL_PATH = REPO_ROOT.parent / "shared" / "data" / "sp500_daily.parquet"
START, END = pd.Timestamp("2008-01-01"), pd.Timestamp("2020-12-31")


@lru_cache(maxsize=1)
def qlib_fields() -> pd.DataFrame:
    """The panel in 2008-2020 as Qlib-adjusted float32 fields."""
    raw = pd.read_parquet(PANEL_PATH, columns=["instrument", "date", "open", "high", "low", "close", "adj_close", "volume"])
    raw["date"] = pd.to_datetime(raw["date"])
    raw = raw[(raw["date"] >= START) & (raw["date"] <= END)]
    factor = raw["adj_close"] / raw["close"]
    fields = pd.DataFrame({"instrument": raw["instrument"].to_numpy(), "date": raw["date"].to_numpy()})
    for name in ("open", "high", "low", "close"):
        fields[name] = (raw[name] * factor).to_numpy(np.float32)
    fields["volume"] = (raw["volume"] / factor).to_numpy(np.float32)
    fields["factor"] = factor.to_numpy(np.float32)
    return fields


def pick_instruments(fields: pd.DataFrame, n_instruments: int) -> pd.DataFrame:
    counts = fields.groupby("instrument").size().reset_index(name="rows")
    chosen = counts.sort_values(["rows", "instrument"], ascending=[False, True])["instrument"].head(n_instruments)
    return fields[fields["instrument"].isin(set(chosen))].reset_index(drop=True)


# --- entry point for the lead: add an asset-level incremental timing beside this one ---
def bench_pure(n_instruments: int, repeat: int = 3) -> dict:
    """Time compute_alpha158 + compute_label on ``n_instruments`` of the panel (best of ``repeat``)."""
    fields = pick_instruments(qlib_fields(), n_instruments)
    best_total = best_features = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        features = compute_alpha158(fields)
        t1 = time.perf_counter()
        label = compute_label(fields)
        t2 = time.perf_counter()
        best_features = min(best_features, t1 - t0)
        best_total = min(best_total, t2 - t0)
        del features, label
    rows = int(fields.groupby("instrument")["date"].size().sum())
    return {
        "instruments": n_instruments,
        "input_rows": len(fields),
        "output_rows": rows,
        "seconds_alpha158": round(best_features, 3),
        "seconds_alpha158_and_label": round(best_total, 3),
        "rows_per_second": round(rows / best_total),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inline", action="store_true", help="run in this process (one size)")
    args = parser.parse_args()
    if args.inline:
        print(json.dumps(bench_pure(args.instruments[0], args.repeat)))
        return
    for n in args.instruments:
        out = subprocess.run(
            [sys.executable, __file__, "--inline", "--instruments", str(n), "--repeat", str(args.repeat)],
            check=True, capture_output=True, text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['instruments']:>4} instruments: {r['output_rows']:>9,} rows  "
            f"alpha158 {r['seconds_alpha158']:.2f} s  +label {r['seconds_alpha158_and_label']:.2f} s  "
            f"{r['rows_per_second']:>9,} rows/s  peak RSS {r['peak_rss_mb']:,} MB"
        )


if __name__ == "__main__":
    main()
