"""Time the dataset stage at panel size: processors, learn frame, 20-step window index, gathers.

Row set = the real (instrument, date) pairs of the shared S&P 500 panel for 2008..2014
(403 stocks, ~700k rows, with its real listings and gaps); feature values are random
(only their count matters here). Prints seconds, rows/s and peak RSS.

    python benchmarks/bench_windows.py [--panel PATH] [--start 2008-01-01] [--end 2014-12-31]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from alstm_pipeline.dataset import (
    ALSTM_FEATURES,
    build_samples,
    learn_frame,
    process_features,
    process_label,
)

DEFAULT_PANEL = Path(__file__).resolve().parents[2] / "shared" / "data" / "sp500_daily.parquet"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(what: str, rows: int, fn):
    began = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - began
    print(f"{what:<34} {seconds:8.3f} s  {rows / seconds:14,.0f} rows/s  peak RSS {_peak_rss_mib():7.0f} MiB")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--panel", type=Path, default=DEFAULT_PANEL)
    parser.add_argument("--start", default="2008-01-01")
    parser.add_argument("--end", default="2014-12-31")
    args = parser.parse_args()

    keys = pd.read_parquet(args.panel, columns=["instrument", "date"])
    keys["date"] = pd.to_datetime(keys["date"])
    keys = keys[(keys["date"] >= args.start) & (keys["date"] <= args.end)].reset_index(drop=True)
    rng = np.random.default_rng(0)
    alpha158 = keys.copy()
    alpha158[list(ALSTM_FEATURES)] = rng.standard_normal((len(keys), 20), dtype=np.float32)
    alpha158["LABEL0"] = rng.standard_normal(len(keys), dtype=np.float32) * 0.02
    alpha158.loc[rng.random(len(keys)) < 0.01, "LABEL0"] = np.nan  # some dropped labels
    calendar = pd.DatetimeIndex(np.sort(keys["date"].unique()))
    n = len(alpha158)
    print(f"{n:,} rows, {keys['instrument'].nunique()} instruments, {len(calendar)} dates "
          f"({args.start}..{args.end}); torch threads {torch.get_num_threads()}")

    features = _timed("process_features (fit + apply)", n,
                      lambda: process_features(alpha158, args.start, args.end))
    label = _timed("process_label (DropnaLabel+CSRank)", n,
                   lambda: process_label(alpha158[["instrument", "date", "LABEL0"]]))
    learn = _timed("learn_frame (join)", n, lambda: learn_frame(features, label))
    samples = _timed("build_samples (train, step 20)", len(learn),
                     lambda: build_samples(learn, args.start, args.end, calendar))
    print(f"  {len(samples):,} samples; index {samples.index.numel() * 8 / 2**20:.0f} MiB, "
          f"rows {samples.rows.numel() * 4 / 2**20:.0f} MiB")

    order = torch.randperm(len(samples))
    batches = order[: (len(samples) // 800) * 800].view(-1, 800)

    def one_epoch_of_gathers() -> None:
        for ids in batches:
            samples.windows(ids)
            samples.targets(ids)

    _timed("gather windows, batch 800, 1 epoch", len(batches) * 800, one_epoch_of_gathers)


if __name__ == "__main__":
    main()
