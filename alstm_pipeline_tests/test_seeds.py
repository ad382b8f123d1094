"""Seeds as one unit (train_seeds, SeedEnsemble, ensemble checkpoints) and the CUDA-graph
loop's logic, on the CPU.

Data: 4 instruments of Qlib's processed golden frame, train 2012–2014 (3 batches of 800)
/ valid 2015 (1 batch). The graph loop (graphs.py) is run here with its CUDA calls swapped
for a stand-in that re-runs each captured step eagerly at every replay: that pins the
loop's own logic (per-seed RNG streams, the undone warm-up, lockstep passes, per-seed
early stopping) bit for bit against single eager runs. Real graphs: test_gpu.py.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from alstm_pipeline.dataset import DATA_COLUMNS, build_samples
from alstm_pipeline.model import (
    MAX_SEEDS,
    WEIGHTS_FILE,
    ALSTMModel,
    SeedEnsemble,
    TrainConfig,
    load_checkpoint,
    plot_losses,
    predict,
    predict_per_seed,
    save_checkpoint,
    train_alstm,
    train_seeds,
)
from alstm_pipeline.model import graphs

N_INSTRUMENTS = 4
TRAIN_RANGE = ("2012-01-01", "2014-12-31")
VALID_RANGE = ("2015-01-01", "2015-12-31")
# Patience 1 over 3 epochs: on this slice seeds stop at different epochs.
TWO_SEEDS = TrainConfig(seeds=(0, 2), n_epochs=3, early_stop=1, device="cpu")


@pytest.fixture(scope="module")
def sets(golden_dir):
    processed = pd.read_parquet(golden_dir / "alstm_processed.parquet")
    instruments = sorted(processed["instrument"].unique())[:N_INSTRUMENTS]
    frame = processed[processed["instrument"].isin(instruments)].rename(columns={"LABEL0_learn": "LABEL0"})
    frame = frame.dropna(subset=["LABEL0"])[list(DATA_COLUMNS)]
    calendar = pd.DatetimeIndex(np.unique(frame["date"]))
    return build_samples(frame, *TRAIN_RANGE, calendar), build_samples(frame, *VALID_RANGE, calendar)


@pytest.fixture(scope="module")
def singles(sets):
    """Each seed of TWO_SEEDS trained alone, the reference every unit must equal."""
    return {seed: train_alstm(*sets, TWO_SEEDS.for_seed(seed), log=lambda line: None) for seed in TWO_SEEDS.seeds}


@pytest.fixture(scope="module")
def unit(sets):
    lines: list[str] = []
    return train_seeds(*sets, TWO_SEEDS, log=lines.append), lines


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def _assert_same_run(run, single) -> None:
    assert run.seed == single.seed
    assert run.train_losses == single.train_losses
    assert run.valid_losses == single.valid_losses
    assert (run.best_epoch, run.stopped_early) == (single.best_epoch, single.stopped_early)
    assert _states_equal(run.model, single.model)


# --- configuration -------------------------------------------------------------------------


def test_seeds_default_to_the_single_seed_and_accept_lists():
    assert TrainConfig().seed_list == (None,)
    assert TrainConfig(seed=3).seed_list == (3,)
    config = TrainConfig.profile("quick", seeds=[4, 2, 9])
    assert config.seeds == (4, 2, 9) and config.seed_list == (4, 2, 9)
    assert config.to_dict()["seeds"] == [4, 2, 9]
    assert json.loads(json.dumps(config.to_dict()))["seeds"] == [4, 2, 9]
    assert config.for_seed(2) == replace(config, seeds=(), seed=2)
    assert TrainConfig(seed=4, seeds=(4, 5)).seed_list == (4, 5)  # seed may repeat seeds[0]


@pytest.mark.parametrize(
    ("seeds", "seed", "message"),
    [
        ((1, 1), None, "distinct"),
        ((1, "2"), None, "must be ints"),
        (tuple(range(MAX_SEEDS + 1)), None, "at most 20 seeds"),
        ((1, 2), 7, "seed 7 disagrees"),
    ],
)
def test_bad_seeds_are_refused(seeds, seed, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(seeds=seeds, seed=seed)


# --- CPU: one seed after another, each its single run bit for bit --------------------------


def test_each_seed_of_the_unit_equals_its_run_alone(unit, singles):
    result, lines = unit
    assert result.seeds == [0, 2] and result.engine == "eager" and result.device == "cpu"
    for run in result.runs:
        _assert_same_run(run, singles[run.seed])
    assert any(line.startswith("[seed 2] epoch   0") for line in lines)


def test_seeds_stop_early_on_their_own(unit):
    result, _ = unit
    for run in result.runs:
        assert run.best_epoch == int(np.argmin(run.valid_losses))
        assert run.epochs_run == min(TWO_SEEDS.n_epochs, run.best_epoch + 1 + TWO_SEEDS.early_stop)
    # This slice makes the two seeds stop at different epochs; if it ever did not, the test
    # above would no longer show per-seed stopping.
    assert len({run.epochs_run for run in result.runs}) == 2


def test_ensemble_predicts_the_mean_of_the_seeds_scores(unit, sets):
    result, _ = unit
    _, valid = sets
    per_seed = predict_per_seed(result.ensemble, valid, device="cpu")
    assert list(per_seed) == [0, 2]
    for run in result.runs:
        np.testing.assert_array_equal(per_seed[run.seed], predict(run.model, valid, device="cpu"))
    expected = ((per_seed[0].astype(np.float64) + per_seed[2].astype(np.float64)) / 2).astype(np.float32)
    scores = predict(result.ensemble, valid, device="cpu")
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores, expected)
    assert not np.array_equal(per_seed[0], per_seed[2])  # the mean is not a copy of one seed
    with torch.no_grad():  # forward agrees with predict
        np.testing.assert_allclose(result.ensemble(valid.windows(torch.arange(50))).numpy(), scores[:50], atol=1e-6)


def test_one_seed_unit_is_the_single_run(sets, singles):
    result = train_seeds(*sets, TWO_SEEDS.for_seed(2), log=lambda line: None)
    _assert_same_run(result.runs[0], singles[2])
    assert result.predictor is result.runs[0].model  # saved with Qlib's keys


def test_warm_start_takes_one_initial_model_per_seed(sets):
    with pytest.raises(ValueError, match="1 initial models for 2 seeds"):
        train_seeds(*sets, TWO_SEEDS, log=lambda line: None, initial_models=[ALSTMModel()])


# --- checkpoints ------------------------------------------------------------------------------


def test_ensemble_checkpoint_round_trips_with_its_seeds_and_per_seed_card(unit, sets, tmp_path):
    result, _ = unit
    _, valid = sets
    card = result.card({"train": list(TRAIN_RANGE)}, code="test")
    assert card["seeds"] == [0, 2] and card["ensemble_size"] == 2 and "best_epoch" not in card
    assert "mean" in card["ensemble"]
    for entry, run in zip(card["per_seed"], result.runs, strict=True):
        assert entry["seed"] == run.seed and entry["best_epoch"] == run.best_epoch
        assert entry["best_valid_loss"] == run.best_valid_loss and entry["epochs_run"] == run.epochs_run
    folder = save_checkpoint(result.ensemble, tmp_path, card)
    tensors = load_file(str(folder / WEIGHTS_FILE))
    assert "members.1.net.fc_in.weight" in tensors and len(tensors) == 2 * len(ALSTMModel().state_dict())
    loaded, loaded_card = load_checkpoint(folder)
    assert isinstance(loaded, SeedEnsemble) and loaded.seeds == [0, 2]
    assert _states_equal(loaded, result.ensemble)
    assert loaded_card["per_seed"] == json.loads(json.dumps(card["per_seed"]))
    np.testing.assert_array_equal(predict(loaded, valid), predict(result.ensemble, valid))
    png = plot_losses(loaded_card)
    assert png.startswith(b"\x89PNG")


def test_one_seed_checkpoint_keeps_qlibs_keys_and_loads_as_a_model(sets, singles, tmp_path):
    result = train_seeds(*sets, TWO_SEEDS.for_seed(0), log=lambda line: None)
    card = result.card(code="test")
    assert card["seeds"] == [0] and card["best_epoch"] == singles[0].best_epoch
    assert card["per_seed"][0]["valid_losses"] == singles[0].valid_losses
    folder = save_checkpoint(result.ensemble, tmp_path, card)  # the one-seed ensemble, too
    assert sorted(load_file(str(folder / WEIGHTS_FILE))) == sorted(ALSTMModel().state_dict())
    loaded, _ = load_checkpoint(folder)
    assert type(loaded) is ALSTMModel and _states_equal(loaded, singles[0].model)


def test_ensemble_card_with_other_seeds_is_refused(unit, tmp_path):
    result, _ = unit
    card = {**result.card(code="test"), "seeds": [0, 6]}
    with pytest.raises(Exception, match="differ from the ensemble's seeds"):
        save_checkpoint(result.ensemble, tmp_path, card)


# --- the CUDA-graph loop, CUDA swapped for an eager stand-in -----------------------------------


class _Replay:
    """A 'graph' that re-runs its captured work: zero grads, work, result into the static output."""

    def __init__(self, work, before_each, output: torch.Tensor) -> None:
        self.work, self.before_each, self.output = work, before_each, output

    def replay(self) -> None:
        self.before_each()
        self.output.copy_(self.work())


class _EagerStandIn:
    """graphs.CudaOps on the CPU: no streams, the default Adam, captures that replay eagerly.

    Its capture really runs the warm-up steps and the captured step (a real capture runs
    only the warm-ups), so a loop that failed to undo them would fail these tests.
    """

    new_stream = staticmethod(lambda device: None)
    on = staticmethod(lambda stream: contextlib.nullcontext())
    wait_for_default = staticmethod(lambda stream: None)
    synchronize = staticmethod(lambda device: None)
    optimizer = staticmethod(lambda params, lr: torch.optim.Adam(params, lr=lr))

    @staticmethod
    def capture(work, before_each):
        for _ in range(graphs.WARMUP_STEPS):
            before_each()
            work()
        before_each()
        output = work().clone()
        return _Replay(work, before_each, output), output


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(graphs, "OPS", _EagerStandIn)


def test_graph_loop_trains_each_seed_like_its_run_alone(stand_in, sets, singles):
    lines: list[str] = []
    configs = [TWO_SEEDS.for_seed(seed) for seed in TWO_SEEDS.seeds]
    runs = graphs.train_graphed(
        *sets, configs, lines.append, [None, None], torch.device("cpu"), ["[seed 0] ", "[seed 2] "]
    )
    for run in runs:
        assert run.engine == "cuda graphs"
        _assert_same_run(run, singles[run.seed])
    # Lockstep with per-seed stopping: the seed that stopped first logs fewer epochs.
    assert [sum(line.startswith(f"[seed {s}] epoch") for line in lines) for s in (0, 2)] == [
        run.epochs_run for run in runs
    ]


def test_graph_loop_leaves_the_global_rng_where_the_last_single_run_does(stand_in, sets):
    config = replace(TWO_SEEDS.for_seed(2), n_epochs=1, score_train=False)
    train_alstm(*sets, config, log=lambda line: None)
    after_single = torch.get_rng_state()
    graphs.train_graphed(*sets, [config], lambda line: None, [None], torch.device("cpu"), [""])
    assert torch.equal(torch.get_rng_state(), after_single)


def test_graph_loop_scores_nan_labels_like_the_eager_loop(stand_in, sets):
    # Validation labels with NaN (allowed; training labels with NaN keep the run eager).
    train, valid = sets
    labels = valid.labels.clone()
    labels[valid.index[::4, -1]] = float("nan")
    valid = replace(valid, labels=labels)
    config = replace(TWO_SEEDS.for_seed(0), n_epochs=1)
    single = train_alstm(train, valid, config, log=lambda line: None)
    (run,) = graphs.train_graphed(train, valid, [config], lambda line: None, [None], torch.device("cpu"), [""])
    assert run.train_losses == single.train_losses
    # sum/count instead of a boolean-masked mean: equal up to float64 rounding.
    assert run.valid_losses == pytest.approx(single.valid_losses, rel=1e-12)


def test_graph_loop_refuses_a_cpu_device(sets):
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        graphs.train_graphed(*sets, [TWO_SEEDS.for_seed(0)], print, [None], torch.device("cpu"), [""])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_graphs_are_never_chosen_on_the_cpu(sets):
    from alstm_pipeline.model.training import graphs_unusable

    assert graphs_unusable(TWO_SEEDS, torch.device("cpu"), sets[0]) == "not a CUDA device"
    assert "dropout" in graphs_unusable(replace(TWO_SEEDS, dropout=0.1), torch.device("cuda"), sets[0])
    assert graphs_unusable(replace(TWO_SEEDS, cuda_graphs=False), torch.device("cuda"), sets[0]) == "cuda_graphs=False"
