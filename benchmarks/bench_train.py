"""Time one ALSTM training epoch as Qlib counts it (semantics doc §7.2), on the CPU by default.

Qlib's epoch = a shuffled training pass + a re-scoring pass over train + a scoring pass over
valid. Sample sets: the real (instrument, date) rows of the first N instruments (sorted) of
the shared S&P 500 panel, train 2008–2014, valid 2015–2016, cut into 20-step windows by the
dataset module's `build_samples` (so sample counts, gaps and window fills are the real
ones); the 20 feature values and the label are random (timing does not depend on them).

Prints per pass and per epoch: seconds, samples/s, peak RSS. Reference (Qlib 0.9.7 on this
2-core machine kind): 46–64 s per epoch for 100 instruments, 296 s for 400.

    python benchmarks/bench_train.py [--instruments 100 400] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from alstm_pipeline.dataset import ALSTM_FEATURES, LABEL_COLUMN, build_samples
from alstm_pipeline.model import ALSTMModel, TrainConfig, resolve_device
from alstm_pipeline.model.batching import full_batches, sequential_pass_start, shuffled_pass_order
from alstm_pipeline.model.checks import check_training_inputs
from alstm_pipeline.model.training import _score_pass, _train_pass

DEFAULT_PANEL = Path(__file__).resolve().parents[2] / "shared" / "data" / "sp500_daily.parquet"
TRAIN = ("2008-01-01", "2014-12-31")
VALID = ("2015-01-01", "2016-12-31")
QLIB_EPOCH_SECONDS = {100: "46–64", 400: "296"}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sample_sets(panel: pd.DataFrame, n_instruments: int):
    """Real row set of the first n instruments, random feature values (see module doc)."""
    instruments = sorted(panel["instrument"].unique())[:n_instruments]
    calendar = pd.DatetimeIndex(np.unique(panel["date"]))
    rows = panel.loc[panel["instrument"].isin(instruments), ["instrument", "date"]].reset_index(drop=True)
    rng = np.random.default_rng(0)
    features = np.clip(rng.standard_normal((len(rows), len(ALSTM_FEATURES)), dtype=np.float32), -3, 3)
    frame = pd.concat([rows, pd.DataFrame(features, columns=list(ALSTM_FEATURES))], axis=1)
    frame[LABEL_COLUMN] = rng.uniform(-1.73, 1.73, len(rows))  # CSRankNorm'd labels span ±1.73
    return build_samples(frame, *TRAIN, calendar), build_samples(frame, *VALID, calendar)


def _timed(fn):
    began = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - began


def _report(what: str, samples: int, seconds: float) -> None:
    print(f"  {what:<34} {seconds:8.2f} s  {samples / seconds:10,.0f} samples/s  peak RSS {_peak_rss_mib():6.0f} MiB")


def bench_epoch(train, valid, config: TrainConfig) -> None:
    """The three passes of one epoch, timed separately, with the training loop's own code."""
    device = resolve_device(config.device)
    _, check_seconds = _timed(lambda: check_training_inputs(train, valid, config.d_feat, config.batch_size))
    torch.manual_seed(0)
    model = ALSTMModel().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train, valid = train.to(device), valid.to(device)
    bs = config.batch_size
    n_train, n_valid = len(train) // bs * bs, len(valid) // bs * bs

    _, train_seconds = _timed(lambda: _train_pass(model, optimizer, train, bs, False).sum().item())
    train_batches = full_batches(shuffled_pass_order(len(train)).to(device), bs)
    _, score_seconds = _timed(lambda: _score_pass(model, train, train_batches, False))
    sequential_pass_start()
    valid_batches = full_batches(torch.arange(len(valid), device=device), bs)
    _, valid_seconds = _timed(lambda: _score_pass(model, valid, valid_batches, False))

    _report("input checks (once per run)", len(train) + len(valid), check_seconds)
    _report("training pass", n_train, train_seconds)
    _report("train scoring pass", n_train, score_seconds)
    _report("valid scoring pass", n_valid, valid_seconds)
    qlib_epoch = train_seconds + score_seconds + valid_seconds
    _report("epoch as Qlib counts it", 2 * n_train + n_valid, qlib_epoch)
    _report("epoch, score_train=False (quick)", n_train + n_valid, train_seconds + valid_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panel", type=Path, default=DEFAULT_PANEL)
    parser.add_argument("--instruments", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    panel = pd.read_parquet(args.panel, columns=["instrument", "date"])
    panel["date"] = pd.to_datetime(panel["date"])
    config = TrainConfig(device=args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {resolve_device(args.device)}")
    for n_instruments in args.instruments:
        (train, valid), build_seconds = _timed(lambda: _sample_sets(panel, n_instruments))
        print(
            f"{n_instruments} instruments: {len(train):,} train / {len(valid):,} valid samples "
            f"(built in {build_seconds:.1f} s); Qlib epoch: {QLIB_EPOCH_SECONDS.get(n_instruments, '?')} s"
        )
        bench_epoch(train, valid, config)


if __name__ == "__main__":
    main()
