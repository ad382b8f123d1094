"""Throughput of the pure Alpha360 computation, and one flat-row ALSTM epoch, on the shared panel.

Usage: ``python benchmarks/bench_alpha360.py [--panel PATH] [--instruments 100 400]
[--epoch-instruments 100] [--threads 1]``

Features: as ``bench_alpha158.py`` (same instruments: most rows in 2008-01-01..2020-12-31,
same Qlib-adjusted float32 fields, exactly those dates); compute_alpha360 + compute_label,
best of ``--repeat``, each size in its own process so its peak RSS (ru_maxrss, panel load
included) is its own.

Epoch: Qlib's non-TS epoch (docs/alpha360.md) = shuffled training pass + in-order scoring of
train + scoring of valid, batch 800, on real processed Alpha360 rows of the first N of those
instruments (fit and train 2008-2014, valid 2015-2016), CPU, seed 0.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bench_alpha158  # noqa: E402  (shared panel loader and instrument pick)

from alstm_pipeline.dataset import learn_frame, process_features, process_label  # noqa: E402
from alstm_pipeline.features import ALPHA360_NAMES, compute_alpha360, compute_label  # noqa: E402
from alstm_pipeline.model import ALPHA360_PROFILE, ALSTMModel, flat_set  # noqa: E402
from alstm_pipeline.model.training_flat import _DeviceSet, _score_pass, _train_pass  # noqa: E402

TRAIN = ("2008-01-01", "2014-12-31")
VALID = ("2015-01-01", "2016-12-31")


def _peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def bench_features(n_instruments: int, repeat: int) -> dict:
    fields = bench_alpha158.pick_instruments(bench_alpha158.qlib_fields(), n_instruments)
    best_features = best_total = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        features = compute_alpha360(fields)
        t1 = time.perf_counter()
        label = compute_label(fields)
        t2 = time.perf_counter()
        best_features, best_total = min(best_features, t1 - t0), min(best_total, t2 - t0)
        rows = len(features)
        del features, label
    return {
        "instruments": n_instruments,
        "output_rows": rows,
        "seconds_alpha360": round(best_features, 3),
        "seconds_alpha360_and_label": round(best_total, 3),
        "rows_per_second": round(rows / best_total),
        "peak_rss_mb": _peak_rss_mb(),
    }


def bench_epoch(n_instruments: int) -> dict:
    fields = bench_alpha158.pick_instruments(bench_alpha158.qlib_fields(), n_instruments)
    fields = fields[fields["date"] <= pd.Timestamp(VALID[1])]
    t0 = time.perf_counter()
    processed = process_features(compute_alpha360(fields), *TRAIN, columns=ALPHA360_NAMES)
    learn = learn_frame(processed, process_label(compute_label(fields)), columns=ALPHA360_NAMES)
    prep_seconds = time.perf_counter() - t0
    dates = pd.to_datetime(learn["date"])
    train = flat_set(learn[(dates >= TRAIN[0]) & (dates <= TRAIN[1])], ALPHA360_NAMES)
    valid = flat_set(learn[(dates >= VALID[0]) & (dates <= VALID[1])], ALPHA360_NAMES)
    del processed, learn
    config = ALPHA360_PROFILE
    torch.manual_seed(0)
    model = ALSTMModel(d_feat=config.d_feat)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    device = torch.device("cpu")
    train_data, valid_data = _DeviceSet(train, device), _DeviceSet(valid, device)
    rng = np.random.RandomState(0)
    t0 = time.perf_counter()
    _train_pass(model, optimizer, train_data, config.batch_size, rng)
    t1 = time.perf_counter()
    _score_pass(model, train_data, config.batch_size)
    t2 = time.perf_counter()
    _score_pass(model, valid_data, config.batch_size)
    t3 = time.perf_counter()
    return {
        "instruments": n_instruments,
        "train_rows": len(train),
        "valid_rows": len(valid),
        "prepare_seconds": round(prep_seconds, 1),
        "train_pass_seconds": round(t1 - t0, 1),
        "train_scoring_seconds": round(t2 - t1, 1),
        "valid_scoring_seconds": round(t3 - t2, 1),
        "epoch_seconds": round(t3 - t0, 1),
        "train_rows_per_second": round(len(train) // config.batch_size * config.batch_size / (t1 - t0)),
        "peak_rss_mb": _peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panel", type=Path, default=bench_alpha158.PANEL_PATH)
    parser.add_argument("--instruments", type=int, nargs="*", default=[100, 400])
    parser.add_argument("--epoch-instruments", type=int, nargs="*", default=[100])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--inline", choices=["features", "epoch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    bench_alpha158.PANEL_PATH = args.panel
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.inline == "features":
        print(json.dumps(bench_features(args.instruments[0], args.repeat)))
        return
    if args.inline == "epoch":
        print(json.dumps(bench_epoch(args.epoch_instruments[0])))
        return
    common = [sys.executable, __file__, "--panel", str(args.panel)] + (
        ["--threads", str(args.threads)] if args.threads else []
    )
    print(f"torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}")
    for n in args.instruments:
        run = [*common, "--inline", "features", "--instruments", str(n), "--repeat", str(args.repeat)]
        r = json.loads(subprocess.run(run, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(
            f"features {r['instruments']:>4} instruments: {r['output_rows']:>9,} rows  alpha360 "
            f"{r['seconds_alpha360']:.2f} s  +label {r['seconds_alpha360_and_label']:.2f} s  "
            f"{r['rows_per_second']:>9,} rows/s  peak RSS {r['peak_rss_mb']:,} MB"
        )
    for n in args.epoch_instruments:
        run = [*common, "--inline", "epoch", "--epoch-instruments", str(n)]
        r = json.loads(subprocess.run(run, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"epoch {json.dumps(r)}")


if __name__ == "__main__":
    main()
