"""ALSTM_PIPELINE_TORCH_THREADS caps the threads torch trains and scores with."""

from __future__ import annotations

import pytest
import torch

from alstm_pipeline.threads import apply_torch_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_setting_caps_torch_threads(monkeypatch, restore_threads):
    monkeypatch.setenv("ALSTM_PIPELINE_TORCH_THREADS", "1")
    assert apply_torch_threads() == 1 == torch.get_num_threads()


def test_unset_leaves_torch_its_default(monkeypatch, restore_threads):
    monkeypatch.delenv("ALSTM_PIPELINE_TORCH_THREADS", raising=False)
    before = torch.get_num_threads()
    assert apply_torch_threads() == before


def test_a_bad_value_is_refused_with_the_setting_named(monkeypatch):
    monkeypatch.setenv("ALSTM_PIPELINE_TORCH_THREADS", "two")
    with pytest.raises(ValueError, match="ALSTM_PIPELINE_TORCH_THREADS"):
        apply_torch_threads()
