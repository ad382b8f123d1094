"""ALSTM network vs Qlib's golden forward pass (semantics doc §7.1), and checkpoints of it."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest
import torch

from alstm_pipeline.model import (
    CARD_FILE,
    WEIGHTS_FILE,
    ALSTMModel,
    CheckpointError,
    checkpoint_version,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    parameter_count,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def golden_forward(golden_dir):
    with np.load(golden_dir / "alstm_forward.npz", allow_pickle=False) as npz:
        params = {k.removeprefix("param/"): torch.from_numpy(npz[k]) for k in npz.files if k.startswith("param/")}
        return params, torch.from_numpy(npz["inputs"]), npz["outputs"]


def _eval_outputs(model: ALSTMModel, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(inputs).numpy()


def test_state_dict_keys_and_shapes_match_qlib(golden_forward):
    params, _, _ = golden_forward
    state = ALSTMModel().state_dict()
    assert list(state) == list(params)
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in params.items()}
    assert parameter_count(ALSTMModel()) == 53_505


def test_seed_0_initialisation_equals_qlibs_state_dict(golden_forward):
    # §7.1: same module-creation order → same default init from the same seed.
    params, _, _ = golden_forward
    torch.manual_seed(0)
    state = ALSTMModel().state_dict()
    for key, value in params.items():
        assert torch.equal(state[key], value), key


def test_qlib_state_dict_reproduces_qlib_outputs(golden_forward):
    params, inputs, expected = golden_forward
    model = ALSTMModel()
    model.load_state_dict(params, strict=True)
    outputs = _eval_outputs(model, inputs)
    assert outputs.shape == (400,) and outputs.dtype == np.float32
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("rnn_type", ["GRU", "LSTM"])
def test_forward_maps_batch_steps_features_to_one_score_per_sample(rnn_type):
    torch.manual_seed(0)
    model = ALSTMModel(d_feat=5, hidden_size=8, num_layers=1, rnn_type=rnn_type)
    assert isinstance(model.rnn, getattr(torch.nn, rnn_type))
    assert _eval_outputs(model, torch.randn(7, 11, 5)).shape == (7,)


def test_unknown_rnn_type_is_rejected():
    with pytest.raises(ValueError, match="rnn_type"):
        ALSTMModel(rnn_type="transformer")


def test_checkpoint_round_trip_keeps_qlib_outputs(golden_forward, tmp_path):
    params, inputs, expected = golden_forward
    model = ALSTMModel()
    model.load_state_dict(params)
    when = datetime(2024, 1, 5, 9, 30, tzinfo=timezone.utc)
    card = {"version": checkpoint_version(model, when), "note": "qlib golden weights"}
    folder = save_checkpoint(model, tmp_path, card)

    assert folder.parent == tmp_path and folder.name == checkpoint_version(model, when)
    assert folder.name.startswith("20240105T093000Z-")
    loaded, card = load_checkpoint(folder)
    assert card["version"] == folder.name and card["note"] == "qlib golden weights"
    assert card["parameter_count"] == 53_505 and card["architecture"]["rnn_type"] == "GRU"
    for key, value in params.items():
        assert torch.equal(loaded.state_dict()[key], value), key
    np.testing.assert_allclose(_eval_outputs(loaded, inputs), expected, rtol=0, atol=1e-5)


def test_versions_list_oldest_first(tmp_path):
    model = ALSTMModel()
    versions = [checkpoint_version(model, datetime(year, 5, 1, tzinfo=timezone.utc)) for year in (2024, 2023)]
    newer, older = (save_checkpoint(model, tmp_path, {"version": v}) for v in versions)
    assert list_checkpoints(tmp_path) == [older, newer]
    assert latest_checkpoint(tmp_path) == newer
    assert latest_checkpoint(tmp_path / "nothing-here") is None


def test_truncated_weights_file_error_names_the_file(tmp_path):
    folder = save_checkpoint(ALSTMModel(), tmp_path, {})
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(weights)):
        load_checkpoint(folder)


def test_weights_of_wrong_shape_error_names_the_file(tmp_path):
    folder = save_checkpoint(ALSTMModel(hidden_size=32), tmp_path, {})
    card_path = folder / CARD_FILE
    card = json.loads(card_path.read_text())
    card["architecture"]["hidden_size"] = 64  # card now disagrees with the stored tensors
    card_path.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=f"{folder / WEIGHTS_FILE}.*do not fit"):
        load_checkpoint(folder)


def test_missing_card_error_names_the_file(tmp_path):
    folder = save_checkpoint(ALSTMModel(), tmp_path, {})
    (folder / CARD_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{folder / CARD_FILE}.*missing"):
        load_checkpoint(folder)


def test_card_that_is_not_json_is_refused_before_writing(tmp_path):
    with pytest.raises(CheckpointError, match="not plain JSON"):
        save_checkpoint(ALSTMModel(), tmp_path, {"when": datetime.now()})
    assert list(tmp_path.iterdir()) == []


def test_card_of_other_weights_is_refused(tmp_path):
    card = {"version": checkpoint_version(ALSTMModel())}
    with pytest.raises(CheckpointError, match="belongs to other weights"):
        save_checkpoint(ALSTMModel(), tmp_path, card)


def test_weights_swapped_after_saving_fail_the_hash_check(tmp_path):
    folder = save_checkpoint(ALSTMModel(), tmp_path, {})
    other = save_checkpoint(ALSTMModel(), tmp_path, {})  # same shapes, other values
    (folder / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match=f"{folder / WEIGHTS_FILE}.*hash"):
        load_checkpoint(folder)
