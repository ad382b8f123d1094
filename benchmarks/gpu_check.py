"""The whole GPU check of issue 10 in one process; prints a block to paste into RESULTS.md.

From a Parquet panel of daily bars (default: the bundled 100-stock sample; a GPU session
passes a copy of the 403-stock panel) it builds Qlib's ALSTM data exactly as the
pipeline does (Alpha158 → processors fit on 2008–2014 → 20-step windows; train
2008–2014, valid 2015–2016, test 2017-01-01..2020-08-01), then:

1. parity: one seed, the eager loop vs the CUDA-graph loop (same seed, same shuffles):
   per-epoch losses (target ≤ 1e-6 relative) and test predictions (target ≤ 1e-5 abs);
2. seeds together vs alone: K seeds by train_seeds vs each seed's train_alstm (≤ 1e-5);
3. timings: the benchmark profile (early stop 10, up to 200 epochs), one seed (target
   ≤ 12 s on 400 stocks) and --seeds seeds together (target ≤ 90 s for 20);
4. the per-seed benchmark table (IC … max drawdown, mean ± std, ensemble) of those seeds
   on the test segment, as Qlib publishes it (§10);
5. parallel vintages on one device (issue 16): --vintages rolling train windows (shifted by
   60 trading days, the normaliser of step 1), trained one after another, then each in its
   own process at the same time (as `evaluate-rolling --parallel` does; on one GPU every
   process has its own CUDA context and the GPU interleaves them): wall times, the
   speed-up, and whether each vintage's weights equal its sequential run.

    python benchmarks/gpu_check.py --panel /path/sp500_daily.parquet --instruments 400
    python benchmarks/gpu_check.py --device cpu --quick          # CPU smoke test, minutes
    python benchmarks/gpu_check.py --only-vintages --vintages 4  # step 5 alone

--quick shrinks everything (few instruments, 1–2 epochs, 2 seeds) to test the script.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from alstm_pipeline.dataset import build_samples, infer_frame, learn_frame, process_features, process_label
from alstm_pipeline.evaluation import TopkDropoutConfig, seed_benchmark_table, seed_table_markdown
from alstm_pipeline.features.alpha158 import compute_alpha158, compute_label
from alstm_pipeline.model import TrainConfig, predict, predict_per_seed, resolve_device, train_alstm, train_seeds
from alstm_pipeline.sources.detect import open_source

DEFAULT_PANEL = Path(__file__).resolve().parents[1] / "data" / "sp500_sample.parquet"
FIT = TRAIN = ("2008-01-01", "2014-12-31")
VALID = ("2015-01-01", "2016-12-31")
TEST = ("2017-01-01", "2020-08-01")
HISTORY_START = "2007-06-01"  # 60-day features complete on 2008-01-01


def build_sets(panel: Path, n_instruments: int):
    """(train, valid, test SampleSets, test labels frame, prices frame) of the first n instruments."""
    source = open_source(panel)
    instruments = sorted(source.instruments())[:n_instruments]
    bars = source.read(HISTORY_START, TEST[1], instruments)
    calendar = pd.DatetimeIndex(np.unique(bars["date"]))
    features = process_features(compute_alpha158(bars), *FIT)
    raw_label = compute_label(bars)
    learn = learn_frame(features, process_label(raw_label))
    infer = infer_frame(features, raw_label)
    train, valid = build_samples(learn, *TRAIN, calendar), build_samples(learn, *VALID, calendar)
    test = build_samples(infer, *TEST, calendar)
    build_sets.learn, build_sets.calendar = learn, calendar  # for the vintage windows of step 5
    labels = pd.DataFrame({"date": test.dates, "instrument": test.instruments, "LABEL0": test.targets().numpy()})
    in_test = bars["date"].between(pd.Timestamp(TEST[0]), pd.Timestamp(TEST[1]))
    prices = bars.loc[in_test, ["date", "instrument", "close", "factor"]].reset_index(drop=True)
    return train, valid, test, labels, prices, len(instruments)


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))) if len(a) == len(b) else float("inf")


def abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if len(a) else 0.0


def quiet(_line: str) -> None:
    pass


def vintage_windows(count: int, step: int = 60) -> list[tuple]:
    """(train, valid) SampleSets of ``count`` rolling windows: the fixed split shifted by
    ``step`` trading days per vintage (the same lengths, later data)."""
    learn, calendar = build_sets.learn, build_sets.calendar
    first = [int(calendar.searchsorted(pd.Timestamp(day))) for day in (TRAIN[0], TRAIN[1], VALID[0], VALID[1])]
    windows = []
    for k in range(count):
        days = [str(calendar[min(index + k * step, len(calendar) - 1)].date()) for index in first]
        windows.append((build_samples(learn, days[0], days[1], calendar), build_samples(learn, days[2], days[3], calendar)))
    return windows


def fit_vintage(job: tuple) -> tuple[str, float]:
    """One vintage in a worker process: (weights hash, wall seconds)."""
    from alstm_pipeline.model.checkpoint import weights_sha256

    train, valid, config, threads = job
    torch.set_num_threads(threads)
    result = train_alstm(train, valid, config, log=quiet)
    return weights_sha256(result.model), result.wall_seconds


def parallel_vintages(windows: list[tuple], config: TrainConfig, workers: int) -> list[str]:
    """Step 5: the windows one after another in this process, then ``workers`` at once in
    processes; the table rows."""
    threads = max(1, len(os.sched_getaffinity(0)) // workers) if config.device == "cpu" else 1
    began = time.perf_counter()
    if config.device == "cpu":
        torch.set_num_threads(threads)  # same threads per vintage as the workers: comparable bits
    alone = [fit_vintage((train, valid, config, threads)) for train, valid in windows]
    sequential_seconds = time.perf_counter() - began
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        together = list(pool.map(fit_vintage, [(train, valid, config, threads) for train, valid in windows]))
    parallel_seconds = time.perf_counter() - began
    same = sum(a[0] == b[0] for a, b in zip(alone, together, strict=True))
    return [
        f"| {len(windows)} vintages one after another (this process) | {sequential_seconds:.1f} s "
        f"({sequential_seconds / len(windows):.1f} s per vintage) | |",
        f"| {len(windows)} vintages, {workers} processes at once on {config.device} | {parallel_seconds:.1f} s "
        f"(speed-up {sequential_seconds / parallel_seconds:.2f}×, process start-up included); weights equal to the "
        f"sequential run: {same} of {len(windows)} | equal on CPU at equal threads |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("panel", nargs="?", type=Path, default=DEFAULT_PANEL, help="Parquet bars (default: bundled sample)")
    parser.add_argument("--instruments", type=int, default=400)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--seeds", type=int, default=20, help="seeds trained together for the timing and the table")
    parser.add_argument("--parity-epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test settings")
    parser.add_argument("--no-table", action="store_true", help="skip the per-seed benchmark table (CPU backtests)")
    parser.add_argument("--vintages", type=int, default=4, help="step 5: rolling vintages trained sequentially, then in parallel")
    parser.add_argument("--vintage-workers", type=int, default=0, help="step 5: processes at once (0 = --vintages)")
    parser.add_argument("--only-vintages", action="store_true", help="run step 5 only")
    args = parser.parse_args()
    device = resolve_device(args.device)
    n_instruments, n_seeds, parity_epochs = args.instruments, args.seeds, args.parity_epochs
    timing_config = TrainConfig(device=args.device, seed=0)  # benchmark profile
    if args.quick:
        n_instruments, n_seeds, parity_epochs = min(n_instruments, 6), min(n_seeds, 2), 1
        timing_config = replace(timing_config, n_epochs=2, early_stop=1)
    started = time.perf_counter()
    train, valid, test, labels, prices, n_instruments = build_sets(args.panel, n_instruments)
    prepare_seconds = time.perf_counter() - started
    out = [
        f"### GPU check ({'quick smoke test' if args.quick else 'full'}) — `python benchmarks/gpu_check.py`",
        "",
        f"device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({platform.processor() or 'cpu'}, "
           f"{torch.get_num_threads()} threads)")
        + f"; torch {torch.__version__}; panel `{args.panel.name}`, {n_instruments} instruments: "
        f"{len(train):,} train / {len(valid):,} valid / {len(test):,} test samples (prepared in {prepare_seconds:.1f} s)",
        "",
    ]
    vintage_config = replace(timing_config, n_epochs=min(timing_config.n_epochs, 2 if args.quick else 20))
    if args.only_vintages:
        out += ["| check | result | target |", "|---|---|---|"]
        out += parallel_vintages(vintage_windows(args.vintages), vintage_config, args.vintage_workers or args.vintages)
        out += ["", f"Total {time.perf_counter() - started:.1f} s."]
        print("\n".join(out))
        return

    # 1. eager vs graphs, one seed, a few epochs (no early stop: patience above the epochs).
    parity = replace(timing_config, n_epochs=parity_epochs, early_stop=parity_epochs + 1)
    eager = train_alstm(train, valid, replace(parity, cuda_graphs=False), log=quiet)
    graphed = train_alstm(train, valid, parity, log=quiet)
    eager_pred, graphed_pred = predict(eager.model, test), predict(graphed.model, test)
    loss_rel = max(rel_diff(graphed.train_losses, eager.train_losses), rel_diff(graphed.valid_losses, eager.valid_losses))
    pred_abs = abs_diff(graphed_pred, eager_pred)
    out.append("| check | result | target |")
    out.append("|---|---|---|")
    out.append(
        f"| graphs vs eager, seed 0, {parity_epochs} epochs ({graphed.engine} vs {eager.engine}) | losses max rel diff "
        f"{loss_rel:.2e}, test predictions max abs diff {pred_abs:.2e} | ≤ 1e-6 rel, ≤ 1e-5 abs |"
    )

    # 2. K seeds together vs each alone.
    seeds_config = replace(parity, seed=None, seeds=tuple(range(min(n_seeds, 3))))
    together = train_seeds(train, valid, seeds_config, log=quiet)
    together_pred = predict_per_seed(together.ensemble, test)
    worst_loss, worst_pred = 0.0, 0.0
    for run in together.runs:
        alone = train_alstm(train, valid, seeds_config.for_seed(run.seed), log=quiet)
        worst_loss = max(worst_loss, rel_diff(run.valid_losses, alone.valid_losses), rel_diff(run.train_losses, alone.train_losses))
        worst_pred = max(worst_pred, abs_diff(together_pred[run.seed], predict(alone.model, test)))
    out.append(
        f"| {len(together.runs)} seeds together ({together.engine}) vs alone | losses max rel diff {worst_loss:.2e}, "
        f"predictions max abs diff {worst_pred:.2e} | ≤ 1e-5 |"
    )

    # 3. timings, benchmark profile.
    if device.type == "cuda":
        torch.cuda.synchronize()
    one = train_alstm(train, valid, timing_config, log=quiet)
    out.append(
        f"| fit, 1 seed, {'quick' if args.quick else 'benchmark'} profile ({one.engine}) | {one.wall_seconds:.1f} s, "
        f"{one.epochs_run} epochs ({one.wall_seconds / one.epochs_run:.2f} s/epoch), best epoch {one.best_epoch} | "
        f"≤ 12 s (400 stocks) |"
    )
    many_config = replace(timing_config, seed=None, seeds=tuple(range(n_seeds)))
    many = train_seeds(train, valid, many_config, log=quiet)
    epochs = [run.epochs_run for run in many.runs]
    out.append(
        f"| fit, {n_seeds} seeds together ({many.engine}) | {many.wall_seconds:.1f} s, epochs per seed "
        f"{min(epochs)}–{max(epochs)} (total {sum(epochs)}) | ≤ 90 s for 20 (400 stocks) |"
    )
    if device.type == "cuda":
        out.append(f"| peak GPU memory | {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB | |")

    # 5. rolling vintages on one device: sequential vs a process each.
    if args.vintages > 1:
        out += parallel_vintages(vintage_windows(args.vintages), vintage_config, args.vintage_workers or args.vintages)

    # 4. Qlib's table for those seeds on the test segment.
    if not args.no_table:
        table_started = time.perf_counter()
        per_seed = predict_per_seed(many.ensemble, test)
        frames = {
            seed: pd.DataFrame({"date": test.dates, "instrument": test.instruments, "score": scores})
            for seed, scores in per_seed.items()
        }
        topk = TopkDropoutConfig(topk=min(50, max(1, n_instruments // 2)), n_drop=min(5, max(1, n_instruments // 10)))
        table = seed_benchmark_table(frames, labels, prices, topk)
        out += [
            "",
            f"Test segment {TEST[0]}..{TEST[1]}, TopkDropout topk {topk.topk} n_drop {topk.n_drop}, "
            f"equal-weight benchmark ({time.perf_counter() - table_started:.1f} s):",
            "",
            seed_table_markdown(table),
        ]
    out.append("")
    out.append(f"Total {time.perf_counter() - started:.1f} s.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
