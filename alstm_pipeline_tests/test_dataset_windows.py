"""Processors and windows on small hand-made frames: the worked examples of the semantics
document (§5.1, §6) and the edge cases and errors around them."""

from __future__ import annotations

import numpy as np
import pandas as pd
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


def _frame(instruments, dates, values, labels=None) -> pd.DataFrame:
    """Rows (instrument, date) whose 20 features are value + k/100 (k = feature position)."""
    values = np.asarray(values, dtype=np.float32)
    features = values[:, None] + np.arange(20, dtype=np.float32) / 100
    frame = pd.DataFrame(features, columns=list(ALSTM_FEATURES))
    frame.insert(0, "date", pd.to_datetime(list(dates)))
    frame.insert(0, "instrument", list(instruments))
    frame["LABEL0"] = values if labels is None else np.asarray(labels, dtype=np.float64)
    return frame


def _first_feature(samples, sample_ids=None) -> np.ndarray:
    return samples.windows(sample_ids)[:, :, 0].numpy()


# ---------------------------------------------------------------- §5.1 processors


def test_robust_zscore_worked_example():
    # §5.1: [1, 2, 3, 4, 100, NaN] -> m 3, s 1.4826 -> [-1.34898, -0.67449, 0, 0.67449, 3, 0].
    values = [1, 2, 3, 4, 100, np.nan]
    frame = _frame(["X"] * 6, pd.bdate_range("2014-01-06", periods=6), [0] * 6)
    frame[list(ALSTM_FEATURES)] = np.repeat(np.array(values, dtype=np.float32)[:, None], 20, axis=1)
    stats = fit_normalizer(frame, "2014-01-01", "2014-12-31")
    np.testing.assert_array_equal(stats["median"], np.float32(3))
    np.testing.assert_allclose(stats["scale"], 1.4826, rtol=1e-7)
    z = apply_normalizer(frame, stats)
    assert (z[list(ALSTM_FEATURES)].dtypes == np.float32).all()
    np.testing.assert_allclose(z["KLEN"], [-1.34898, -0.67449, 0, 0.67449, 3, 0], atol=1e-5)
    assert list(z.columns[:2]) == ["instrument", "date"]


def test_zero_mad_saturates_every_non_median_value():
    # §5.1: with MAD exactly 0 the scale is 1e-12 * 1.4826, so anything off the median hits ±3.
    frame = _frame(["X"] * 5, pd.bdate_range("2014-01-06", periods=5), [0] * 5)
    column = np.array([5, 5, 5, 5.001, 4.999], dtype=np.float32)
    frame[list(ALSTM_FEATURES)] = np.repeat(column[:, None], 20, axis=1)
    z = process_features(frame, "2014-01-01", "2014-12-31")
    np.testing.assert_array_equal(z["ROC60"], [0, 0, 0, 3, -3])


def test_cs_rank_norm_worked_example():
    # §5.1: one day [0.01, -0.02, 0.01, 0.03, 0.00] -> [0.692, -1.038, 0.692, 1.73, -0.346];
    # a NaN label is dropped and does not count; another day is ranked on its own.
    label = pd.DataFrame(
        {
            "instrument": list("ABCDEF") + ["A", "B"],
            "date": pd.to_datetime(["2015-01-02"] * 6 + ["2015-01-05"] * 2),
            "LABEL0": np.array([0.01, -0.02, 0.01, 0.03, 0.00, np.nan, 0.5, -0.5], dtype=np.float32),
        }
    )
    ranked = process_label(label)
    assert ranked["LABEL0"].dtype == np.float64
    assert list(ranked.columns) == ["instrument", "date", "LABEL0"]
    assert list(ranked["instrument"]) == ["A", "B", "C", "D", "E", "A", "B"]
    np.testing.assert_allclose(ranked["LABEL0"], [0.692, -1.038, 0.692, 1.73, -0.346, 1.73, 0.0], rtol=1e-12)


def test_fit_window_without_rows_names_the_window_and_the_data_range():
    frame = _frame(["X"] * 3, pd.bdate_range("2016-01-04", periods=3), [1, 2, 3])
    with pytest.raises(ValueError, match=r"2012-01-01\.\.2014-12-31 has no rows.*2016-01-04\.\.2016-01-06"):
        fit_normalizer(frame, "2012-01-01", "2014-12-31")


def test_all_nan_feature_in_fit_window_is_an_error():
    frame = _frame(["X"] * 3, pd.bdate_range("2014-01-06", periods=3), [1, 2, 3])
    frame["CORD60"] = np.nan
    with pytest.raises(ValueError, match=r"\['CORD60'\] are all NaN in the fit window"):
        fit_normalizer(frame, "2014-01-01", "2014-12-31")


def test_missing_feature_column_is_named():
    frame = _frame(["X"] * 3, pd.bdate_range("2014-01-06", periods=3), [1, 2, 3]).drop(columns=["WVMA5"])
    with pytest.raises(ValueError, match="WVMA5"):
        process_features(frame, "2014-01-01", "2014-12-31")


# ---------------------------------------------------------------- data keys


def test_learn_frame_keeps_labelled_rows_and_infer_frame_keeps_all():
    features = _frame(["A", "A", "B"], ["2015-01-02", "2015-01-05", "2015-01-02"], [1, 2, 3])
    raw = features[["instrument", "date", "LABEL0"]].copy()
    raw.loc[1, "LABEL0"] = np.nan
    learn = learn_frame(features.drop(columns="LABEL0"), process_label(raw))
    infer = infer_frame(features.drop(columns="LABEL0"), raw)
    assert len(learn) == 2 and not learn["LABEL0"].isna().any()
    assert len(infer) == 3 and infer["LABEL0"].isna().sum() == 1


def test_duplicated_rows_are_rejected_with_the_key():
    features = _frame(["A", "A"], ["2015-01-02", "2015-01-02"], [1, 2])
    with pytest.raises(ValueError, match="duplicated .* A on 2015-01-02"):
        infer_frame(features.drop(columns="LABEL0"), features[["instrument", "date", "LABEL0"]].iloc[:1])
    with pytest.raises(ValueError, match="duplicated rows for A on 2015-01-02"):
        build_samples(features, "2015-01-01", "2015-01-31", pd.DatetimeIndex(["2015-01-02"]))


# ---------------------------------------------------------------- §6 windows

WORKED_DATES = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07"])


def _worked_example() -> pd.DataFrame:
    a_dates = WORKED_DATES[[0, 1, 3, 4]]
    return _frame(
        ["A"] * 4 + ["B"] * 5,
        list(a_dates) + list(WORKED_DATES),
        [10, 11, 13, 14, 20, 21, 22, 23, 24],
    )


def test_worked_example_windows_and_sample_order():
    samples = build_samples(_worked_example(), "2020-01-02", "2020-01-07", WORKED_DATES, step_len=4)
    assert list(samples.instruments) == ["A"] * 3 + ["B"] * 4
    np.testing.assert_array_equal(samples.dates, WORKED_DATES[[1, 3, 4, 1, 2, 3, 4]].to_numpy())
    expected = [
        [10, 10, 10, 11],  # front padding = first present row
        [10, 11, 11, 13],  # 01-03 missing -> previous row
        [11, 11, 13, 14],
        [20, 20, 20, 21],
        [20, 20, 21, 22],
        [20, 21, 22, 23],
        [21, 22, 23, 24],
    ]
    np.testing.assert_array_equal(_first_feature(samples), expected)
    # Features keep their order and offsets inside each step.
    np.testing.assert_allclose(samples.windows()[1, 3].numpy(), 13 + np.arange(20) / 100, rtol=1e-6)
    np.testing.assert_array_equal(samples.targets().numpy(), [11, 13, 14, 21, 22, 23, 24])


def test_sample_set_selection_devices_and_dtypes():
    samples = build_samples(_worked_example(), "2020-01-02", "2020-01-07", WORKED_DATES, step_len=4)
    assert len(samples) == 7 and samples.step_len == 4
    assert samples.index.dtype == torch.int64 and samples.rows.dtype == torch.float32
    assert samples.labels.dtype == torch.float64 and samples.dates.dtype == np.dtype("datetime64[ns]")
    # index[s, -1] is the sample's own row.
    own = samples.rows[samples.index[:, -1], 0].numpy()
    np.testing.assert_array_equal(own, [11, 13, 14, 21, 22, 23, 24])
    ids = torch.tensor([6, 0])
    assert torch.equal(samples.windows(ids), samples.windows()[[6, 0]])
    assert torch.equal(samples.windows(slice(2, 4)), samples.windows()[2:4])
    assert torch.equal(samples.targets(ids), torch.tensor([24.0, 11.0], dtype=torch.float64))
    moved = samples.to("cpu")
    assert torch.equal(moved.windows(), samples.windows()) and moved.dates is samples.dates


def test_windows_reach_back_at_most_step_len_calendar_dates():
    # §6 step 1: the fetch starts step_len calendar dates before the segment, so an
    # instrument's rows older than that never enter a window, even where the calendar has
    # dates on which this frame has no row at all.
    calendar = pd.bdate_range("2020-01-01", periods=10)
    frame = _frame(["A"] * 4, calendar[[0, 1, 8, 9]], [1, 2, 9, 10])
    samples = build_samples(frame, calendar[8], calendar[9], calendar, step_len=4)
    np.testing.assert_array_equal(_first_feature(samples), [[9, 9, 9, 9], [9, 9, 9, 10]])
    # With the segment starting at the calendar's first date, history is what exists.
    early = build_samples(frame, calendar[0], calendar[9], calendar, step_len=4)
    np.testing.assert_array_equal(_first_feature(early)[2], [1, 1, 2, 9])


def test_reentry_after_a_long_gap_starts_with_copies_of_the_reentry_row():
    calendar = pd.bdate_range("2020-01-01", periods=30)
    frame = pd.concat(
        [
            _frame(["A"] * 3 + ["A"] * 2, list(calendar[:3]) + list(calendar[26:28]), [1, 2, 3, 27, 28]),
            _frame(["B"] * 30, calendar, np.arange(30) + 100),
        ]
    )
    samples = build_samples(frame, calendar[0], calendar[-1], calendar, step_len=20)
    reentry = np.flatnonzero((samples.instruments == "A") & (samples.dates == calendar[26].to_datetime64()))
    np.testing.assert_array_equal(_first_feature(samples, torch.from_numpy(reentry))[0], [27] * 20)


def test_train_windows_skip_nan_label_rows_that_test_windows_keep():
    # §6: learn windows come from DK_L (DropnaLabel ran), test windows from DK_I.
    # B keeps every date in the table, so A's dropped day is a filled step, not a missing one.
    dates = pd.bdate_range("2020-01-06", periods=5)
    features = _frame(["A"] * 5 + ["B"] * 5, list(dates) * 2, [1, 2, 3, 4, 5, 11, 12, 13, 14, 15])
    features = features.drop(columns="LABEL0")
    raw = features[["instrument", "date"]].assign(LABEL0=[0.1, 0.2, np.nan, 0.4, 0.5] + [0.3] * 5)
    train = build_samples(learn_frame(features, process_label(raw)), dates[0], dates[-1], dates, step_len=4)
    test = build_samples(infer_frame(features, raw), dates[0], dates[-1], dates, step_len=4)
    assert len(train) == 9 and len(test) == 10
    a_last = 3  # A's samples come first; A has 4 in train, 5 in test
    np.testing.assert_array_equal(_first_feature(train)[a_last], [2, 2, 4, 5])
    np.testing.assert_array_equal(_first_feature(test)[a_last + 1], [2, 3, 4, 5])
    assert torch.isnan(test.targets()).sum() == 1 and not torch.isnan(train.targets()).any()


def test_a_date_missing_from_the_data_key_is_not_a_window_step():
    # §6 step 3: the table runs over the fetched frame's dates; a day on which every label
    # was dropped disappears from learn windows instead of becoming a filled step.
    dates = pd.bdate_range("2020-01-06", periods=4)
    frame = _frame(["A"] * 3 + ["B"] * 3, list(dates[[0, 1, 3]]) * 2, [1, 2, 4, 11, 12, 14])
    samples = build_samples(frame, dates[0], dates[-1], dates, step_len=3)
    expected = [[1, 1, 1], [1, 1, 2], [1, 2, 4], [11, 11, 11], [11, 11, 12], [11, 12, 14]]
    np.testing.assert_array_equal(_first_feature(samples), expected)


def test_segment_without_rows_names_the_segment_and_the_data_range():
    message = r"segment 2021-01-01\.\.2021-12-31 has no rows; the data covers 2020-01-01\.\.2020-01-07"
    with pytest.raises(ValueError, match=message):
        build_samples(_worked_example(), "2021-01-01", "2021-12-31", WORKED_DATES)
    with pytest.raises(ValueError, match="starts after it ends"):
        build_samples(_worked_example(), "2020-01-07", "2020-01-02", WORKED_DATES)
    with pytest.raises(ValueError, match="missing columns.*LABEL0"):
        build_samples(_worked_example().drop(columns="LABEL0"), "2020-01-02", "2020-01-07", WORKED_DATES)
