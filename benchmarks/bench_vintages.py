"""Rolling vintages sequential vs parallel: the real `evaluate-rolling` path, timed.

Loads the bundled sample (or ``--source``) into a temporary home through the real assets,
copies the warehouse, then trains and registers the same rolling vintages twice:

- sequential: one alstm_model run per vintage, torch with every core (today's default);
- parallel: ``--workers`` processes, the cores shared out (vintage_pool), then the same
  alstm_model runs registering the candidates in vintage order.

Prints the wall time of each phase, the per-vintage costs (training in a worker,
registration through Dagster), the speed-up, peak memory, whether the gate decisions
agree, and the 54-vintage cluster estimate from the measured costs. The full measurement
(issue 16: 18 vintages = step 60 over 2017-01-01..2021-04-21, Qlib's windows, quick profile):

    python benchmarks/bench_vintages.py --step 60 --workers 2

A reduced configuration that finishes in minutes on a shared 2-core machine:

    python benchmarks/bench_vintages.py --step 60 --instruments 20 --train-days 250 --valid-days 60 --epochs 2

``--sequential-threads 1`` runs the sequential side with one torch thread, as each worker
has on a 2-core machine: the gain of the processes alone, and bit-equal weights.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import torch

from alstm_pipeline import cli, vintage_pool, vintages
from alstm_pipeline.definitions import build_definitions
from alstm_pipeline.defs.resources import MarketDataResource, ModelStoreResource, WarehouseResource
from alstm_pipeline.runner import materialize
from alstm_pipeline.settings import BUNDLED_SAMPLE, Settings
from alstm_pipeline.warehouse import Warehouse, registry, tables

DATA_ASSETS = "universe,raw_ohlcv,trading_calendar,alpha158_features,labels"


def _peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, workers) / 1024


class Home:
    """A home (warehouse, models) with the project's definitions and an ephemeral instance."""

    def __init__(self, root: Path, source: Path, universe: Path | None) -> None:
        self.settings = Settings(source=source, home=root, universe=universe, start=None, end=None, live=False)
        self.defs = build_definitions({
            "warehouse": WarehouseResource(path=str(self.settings.warehouse_path)),
            "market_data": MarketDataResource(source_path=str(source), universe_path=str(universe or "")),
            "model_store": ModelStoreResource(root=str(self.settings.models_dir)),
        })
        self.instance = dg.DagsterInstance.ephemeral()
        self.store = Warehouse(self.settings.warehouse_path)


def _universe(root: Path, source: Path, count: int) -> Path | None:
    if not count:
        return None
    names = sorted(pd.read_parquet(source, columns=["instrument"])["instrument"].unique())[:count]
    path = root / "universe.txt"
    path.write_text("".join(f"{name}\t2000-01-01\t2030-12-31\n" for name in names))
    return path


def _data_start(calendar_guess: pd.DatetimeIndex, start: str, days_before: int) -> str:
    first = int(calendar_guess.searchsorted(pd.Timestamp(start)))
    # features look back 60 trading days and windows 20 more; 90 is a margin
    return str(calendar_guess[max(0, first - days_before - 90)].date())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=BUNDLED_SAMPLE)
    parser.add_argument("--instruments", type=int, default=0, help="first N instruments (0 = all of the source)")
    parser.add_argument("--start", default="2017-01-01")
    parser.add_argument("--end", default="2021-04-21")
    parser.add_argument("--step", type=int, default=60)
    parser.add_argument("--train-days", type=int, default=1764)
    parser.add_argument("--valid-days", type=int, default=504)
    parser.add_argument("--trunc-days", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=0, help="epoch cap (0 = the quick profile's 20, early stop 5)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--sequential-threads", type=int, default=0,
                        help="torch threads of the sequential run (0 = torch's default, all cores); 1 isolates the gain of "
                             "parallel processes from that of fewer threads per process")
    parser.add_argument("--pods", type=int, default=18, help="for the cluster estimate: vintages trained at once")
    parser.add_argument("--keep", type=Path, help="keep the homes in this folder (default: a temp dir, removed)")
    args = parser.parse_args()

    root = Path(args.keep or tempfile.mkdtemp(prefix="bench_vintages_"))
    root.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    print(f"torch {torch.__version__}, {cores} cores, load {os.getloadavg()[0]:.1f}; home {root}")
    try:
        sequential = Home(root / "sequential", args.source, _universe(root, args.source, args.instruments))
        dates = pd.DatetimeIndex(sorted(pd.to_datetime(pd.read_parquet(args.source, columns=["date"])["date"]).unique()))
        first_day = _data_start(dates, args.start, args.train_days + args.valid_days + args.trunc_days)
        weekdays = (first_day, args.end)
        began = time.perf_counter()
        loaded = materialize(sequential.defs, DATA_ASSETS, sequential.instance, weekdays)
        assert all(result.success for result in loaded), "loading the data failed"
        print(f"data {first_day}..{args.end} loaded in {time.perf_counter() - began:.0f} s")
        (root / "parallel").mkdir()
        shutil.copy(sequential.settings.warehouse_path, root / "parallel" / "warehouse.duckdb")
        parallel = Home(root / "parallel", args.source, sequential.settings.universe)

        calendar = tables.read_calendar(sequential.store)
        keys = vintages.rolling_keys(calendar, args.start, args.end, args.step)
        config = {"mode": "rolling", "train_days": args.train_days, "valid_days": args.valid_days,
                  "trunc_days": args.trunc_days, "seed": 0}
        if args.epochs:
            config["n_epochs"] = args.epochs
        n_instruments = len(tables.read_universe(sequential.store).spans["instrument"].unique())
        print(f"{len(keys)} vintages {keys[0]} … {keys[-1]} (step {args.step}), {n_instruments} instruments, "
              f"train {args.train_days} / valid {args.valid_days} days, epochs {args.epochs or 'quick profile'}")

        if args.sequential_threads:
            torch.set_num_threads(args.sequential_threads)
        sequential_threads = torch.get_num_threads()
        began = time.perf_counter()
        cli.register_in_order(sequential.defs, sequential.instance, keys, config, sequential.settings)
        sequential_seconds = time.perf_counter() - began

        began = time.perf_counter()
        folder = cli.train_candidates(keys, calendar, config, parallel.settings, args.workers)
        training_seconds = time.perf_counter() - began
        summaries = {path.name: path for path in folder.iterdir()}
        worker_seconds = [float(_card_seconds(summaries[key])) for key in keys]
        began = time.perf_counter()
        cli.register_in_order(parallel.defs, parallel.instance, keys, {**config, "candidates": str(folder)}, parallel.settings)
        registering_seconds = time.perf_counter() - began
        parallel_seconds = training_seconds + registering_seconds

        expected = registry.read_registry(sequential.store).sort_values("vintage")
        got = registry.read_registry(parallel.store).sort_values("vintage")
        same_status = expected["status"].tolist() == got["status"].tolist()
        same_weights = expected["sha256"].tolist() == got["sha256"].tolist()
        loss_gap = float(np.max(np.abs(expected["valid_loss"].to_numpy() - got["valid_loss"].to_numpy())))
        per_vintage_sequential = sequential_seconds / len(keys)
        per_registration = registering_seconds / len(keys)
        print()
        print(f"sequential ({sequential_threads} thread(s)): {sequential_seconds:7.1f} s = {per_vintage_sequential:.1f} s per vintage")
        print(f"parallel ({args.workers} workers × {vintage_pool.threads_per_worker(args.workers)} thread(s)): "
              f"{parallel_seconds:7.1f} s = training {training_seconds:.1f} s + registering {registering_seconds:.1f} s "
              f"({per_registration:.2f} s per vintage)")
        print(f"speed-up {sequential_seconds / parallel_seconds:.2f}× on {cores} cores; one vintage in a worker "
              f"{np.median(worker_seconds):.1f} s median ({min(worker_seconds):.1f}–{max(worker_seconds):.1f} s)")
        print(f"gate decisions equal: {same_status} ({got['status'].value_counts().to_dict()}); weights bit-equal: "
              f"{same_weights} (equal only at equal threads per vintage); max |valid loss gap| {loss_gap:.2e}")
        print(f"peak RSS {_peak_rss_mib():.0f} MiB (largest of this process and any worker)")
        # 54 vintages (step 20) on a cluster: every vintage a pod (or a GPU stream), the pods
        # in waves of --pods, then registration one by one. Pod start-up is not measured here.
        waves = math.ceil(54 / args.pods)
        estimate = waves * max(worker_seconds) + 54 * per_registration
        print(f"54 vintages, {args.pods} at a time: {waves} wave(s) × {max(worker_seconds):.1f} s (slowest measured vintage, "
              f"{vintage_pool.threads_per_worker(args.workers)} thread(s)) + 54 × {per_registration:.2f} s registration "
              f"≈ {estimate:.0f} s, plus pod start-up; sequentially here ≈ {54 * per_vintage_sequential:.0f} s")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def _card_seconds(folder: Path) -> float:
    import json

    return json.loads((folder / "card.json").read_text())["wall_seconds"]


if __name__ == "__main__":
    main()
