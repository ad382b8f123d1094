"""Independent vintages trained at the same time: a process each, torch's threads split between them.

No Dagster here. A rolling evaluation is many vintages whose *training* depends only on
the data and their own windows, while their *promotion* depends on each other: the gate
compares a vintage with the vintage in force, and which one is in force depends on the
gate decisions before it. So the work is split in two:

1. **Train (in parallel).** Every vintage of the plan is trained from scratch in a worker
   process, on exactly the samples its ``alstm_model`` run would build
   (``vintage_samples``), and saved as a *candidate*: a safetensors checkpoint and its card
   under ``<candidates>/<vintage>/``. Nothing is registered; a candidate never serves.
2. **Register (in vintage order).** ``alstm_model`` runs once per vintage with config
   ``candidates``: it loads the candidate instead of training, gates it against the
   vintage in force and registers it in one transaction, as always. It refuses a vintage
   while an earlier candidate of the same folder is unregistered.

Registration in vintage order makes every gate compare with the vintage the sequential
run would compare with (the newest promoted one registered before it), so promotions,
serving and scores equal the sequential run's. Warm start is the one thing that cannot
be parallel — it starts from the vintage registered just before — so candidates are
always trained from scratch (what ``evaluate-rolling`` does sequentially too).

Bits: torch's CPU kernels split reductions by thread, so a candidate's weights equal its
sequential run's when both train with the same number of threads (``CandidateTask.threads``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from alstm_pipeline import feature_sets
from alstm_pipeline.settings import _int
from alstm_pipeline.vintages import VintagePlan
from alstm_pipeline.warehouse import Warehouse, backends, tables

PARALLEL_ENV = "ALSTM_PIPELINE_PARALLEL_VINTAGES"
# Under the models folder: candidates of one evaluation, removed once all are registered.
CANDIDATES = ".candidates"


class CandidateError(RuntimeError):
    """A candidate that cannot be trained, or cannot be registered for the vintage asked."""


def parallel_setting() -> int:
    """How many vintages train at once (``ALSTM_PIPELINE_PARALLEL_VINTAGES``; 1 = one after another)."""
    workers = _int(PARALLEL_ENV, 1)
    if workers < 1:
        raise ValueError(f"{PARALLEL_ENV} must be ≥ 1, not {workers}")
    return workers


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """torch threads for each of ``workers`` processes: the machine's cores (or ``threads``)
    shared out, at least one each. More threads than cores make every worker slower."""
    total = threads or len(os.sched_getaffinity(0))
    return max(1, total // max(1, workers))


def gpu_for(index: int, device: str) -> int | None:
    """The GPU of the ``index``-th vintage when the config trains on CUDA and the node has
    several: round robin, so ``workers`` ≤ GPUs concurrent vintages use distinct GPUs."""
    if device == "cpu":
        return None
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return index % count if count > 1 else None


def vintage_samples(store: Warehouse, fs, calendar: pd.DatetimeIndex, plan: VintagePlan):
    """(features, labels, normaliser statistics, train samples, valid samples) of a vintage:
    what alstm_model and a candidate worker both train on."""
    first = fs.features_start(calendar, plan)
    features = tables.read_model_features(store, fs.table, list(fs.columns), first, plan.valid_end)
    label = tables.read_labels(store, first, plan.valid_end)
    stats, train, valid = fs.training_sets(features, label, calendar, plan)
    return features, label, stats, train, valid


def card_ranges(fs, plan: VintagePlan) -> dict[str, str]:
    """The data ranges a vintage's card records (and a candidate is checked against)."""
    return {"vintage": plan.serves_from, "feature_set": fs.name, **plan.to_dict()}


@dataclass(frozen=True)
class CandidateTask:
    """One vintage to train in a worker: everything it needs, nothing that holds a file open."""

    plan: VintagePlan
    feature_set: str
    config: object  # TrainConfig (kept untyped: this module loads without torch)
    warehouse: dict[str, str]  # backends.location of the warehouse it reads (the DuckDB file or DuckLake)
    folder: str
    threads: int
    verbose: bool = True
    # On a node with several GPUs: the one this vintage trains on (torch's current device,
    # which "cuda"/"auto" resolve to); None = the first. Recorded in the card's device.
    gpu: int | None = None


def train_candidate(task: CandidateTask) -> dict[str, object]:
    """Train one vintage from scratch and save it as ``<folder>/<vintage>/`` (worker entry point)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(task.threads)
    try:
        return _train_candidate(task)
    finally:
        torch.set_num_threads(threads)  # a candidate trained in the caller's process leaves it as it was


def _train_candidate(task: CandidateTask) -> dict[str, object]:
    import torch

    from alstm_pipeline.model.publishing import publish_checkpoint

    if task.gpu is not None:
        torch.cuda.set_device(task.gpu)
    key = task.plan.serves_from
    began = time.perf_counter()
    fs = feature_sets.get(task.feature_set)
    store = backends.reopen(task.warehouse)
    calendar = tables.read_calendar(store)
    _, _, _, train, valid = vintage_samples(store, fs, calendar, task.plan)
    log = (lambda line: print(f"[vintage {key}] {line}", flush=True)) if task.verbose else (lambda line: None)
    result = fs.train(train, valid, task.config, log=log)
    card = result.card(data_ranges=card_ranges(fs, task.plan))
    # Published by a rename, as registered checkpoints are: a folder named after a vintage is complete.
    final = publish_checkpoint(result.predictor, task.folder, card, name=key)
    return {"vintage": key, "version": card["version"], "seconds": time.perf_counter() - began,
            "epochs_run": max(run["epochs_run"] for run in card["per_seed"]), "threads": task.threads, "path": str(final)}


def train_candidates(tasks: Sequence[CandidateTask], workers: int,
                     on_done: Callable[[dict], None] | None = None) -> list[dict[str, object]]:
    """Train every task, ``workers`` at a time (each in its own process; one worker trains
    in this process). Returns one summary per vintage in the tasks' order; every vintage
    that failed is named in one CandidateError after the others finished."""
    done: dict[str, dict] = {}
    failed: dict[str, str] = {}

    def record(key: str, outcome) -> None:
        if isinstance(outcome, BaseException):
            failed[key] = f"{type(outcome).__name__}: {outcome}"
        else:
            done[key] = outcome
            if on_done is not None:
                on_done(outcome)

    if workers <= 1:
        for task in tasks:
            try:
                record(task.plan.serves_from, train_candidate(task))
            except Exception as error:  # noqa: BLE001 - collected and reported together below
                record(task.plan.serves_from, error)
    else:
        # spawn, not fork: torch's thread pools and DuckDB's handles do not survive a fork.
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(train_candidate, task): task.plan.serves_from for task in tasks}
            for future in as_completed(futures):
                error = future.exception()
                record(futures[future], error if error is not None else future.result())
    if failed:
        raise CandidateError("; ".join(f"vintage {key}: {why}" for key, why in sorted(failed.items()))
                             + f" ({len(done)} of {len(tasks)} trained; nothing was registered)")
    return [done[task.plan.serves_from] for task in tasks]


def load_candidate(folder: str | Path, fs, plan: VintagePlan, config) -> tuple[object, dict[str, object]]:
    """The candidate of ``plan``'s vintage as (predictor, card), after checking it was
    trained for exactly these windows, this feature set and these hyper-parameters."""
    from alstm_pipeline.model import load_checkpoint

    path = Path(folder) / plan.serves_from
    if not path.is_dir():
        raise CandidateError(f"no candidate for vintage {plan.serves_from} in {folder}: train it first")
    predictor, card = load_checkpoint(path)
    problems = []
    recorded = {name: card.get("data", {}).get(name) for name in card_ranges(fs, plan)}
    if recorded != card_ranges(fs, plan):
        problems.append(f"trained for {recorded}, not {card_ranges(fs, plan)}")
    if card.get("config") != config.to_dict():
        problems.append(f"hyper-parameters {card.get('config')} differ from the run's {config.to_dict()}")
    if problems:
        raise CandidateError(f"candidate {path}: " + "; ".join(problems))
    return predictor, card


def unregistered_before(folder: str | Path, vintage: str, registered_versions: set[str]) -> list[str]:
    """Candidates of ``folder`` for vintages before ``vintage`` that are not registered yet:
    registering ``vintage`` first would change which vintage its gate compares with."""
    from alstm_pipeline.model.checkpoint import CARD_FILE

    waiting = []
    for path in sorted(Path(folder).iterdir()):
        if path.name < vintage and (path / CARD_FILE).exists():
            if json.loads((path / CARD_FILE).read_text()).get("version") not in registered_versions:
                waiting.append(path.name)
    return waiting
