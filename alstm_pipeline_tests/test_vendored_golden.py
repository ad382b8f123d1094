"""The vendored golden slices (alstm_pipeline_tests/golden) are what their README says:
Qlib's values, unchanged, on the documented rows. Without this, a fresh clone's parity
tests would compare against files nobody checked.
"""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd
import pytest

from alstm_pipeline_tests.conftest import SHARED_GOLDEN_DIR, VENDORED_GOLDEN_DIR

GOLDEN_FIRST, GOLDEN_LAST = "2012-01-03", "2016-12-30"
COPIED = ["input.parquet", "alstm_forward.npz", "ts_windows.npz", "ic.parquet", "ic.json"]
PARQUET = ["alpha158.parquet", "alpha158_alstm.parquet", "alstm_processed.parquet"]


def _read(name: str) -> pd.DataFrame:
    return pd.read_parquet(VENDORED_GOLDEN_DIR / name)


def test_vendored_rows_follow_the_documented_rule():
    whole = _read("alpha158_alstm.parquet")
    sliced = _read("alpha158.parquet")
    inputs = _read("input.parquet")
    # alpha158_alstm: one row per input bar over the golden dates, as Qlib's handler wrote.
    assert len(whole) == int(inputs["date"].between(GOLDEN_FIRST, GOLDEN_LAST).sum()) == 32439
    processed = _read("alstm_processed.parquet")
    assert set(zip(processed["instrument"], processed["date"])) == set(zip(whole["instrument"], whole["date"]))
    # alpha158: calendar positions 0, 10, 20, ... and the last day, every instrument of those days.
    calendar = np.sort(whole["date"].unique())
    kept = np.union1d(calendar[::10], calendar[-1:])
    assert np.array_equal(np.sort(sliced["date"].unique()), kept)
    assert len(sliced) == int(whole["date"].isin(kept).sum())
    # The two alpha158 files are slices of one frame: equal, bit for bit, where they overlap.
    on_kept = whole[whole["date"].isin(kept)].reset_index(drop=True)
    pd.testing.assert_frame_equal(sliced[list(whole.columns)], on_kept, check_exact=True)


@pytest.mark.skipif(not SHARED_GOLDEN_DIR.is_dir(), reason=f"{SHARED_GOLDEN_DIR} (the complete golden files) is missing")
def test_vendored_files_equal_the_complete_golden_files_on_their_rows():
    for name in COPIED:
        assert filecmp.cmp(VENDORED_GOLDEN_DIR / name, SHARED_GOLDEN_DIR / name, shallow=False), name
    provider = filecmp.dircmp(VENDORED_GOLDEN_DIR / "qlib_provider", SHARED_GOLDEN_DIR / "qlib_provider")
    _assert_same_tree(provider)
    for name in PARQUET:
        vendored = _read(name)
        complete = pd.read_parquet(SHARED_GOLDEN_DIR / ("alpha158.parquet" if name == "alpha158_alstm.parquet" else name))
        keys = vendored[["instrument", "date"]]
        expected = keys.merge(complete, on=["instrument", "date"], how="left")[list(complete.columns)]
        if name == "alpha158_alstm.parquet":
            expected = expected[list(vendored.columns)]
        pd.testing.assert_frame_equal(vendored, expected.reset_index(drop=True), check_exact=True)


def _assert_same_tree(comparison: filecmp.dircmp) -> None:
    assert not comparison.left_only and not comparison.right_only, comparison.report()
    # dircmp's diff_files is shallow (size and mtime); compare the bytes.
    _, mismatch, errors = filecmp.cmpfiles(comparison.left, comparison.right, comparison.common_files, shallow=False)
    assert not mismatch and not errors, (comparison.left, mismatch, errors)
    for sub in comparison.subdirs.values():
        _assert_same_tree(sub)
