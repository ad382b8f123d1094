"""Qlib's side of ``bench_alpha360_qlib.py``: runs inside a throwaway environment with pyqlib.

Not imported by the project (Qlib is not a dependency) and imports nothing from it; the
driver reuses its pause-and-time helpers (`PausedEpochs`) for our side. Started
by the driver as ``<qlib python> qlib_alpha360_worker.py PROVIDER OUT_DIR N_EPOCHS THREADS``;
it builds Qlib's ``workflow_config_alstm_Alpha360.yaml`` dataset on the provider's ``all``
market, then runs Qlib's own ``ALSTM.fit`` (seed 0, ``n_epochs`` capped by the driver) and
``ALSTM.predict`` on the test segment. Between epochs it waits for a ``go`` line on stdin, so
that the driver can run its epochs in lockstep with ours on a shared machine; each finished
epoch and the end are reported as ``@@ {json}`` lines on stdout (Qlib's own log goes to stderr).

The pause sits in a wrapper around ``train_epoch`` (and ``test_epoch`` is wrapped only to time
it): ``fit`` itself, its shuffles, early stopping and best-weight restore are Qlib's code.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HANDLER = {
    "start_time": "2008-01-01",
    "end_time": "2020-08-01",
    "fit_start_time": "2008-01-01",
    "fit_end_time": "2014-12-31",
    "instruments": "all",
    "infer_processors": [
        {"class": "RobustZScoreNorm", "kwargs": {"fields_group": "feature", "clip_outlier": True}},
        {"class": "Fillna", "kwargs": {"fields_group": "feature"}},
    ],
    "learn_processors": [{"class": "DropnaLabel"}, {"class": "CSRankNorm", "kwargs": {"fields_group": "label"}}],
    "label": ["Ref($close, -2) / Ref($close, -1) - 1"],
}
SEGMENTS = {
    "train": ("2008-01-01", "2014-12-31"),
    "valid": ("2015-01-01", "2016-12-31"),
    "test": ("2017-01-01", "2020-08-01"),
}
MODEL = {  # the YAML's kwargs (rnn_type LSTM is swallowed by **kwargs in 0.9.7) + seed 0
    "d_feat": 6, "hidden_size": 64, "num_layers": 2, "dropout": 0.0, "lr": 1e-3, "early_stop": 20,
    "batch_size": 800, "metric": "loss", "loss": "mse", "GPU": 0, "rnn_type": "LSTM", "seed": 0,
}


def say(message: dict) -> None:
    print("@@ " + json.dumps(message), flush=True)


def epoch_message(passes: list[tuple[float, float]]) -> dict:
    """One epoch's three passes (train, train scoring, valid scoring) as (wall, CPU) seconds.

    CPU time is the process's: with one torch thread it is the work done, whatever else the
    machine runs; wall time also counts the waits for a core.
    """
    names = ("train_pass", "train_scoring", "valid_scoring")
    return {
        "event": "epoch",
        **{name: wall for name, (wall, _) in zip(names, passes)},
        "cpu": {name: cpu for name, (_, cpu) in zip(names, passes)},
        "seconds": sum(wall for wall, _ in passes),
        "cpu_seconds": sum(cpu for _, cpu in passes),
    }


def wait_for_go() -> None:
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit(f"worker: expected 'go', got {line!r}")


class PausedEpochs:
    """Times each pass ((wall, CPU) seconds); the pass that opens an epoch first reports the
    previous epoch and waits for the driver's ``go``."""

    def __init__(self) -> None:
        self.passes: list[tuple[float, float]] = []

    def between(self) -> None:
        if self.passes:
            say(epoch_message(self.passes[-3:]))
        wait_for_go()

    def timed(self, function, opens_epoch: bool = False):
        def run(*args):
            if opens_epoch:
                self.between()
            t0, c0 = time.perf_counter(), time.process_time()
            result = function(*args)
            self.passes.append((time.perf_counter() - t0, time.process_time() - c0))
            return result

        return run


def main() -> None:
    provider, out_dir, n_epochs, threads = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    import qlib
    from qlib.contrib.data.handler import Alpha360
    from qlib.contrib.model.pytorch_alstm import ALSTM
    from qlib.data.dataset import DatasetH

    qlib.init(provider_uri=str(provider), region="us", kernels=1)
    started = time.perf_counter()
    dataset = DatasetH(handler=Alpha360(**HANDLER), segments=SEGMENTS)
    say({"event": "ready", "prepare_seconds": time.perf_counter() - started, "torch": torch.__version__,
         "qlib": qlib.__version__, "threads": torch.get_num_threads(),
         "prepare_cpu_seconds": time.process_time()})

    model = ALSTM(n_epochs=n_epochs, **MODEL)
    epochs = PausedEpochs()
    model.train_epoch = epochs.timed(model.train_epoch, opens_epoch=True)
    model.test_epoch = epochs.timed(model.test_epoch)
    evals: dict = {}
    model.fit(dataset, evals_result=evals, save_path=str(out_dir / "qlib_alstm.pt"))
    epochs.between()  # reports the last epoch; prediction waits for its turn
    scores = model.predict(dataset, "test")
    frame = scores.rename("score").reset_index()
    frame.columns = ["date", "instrument", "score"]
    frame.to_parquet(out_dir / "qlib_test_scores.parquet", index=False)
    valid_scores = np.asarray(evals["valid"], dtype=np.float64)
    say({
        "event": "done",
        "train_scores": [float(s) for s in evals["train"]],
        "valid_scores": [float(s) for s in valid_scores],
        "best_epoch": int(np.argmax(valid_scores)),  # fit keeps the first strictly best score
        "test_rows": len(frame),
    })


if __name__ == "__main__":
    main()
