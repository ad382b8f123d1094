"""Rolling operators and Alpha158 NaN rules on small frames (semantics doc §2, §3).

The golden Qlib data has no suspended days, so the NaN/gap rules are pinned here: the
worked example of §2.2, a loop-per-window reference on random series with gaps, and
synthetic frames for the edge cases (short series, zero volume, constant prices).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from alstm_pipeline.features import (
    ALPHA158_NAMES,
    FEATURE_INPUTS,
    LABEL_LOOKAHEAD_ROWS,
    LOOKBACK_ROWS,
    compute_alpha158,
    compute_label,
)
from alstm_pipeline.features import operators as op
from alstm_pipeline.features import order_stats

NAN = np.nan

# §2.2, series with a NaN at row 4, window 3 (values produced by Qlib 0.9.7).
WORKED_X = [1, 2, 4, 3, NAN, 5, 6, 2, 2, 2]
WORKED_TABLE = {
    "mean": [1, 1.5, 2.33333, 3, 3.5, 4, 5.5, 4.33333, 3.33333, 2],
    "std": [NAN, 0.70711, 1.52753, 1.0, 0.70711, 1.41421, 0.70711, 2.08167, 2.30940, 0.0],
    "q80": [1.0, 1.8, 3.2, 3.6, 3.8, 4.6, 5.8, 5.6, 4.4, 2.0],
    "rank": [1, 1, 1, 0.66667, NAN, 1, 1, 0.33333, 0.5, 0.66667],
    "idxmax": [1, 2, 3, 2, 3, 2, 1, 2, 1, 1],
    "idxmin": [1, 1, 1, 1, 3, 2, 1, 3, 2, 1],
    "slope": [NAN, 1.0, 1.5, 0.5, -1.0, 1.0, 1.0, -1.5, -2.0, 0.0],
    "rsquare": [NAN, 1.0, 0.96429, 0.25, 1.0, 1.0, 1.0, 0.51923, 0.75, NAN],
    "resi": [NAN, 0.0, 0.16667, -0.5, NAN, 0.0, 0.0, -0.83333, 0.66667, 0.0],
}


def _window3_operators(x: np.ndarray, first_row: np.ndarray) -> dict[str, np.ndarray]:
    """The §2.2 operators with window 3 on a [series, row] array."""
    w = (3,)
    zeroed, valid = op.finite_or_zero(x)
    n = op.valid_counts(valid, w)
    s1, s2 = op.window_sums(zeroed, w), op.window_sums(zeroed * zeroed, w)
    stats = order_stats.WindowOrderStats(x.astype(np.float32), w, n)
    std = op.std_from_sums(n[3], s1[3], s2[3], constant=stats.is_constant(3))
    slope, rsq, resi = op.regression(x, w, s2, valid)
    return {
        "mean": op.mean_from_sums(n[3], s1[3]),
        "std": std,
        "q80": stats.quantile(3, 0.8),
        "rank": op.rolling_rank(x, w, n)[3],
        "idxmax": op.rolling_argmax_position(x, w, first_row, n)[3],
        "idxmin": op.rolling_argmax_position(-x, w, first_row, n)[3],
        "slope": slope[3],
        "rsquare": op.mask_near_constant(rsq[3], std),
        "resi": resi[3],
    }


def test_operators_reproduce_the_worked_example_of_section_2_2():
    got = _window3_operators(np.array([WORKED_X], dtype=np.float64), np.array([0]))
    for name, expected in WORKED_TABLE.items():
        np.testing.assert_allclose(got[name][0], expected, atol=1e-5, equal_nan=True, err_msg=name)


def test_operators_ignore_columns_before_the_series_start():
    # The same series behind 4 columns of pre-series padding gives the same values:
    # windows are partial at the series start, and IdxMax counts from the series start.
    padded = np.array([[NAN] * 4 + WORKED_X])
    got = _window3_operators(padded, np.array([4]))
    for name, expected in WORKED_TABLE.items():
        np.testing.assert_allclose(got[name][0, 4:], expected, atol=1e-5, equal_nan=True, err_msg=name)


# --- loop-per-window reference (§2.1), for random series with gaps ---------------------


def _windows(x: np.ndarray, first: int, w: int):
    for t in range(first, len(x)):
        yield t, x[max(first, t - w + 1) : t + 1]


def _reference(x: np.ndarray, first: int, w: int) -> dict[str, np.ndarray]:
    out = {k: np.full(len(x), NAN) for k in ("mean", "std", "max", "q20", "q80", "rank", "idxmax", "slope", "rsq", "resi")}
    for t, win in _windows(x, first, w):
        pos = np.arange(len(win), dtype=float)
        ok = np.isfinite(win)
        v = win[ok]
        if v.size:
            out["mean"][t], out["max"][t] = v.mean(), v.max()
            s = np.sort(v)
            for key, q in (("q20", 0.2), ("q80", 0.8)):
                h = (v.size - 1) * q
                lo = int(np.floor(h))
                hi = min(lo + 1, v.size - 1)
                out[key][t] = s[lo] + (s[hi] - s[lo]) * (h - lo)
            out["idxmax"][t] = (np.flatnonzero(~ok)[0] if (~ok).any() else int(np.argmax(win))) + 1
            if np.isfinite(x[t]):
                out["rank"][t] = ((v < x[t]).sum() + ((v == x[t]).sum() + 1) / 2) / v.size
        if v.size >= 2:
            out["std"][t] = v.std(ddof=1)
            p = pos[ok]
            b, a = np.polyfit(p, v, 1)
            out["slope"][t] = b
            out["rsq"][t] = np.corrcoef(p, v)[0, 1] ** 2 if v.std() > 0 else NAN
            out["resi"][t] = x[t] - (a + b * pos[-1])
    return out


@pytest.mark.parametrize("w", [2, 3, 5, 7, 10, 20, 30, 60])
def test_operators_match_a_loop_per_window_reference_on_series_with_gaps(w):
    rng = np.random.default_rng(w)
    n_series, n_rows = 6, 150
    # float32 values like Qlib's fields; rounding makes ties.
    x = np.round(rng.normal(50, 3, (n_series, n_rows)), 1).astype(np.float32).astype(np.float64)
    x[rng.random(x.shape) < 0.08] = NAN  # suspended days
    x[1, 40:55] = NAN  # a long suspension
    x[2, 60:90] = 50.0  # a constant stretch
    first = np.array([0, 0, 0, 7, 30, 149])
    for i, f in enumerate(first):
        x[i, :f] = NAN
    zeroed, valid = op.finite_or_zero(x)
    n = op.valid_counts(valid, (w,))
    s1, s2 = op.window_sums(zeroed, (w,)), op.window_sums(zeroed * zeroed, (w,))
    stats = order_stats.WindowOrderStats(x.astype(np.float32), (w,), n)
    slope, rsq, resi = op.regression(x, (w,), s2, valid)
    got = {
        "mean": op.mean_from_sums(n[w], s1[w]),
        "std": op.std_from_sums(n[w], s1[w], s2[w], constant=stats.is_constant(w)),
        "max": op.rolling_max(x, (w,))[w],
        "q20": stats.quantile(w, 0.2),
        "q80": stats.quantile(w, 0.8),
        "rank": op.rolling_rank(x, (w,), n)[w],
        "idxmax": op.rolling_argmax_position(x, (w,), first, n)[w],
        "slope": slope[w],
        "rsq": rsq[w],
        "resi": resi[w],
    }
    for i, f in enumerate(first):
        ref = _reference(x[i], f, w)
        for key, expected in ref.items():
            np.testing.assert_allclose(
                got[key][i, f:], expected[f:], rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=f"{key} series {i}"
            )


def test_corr_uses_pairwise_rows_and_nans_near_constant_inputs():
    a = np.array([[1.0, 2.0, 4.0, 3.0, 5.0, 5.00001, 5.0, 5.00001]])
    b = np.array([[1.0, NAN, 2.0, 7.0, 1.0, 3.0, 2.0, 4.0]])
    za, va = op.finite_or_zero(a)
    zb, vb = op.finite_or_zero(b)
    both = va & vb
    w = (4,)
    n = op.valid_counts(both, w)
    pa, pb = np.where(both, za, 0), np.where(both, zb, 0)
    r = op.pearson_from_sums(
        n[4], *(op.window_sums(s, w)[4] for s in (pa, pb, pa * pa, pb * pb, pa * pb))
    )
    std_a = op.std_from_sums(op.valid_counts(va, w)[4], op.window_sums(za, w)[4], op.window_sums(za * za, w)[4])
    std_b = op.std_from_sums(op.valid_counts(vb, w)[4], op.window_sums(zb, w)[4], op.window_sums(zb * zb, w)[4])
    r = op.mask_near_constant(r, std_a, std_b)
    # Row 3: pairs (1,1), (4,2), (3,7) — row 1 drops out because b is missing there.
    assert r[0, 3] == pytest.approx(np.corrcoef([1, 4, 3], [1, 2, 7])[0, 1])
    assert np.isnan(r[0, 0])  # one pair
    # Rows 7: a is 5 / 5.00001 alternating → std ≈ 5.8e-6 <= 2e-5 → NaN although a varies (§2.4).
    assert np.isnan(r[0, 7])


def test_odd_even_merge_sorts_any_two_sorted_lists():
    # 0-1 principle: a comparator network merges all sorted inputs iff it merges 0/1 ones.
    for m, n in itertools.product(range(1, 17), repeat=2):
        a_rows, b_rows = [], []
        for i, j in itertools.product(range(m + 1), range(n + 1)):
            a_rows.append([0] * (m - i) + [1] * i)
            b_rows.append([0] * (n - j) + [1] * j)
        a = [np.array(col, dtype=np.float32)[:, None] for col in zip(*a_rows)]
        b = [np.array(col, dtype=np.float32)[:, None] for col in zip(*b_rows)]
        merged = np.hstack(order_stats.merge_sorted_lists(a, b))
        assert (np.diff(merged, axis=1) >= 0).all(), (m, n)
        assert (merged.sum(axis=1) == np.array(a_rows).sum(1) + np.array(b_rows).sum(1)).all()


def test_kth_of_union_matches_sorting():
    rng = np.random.default_rng(1)
    a = np.sort(rng.integers(0, 20, (7, 50)), axis=0).astype(np.float32)
    b = np.sort(rng.integers(0, 20, (5, 50)), axis=0).astype(np.float32)
    both = np.sort(np.vstack([a, b]), axis=0)
    for k in range(12):
        got = order_stats.kth_of_union(list(a[:, None, :]), list(b[:, None, :]), k)[0]
        np.testing.assert_array_equal(got, both[k])


# --- Alpha158 on synthetic frames --------------------------------------------------------


def _frame(close, volume=None, instrument="X", start="2020-01-01", skip=()):
    n = len(close)
    dates = pd.bdate_range(start, periods=n)
    close = np.asarray(close, dtype=np.float32)
    frame = pd.DataFrame(
        {
            "instrument": instrument,
            "date": dates,
            "open": close * np.float32(0.99),
            "high": close * np.float32(1.01),
            "low": close * np.float32(0.98),
            "close": close,
            "volume": np.asarray(volume if volume is not None else np.full(n, 1000.0), dtype=np.float32),
        }
    )
    return frame.drop(index=list(skip)).reset_index(drop=True)


def test_names_and_inputs_describe_the_158_features_in_qlib_order():
    assert len(ALPHA158_NAMES) == 158 == len(set(ALPHA158_NAMES))
    assert ALPHA158_NAMES[:3] == ("KMID", "KLEN", "KMID2") and ALPHA158_NAMES[-1] == "VSUMD60"
    assert ALPHA158_NAMES[13:15] == ("ROC5", "ROC10")
    assert set(FEATURE_INPUTS) == set(ALPHA158_NAMES)
    assert FEATURE_INPUTS["KLEN"] == ("high", "low", "open")
    assert FEATURE_INPUTS["CORR5"] == ("close", "volume")
    assert FEATURE_INPUTS["IMIN60"] == ("low",)
    assert LOOKBACK_ROWS == 60 and LABEL_LOOKAHEAD_ROWS == 2


def test_series_shorter_than_every_window_uses_partial_windows():
    out = compute_alpha158(_frame([10.0, 11.0, 12.0]))
    assert len(out) == 3
    assert out["ROC5"].isna().all()
    np.testing.assert_allclose(out["MA60"], [1.0, 10.5 / 11, 11 / 12], rtol=1e-6)
    assert np.isnan(out["STD5"][0]) and out["STD5"][1] > 0
    # IMAX at the series start: position in the shorter window divided by d (§3).
    np.testing.assert_allclose(out["IMAX10"], [0.1, 0.2, 0.3], rtol=1e-6)
    # First row: Mean of a False comparison is 0, Greater(.) is NaN (§2.2).
    assert out["CNTP5"][0] == 0.0 and np.isnan(out["SUMP5"][0])


def test_suspended_day_is_a_nan_row_that_windows_count():
    # Calendar from instrument Y; X has no row on day 2 (a suspension).
    x = _frame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], skip=[2])
    y = _frame(np.arange(1.0, 7.0), instrument="Y")
    out = compute_alpha158(pd.concat([x, y])).query("instrument == 'X'").reset_index(drop=True)
    assert len(out) == 6
    # The suspended row itself: features of the day's own prices (or divided by its close,
    # or Rank of its NaN close) are NaN; window statistics of the other days are not.
    suspended = out.loc[2]
    assert np.isnan(suspended[["KMID", "MA5", "RANK5", "VMA5"]].astype(float)).all()
    assert suspended["CNTP5"] == pytest.approx(1 / 3) and suspended["IMAX5"] == pytest.approx(3 / 5)
    # CNTP5 on day 3: rises on day 1 only; day 2 (NaN) and day 3 (previous NaN) are False,
    # but they are rows of the window: 1 / 4 (§2.1 comparisons with NaN are False).
    assert out.loc[3, "CNTP5"] == pytest.approx(0.25)
    # IdxMax points at the first NaN: window of day 3 = days 0..3, NaN at position 3.
    assert out.loc[3, "IMAX5"] == pytest.approx(3 / 5)
    # ROC5 reads 5 calendar rows back, not 5 traded days.
    assert out.loc[5, "ROC5"] == pytest.approx(1 / 6)
    # The label of day 0 reads day 2 (suspended) → NaN; day 1 reads days 2, 3 → NaN.
    label = compute_label(pd.concat([x, y])).query("instrument == 'X'")["LABEL0"].to_numpy()
    assert np.isnan(label[:2]).all() and label[2] == pytest.approx(5 / 4 - 1)


def test_zero_volume_day_gives_huge_vma_and_drops_out_of_cord():
    volume = [100.0, 120.0, 0.0, 150.0, 130.0, 110.0, 140.0]
    close = [10.0, 10.2, 10.1, 10.4, 10.3, 10.6, 10.5]
    out = compute_alpha158(_frame(close, volume))
    # §2.3: VMA5 on the zero-volume day = mean / 1e-12.
    assert out.loc[2, "VMA5"] == pytest.approx(np.mean(volume[:3]) / np.float32(1e-12), rel=1e-5)
    # Day 3: volume/Ref(volume,1) = inf → that row is skipped by CORD, pairs are days 1, 2.
    c = np.asarray(close, dtype=np.float32)
    v = np.asarray(volume, dtype=np.float32)
    ratio = c[1:] / c[:-1]
    with np.errstate(divide="ignore"):
        log_ratio = np.log(v[1:] / v[:-1] + 1)
    keep = np.isfinite(log_ratio[:3])  # days 1..3
    assert out.loc[3, "CORD5"] == pytest.approx(np.corrcoef(ratio[:3][keep], log_ratio[:3][keep])[0, 1], rel=1e-5)


def test_constant_prices_give_nan_corr_and_rsquare_and_exact_zero_std():
    out = compute_alpha158(_frame(np.full(70, 25.0), volume=np.arange(70.0) + 1000))
    last = out.iloc[-1]
    for w in (5, 10, 20, 30, 60):
        assert np.isnan(last[f"RSQR{w}"]) and np.isnan(last[f"CORR{w}"]) and np.isnan(last[f"CORD{w}"])
        assert last[f"STD{w}"] == 0.0 and last[f"BETA{w}"] == 0.0 and last[f"RESI{w}"] == 0.0
        assert last[f"QTLU{w}"] == 1.0 and last[f"RANK{w}"] == pytest.approx((w + 1) / 2 / w)


def test_vwap0_is_vwap_over_close_when_given_and_nan_without_it():
    frame = _frame([10.0, 20.0])
    assert compute_alpha158(frame)["VWAP0"].isna().all()
    assert compute_alpha158(frame.assign(vwap=np.nan))["VWAP0"].isna().all()
    np.testing.assert_allclose(compute_alpha158(frame.assign(vwap=[11.0, 19.0]))["VWAP0"], [1.1, 0.95], rtol=1e-6)


def test_empty_frame_gives_empty_frames_with_the_output_columns():
    empty = _frame([1.0]).iloc[:0]
    features, label = compute_alpha158(empty), compute_label(empty)
    assert list(features.columns) == ["instrument", "date", *ALPHA158_NAMES] and len(features) == 0
    assert (features[list(ALPHA158_NAMES)].dtypes == np.float32).all()
    assert list(label.columns) == ["instrument", "date", "LABEL0"] and len(label) == 0


def test_bad_input_raises_errors_that_name_the_problem():
    frame = _frame([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="volume"):
        compute_alpha158(frame.drop(columns="volume"))
    with pytest.raises(ValueError, match="several rows for instrument 'X'"):
        compute_alpha158(pd.concat([frame, frame.iloc[[1]]]))
    with pytest.raises(ValueError, match=r"last_dates\['X'\]"):
        compute_alpha158(frame, last_dates={"X": pd.Timestamp("2019-12-31")})
