"""The processors and windows against Qlib 0.9.7's own outputs (shared/golden)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from alstm_pipeline.dataset import (
    ALSTM_FEATURES,
    apply_normalizer,
    build_samples,
    fit_normalizer,
    infer_frame,
    learn_frame,
    process_features,
    process_label,
)

FIT_START, FIT_END = "2012-01-01", "2014-12-31"
TEST_START, TEST_END = "2016-01-01", "2016-12-31"
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def alpha158(golden_dir) -> pd.DataFrame:
    """Qlib's 20 ALSTM features and LABEL0 on every golden row: the normaliser is fitted on
    every row of the fit window and windows need their histories. The vendored folder keeps
    every row of these columns in alpha158_alstm.parquet (its alpha158.parquet has every
    10th day only); the complete folder has them in alpha158.parquet."""
    columns = ["instrument", "date", *ALSTM_FEATURES, "LABEL0"]
    whole_rows = golden_dir / "alpha158_alstm.parquet"
    return pd.read_parquet(whole_rows if whole_rows.exists() else golden_dir / "alpha158.parquet", columns=columns)


@pytest.fixture(scope="module")
def qlib_processed(golden_dir) -> pd.DataFrame:
    return pd.read_parquet(golden_dir / "alstm_processed.parquet")


@pytest.fixture(scope="module")
def processed_features(alpha158) -> pd.DataFrame:
    return process_features(alpha158, FIT_START, FIT_END)


@pytest.fixture(scope="module")
def raw_label(alpha158) -> pd.DataFrame:
    return alpha158[["instrument", "date", "LABEL0"]]


@pytest.fixture(scope="module")
def calendar(alpha158) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.sort(alpha158["date"].unique()))


def _assert_close_same_nan(ours: np.ndarray, qlib: np.ndarray, what: str) -> None:
    assert np.array_equal(np.isnan(ours), np.isnan(qlib)), f"{what}: NaN positions differ"
    np.testing.assert_allclose(ours, qlib, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=what)


def test_alstm_features_are_the_twenty_in_alpha158_order(golden_dir):
    assert len(ALSTM_FEATURES) == 20
    golden_columns = pq.read_schema(golden_dir / "alpha158.parquet").names  # all 158, Qlib's order
    alpha158_order = [c for c in golden_columns if c in ALSTM_FEATURES]
    assert list(ALSTM_FEATURES) == alpha158_order


def test_processed_features_match_qlib(processed_features, qlib_processed):
    assert list(processed_features.columns) == ["instrument", "date", *ALSTM_FEATURES]
    assert (processed_features[list(ALSTM_FEATURES)].dtypes == np.float32).all()
    merged = qlib_processed.merge(processed_features, on=["instrument", "date"], suffixes=("_qlib", ""))
    assert len(merged) == len(qlib_processed) == len(processed_features)
    ours = merged[list(ALSTM_FEATURES)].to_numpy()
    qlib = merged[[f"{c}_qlib" for c in ALSTM_FEATURES]].to_numpy()
    assert not np.isnan(ours).any()  # Fillna(0) ran
    _assert_close_same_nan(ours, qlib, "processed features")
    # Same float32 operations in the same order: expected to be bit-identical.
    assert np.array_equal(ours, qlib)


def test_statistics_stored_as_double_reproduce_the_same_features(alpha158, processed_features):
    stats = fit_normalizer(alpha158, FIT_START, FIT_END)
    assert list(stats["feature"]) == list(ALSTM_FEATURES)
    as_stored = stats.astype({"median": np.float64, "scale": np.float64})
    reapplied = apply_normalizer(alpha158, as_stored.iloc[::-1])  # order of stored rows is irrelevant
    pd.testing.assert_frame_equal(reapplied, processed_features)


def test_normalizer_fits_only_on_the_fit_window(alpha158):
    # Fitting on a different window changes the statistics, and rows outside the
    # window do not enter the fit (adding them back as garbage changes nothing).
    fitted = fit_normalizer(alpha158, FIT_START, FIT_END)
    other = fit_normalizer(alpha158, "2015-01-01", "2016-12-31")
    assert not np.array_equal(fitted["median"].to_numpy(), other["median"].to_numpy())
    poisoned = alpha158.copy()
    outside = poisoned["date"] > pd.Timestamp(FIT_END)
    poisoned.loc[outside, list(ALSTM_FEATURES)] = 1e6
    pd.testing.assert_frame_equal(fit_normalizer(poisoned, FIT_START, FIT_END), fitted)


def test_learn_label_matches_qlib(raw_label, qlib_processed):
    learn = process_label(raw_label)
    assert learn["LABEL0"].dtype == np.float64
    merged = qlib_processed[["instrument", "date", "LABEL0_learn"]].merge(
        learn, on=["instrument", "date"], how="left"
    )
    _assert_close_same_nan(merged["LABEL0"].to_numpy(), merged["LABEL0_learn"].to_numpy(), "learn label")
    assert np.array_equal(merged["LABEL0"].to_numpy(), merged["LABEL0_learn"].to_numpy(), equal_nan=True)


def test_test_windows_match_qlib(golden_dir, processed_features, raw_label, calendar):
    golden = np.load(golden_dir / "ts_windows.npz", allow_pickle=False)
    samples = build_samples(infer_frame(processed_features, raw_label), TEST_START, TEST_END, calendar)
    position = pd.Series(
        np.arange(len(samples)),
        index=pd.MultiIndex.from_arrays([pd.DatetimeIndex(samples.dates), samples.instruments]),
    )
    wanted = list(zip(pd.to_datetime(golden["date"]), golden["instrument"]))
    ids = torch.from_numpy(position.loc[wanted].to_numpy())

    windows = samples.windows(ids)
    assert windows.shape == (400, 20, 20) and windows.dtype == torch.float32
    window_labels = samples.labels[samples.index[ids]].numpy().astype(np.float32)
    ours = np.concatenate([windows.numpy(), window_labels[..., None]], axis=2)
    assert list(golden["columns"]) == [*ALSTM_FEATURES, "LABEL0"]
    _assert_close_same_nan(ours, golden["windows"], "test windows")
    assert np.array_equal(ours, golden["windows"], equal_nan=True)
    # The target is the sample's own raw label (last step of the window).
    own_labels = samples.targets(ids).numpy().astype(np.float32)
    np.testing.assert_array_equal(own_labels, golden["windows"][:, -1, 20])


def test_test_segment_has_every_handler_row_in_instrument_major_order(
    processed_features, raw_label, calendar
):
    samples = build_samples(infer_frame(processed_features, raw_label), TEST_START, TEST_END, calendar)
    in_segment = raw_label[(raw_label["date"] >= TEST_START) & (raw_label["date"] <= TEST_END)]
    expected = in_segment.sort_values(["instrument", "date"])
    assert len(samples) == len(in_segment)
    np.testing.assert_array_equal(samples.instruments, expected["instrument"].to_numpy())
    np.testing.assert_array_equal(samples.dates, expected["date"].to_numpy(dtype="datetime64[ns]"))


def _reference_window(frame: pd.DataFrame, instrument: str, date, table_dates: np.ndarray, step_len: int):
    """§6 step 5 written plainly, one sample at a time (slow; for checking only)."""
    own = frame[frame["instrument"] == instrument].set_index("date")
    r = int(np.searchsorted(table_dates, np.datetime64(date)))
    entries = [
        own.loc[table_dates[d]] if d >= 0 and table_dates[d] in own.index else None
        for d in range(r - step_len + 1, r + 1)
    ]
    for k in range(1, step_len):  # ffill
        if entries[k] is None:
            entries[k] = entries[k - 1]
    first = next(e for e in entries if e is not None)
    entries = [first if e is None else e for e in entries]  # bfill
    return np.stack([e[list(ALSTM_FEATURES)].to_numpy(np.float32) for e in entries]), entries[-1]["LABEL0"]


def test_train_windows_match_a_plain_per_sample_reference(processed_features, raw_label, calendar):
    learn = learn_frame(processed_features, process_label(raw_label))
    samples = build_samples(learn, FIT_START, FIT_END, calendar)
    assert len(samples) == len(learn[learn["date"] <= FIT_END])
    assert not torch.isnan(samples.targets()).any()
    assert samples.targets().dtype == torch.float64
    # Train segment starts at the handler's first date: nothing before it to fetch.
    table_dates = np.sort(learn.loc[learn["date"] <= FIT_END, "date"].unique())
    rng = np.random.default_rng(7)
    listed_late = np.flatnonzero(samples.instruments == "SYF")[:3]  # listed 2014-07-31: front padding
    picks = np.concatenate([np.arange(3), listed_late, rng.choice(len(samples), 120, replace=False)])
    for s in picks:
        expected, expected_label = _reference_window(
            learn, samples.instruments[s], samples.dates[s], table_dates, 20
        )
        np.testing.assert_array_equal(samples.windows(slice(s, s + 1))[0].numpy(), expected)
        assert samples.targets(torch.tensor([s])).item() == expected_label


def test_learn_windows_skip_rows_whose_label_was_dropped(processed_features, raw_label, calendar):
    # Golden labels are all present in 2012-2016, so drop a few (a suspension-like gap
    # for one stock, one isolated day for another) and compare the 2015 valid windows.
    gappy = raw_label.copy()
    dropped = ((gappy["instrument"] == "MO") & gappy["date"].between("2015-03-02", "2015-03-06")) | (
        (gappy["instrument"] == "NVR") & (gappy["date"] == pd.Timestamp("2015-06-10"))
    )
    gappy.loc[dropped, "LABEL0"] = np.nan
    valid = ("2015-01-01", "2015-12-31")
    learn = build_samples(learn_frame(processed_features, process_label(gappy)), *valid, calendar)
    infer = build_samples(infer_frame(processed_features, gappy), *valid, calendar)
    assert len(infer) - len(learn) == int(dropped.sum())

    def window_of(samples, instrument, date):
        s = np.flatnonzero((samples.instruments == instrument) & (samples.dates == np.datetime64(date)))
        return samples.windows(torch.from_numpy(s))[0], samples.labels[samples.index[s[0]]]

    # MO on 2015-03-09: test window holds the five dropped days; the learn window carries 02-27 forward.
    test_x, test_y = window_of(infer, "MO", "2015-03-09")
    learn_x, learn_y = window_of(learn, "MO", "2015-03-09")
    assert torch.isnan(test_y[-6:-1]).all() and not torch.isnan(learn_y).any()
    assert torch.equal(learn_x[-6:-1], learn_x[-7].expand(5, -1))  # 2015-02-27 carried forward
    assert torch.equal(learn_x[-1], test_x[-1]) and torch.equal(learn_x[:-6], test_x[:-6])
    assert not torch.equal(learn_x, test_x)
    # A window that does not reach a dropped day is the same in both sets.
    same_x, _ = window_of(learn, "NVR", "2015-05-01")
    assert torch.equal(same_x, window_of(infer, "NVR", "2015-05-01")[0])
