"""Qlib's rolling operators on dense ``[instrument, calendar row]`` blocks.

Every function takes 2-D arrays whose axis 1 is the calendar (one column per market day,
NaN where the instrument has no value) and computes several window lengths at once.
Row ``t`` of a result depends only on the rows of its own window (``t-W+1 .. t``): sums
are formed by a fixed pairwise tree over power-of-two segments, never by a running sum
over the history, so a lookback slice reproduces the full-history value bit for bit
(the incremental materialisation relies on this). Columns before the start of the array
count as missing, which is Qlib's partial window at the start of a series (§1.1, §2.1).

Semantics follow ``shared/reference/qlib-alpha158-alstm-semantics.md`` (§ numbers below).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# §2.4: Corr and Rsquare are NaN where a rolling std is <= this (numpy.isclose(std, 0, atol=2e-5)).
STD_NAN_THRESHOLD = 2e-5


def shift(x: np.ndarray, n: int) -> np.ndarray:
    """``Ref(x, n)``: the value n calendar rows earlier (n < 0: later); NaN where none (§2.1)."""
    out = np.full_like(x, np.nan)
    if n > 0:
        out[:, n:] = x[:, :-n]
    elif n < 0:
        out[:, :n] = x[:, -n:]
    else:
        out[...] = x
    return out


def _binary_segments(window: int) -> list[int]:
    """Power-of-two segment lengths whose sum is ``window``, longest first (60 → 32,16,8,4)."""
    return [1 << b for b in range(window.bit_length() - 1, -1, -1) if window >> b & 1]


def _largest_power_of_two(window: int) -> int:
    return 1 << (window.bit_length() - 1)


def _shifted_sum(newer: np.ndarray, older: np.ndarray, gap: int) -> np.ndarray:
    """newer[:, t] + older[:, t-gap] (just newer[:, t] where t-gap is before the array)."""
    out = np.empty_like(newer)
    out[:, :gap] = newer[:, :gap]
    np.add(newer[:, gap:], older[:, :-gap], out=out[:, gap:])
    return out


def _sum_levels(x: np.ndarray, longest: int) -> dict[int, np.ndarray]:
    """``levels[s][:, t]`` = sum of x over rows t-s+1 .. t, built by pairwise doubling."""
    levels = {1: x}
    s = 1
    while 2 * s <= longest:
        levels[2 * s] = _shifted_sum(levels[s], levels[s], s)
        s *= 2
    return levels


def window_sums(x: np.ndarray, windows: Sequence[int]) -> dict[int, np.ndarray]:
    """Sum of the last W rows for every W in ``windows``; x must hold no NaN (missing = 0).

    The sum of a window is the same fixed tree of additions whatever precedes the window,
    so it is reproducible from any slice that contains the window.
    """
    levels = _sum_levels(x, max(windows))
    out: dict[int, np.ndarray] = {}
    for window in windows:
        segments = _binary_segments(window)
        total = levels[segments[0]]
        offset = segments[0]
        for seg in segments[1:]:
            total = _shifted_sum(total, levels[seg], offset)
            offset += seg
        out[window] = total if len(segments) > 1 else total.copy()
    return out


def _merge_lag_sums(newer: tuple[np.ndarray, np.ndarray], older: tuple[np.ndarray, np.ndarray], gap: int):
    """(Σy, Σ lag·y) of a newer segment followed by an older one ending ``gap`` rows earlier.

    Lags count from the newest row of a segment (0 = newest), so the older segment's lags
    grow by ``gap``: Σ(lag+gap)·y = Σ lag·y + gap·Σy.
    """
    total = _shifted_sum(newer[0], older[0], gap)
    weighted = _shifted_sum(newer[1], older[1], gap)
    weighted[:, gap:] += float(gap) * older[0][:, :-gap]
    return total, weighted


def window_lag_sums(y: np.ndarray, windows: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each W: (Σy, Σ lag·y) over the last W rows, lag 0 = current row; y holds no NaN.

    Σy is bit-identical to :func:`window_sums`. Σ lag·y is the Σxy of the least-squares
    fits of Slope/Rsquare/Resi (§2.4), built by the same fixed tree.
    """
    levels = {1: (y, np.zeros_like(y))}
    s = 1
    while 2 * s <= max(windows):
        levels[2 * s] = _merge_lag_sums(levels[s], levels[s], s)
        s *= 2
    out = {}
    for window in windows:
        segments = _binary_segments(window)
        total = levels[segments[0]]
        offset = segments[0]
        for seg in segments[1:]:
            total = _merge_lag_sums(total, levels[seg], offset)
            offset += seg
        out[window] = total
    return out


def _extreme_levels(x: np.ndarray, longest: int, ufunc: np.ufunc) -> dict[int, np.ndarray]:
    levels = {1: x}
    s = 1
    while 2 * s <= longest:
        prev = levels[s]
        cur = prev.copy()
        ufunc(cur[:, s:], prev[:, :-s], out=cur[:, s:])
        levels[2 * s] = cur
        s *= 2
    return levels


def rolling_max(x: np.ndarray, windows: Sequence[int]) -> dict[int, np.ndarray]:
    """``Max(x, W)``: maximum of the valid values, NaN if none (§2.1); ±inf counts as missing (§2.3)."""
    return _rolling_extreme(x, windows, np.fmax)


def rolling_min(x: np.ndarray, windows: Sequence[int]) -> dict[int, np.ndarray]:
    """``Min(x, W)``: minimum of the valid values, NaN if none (§2.1); ±inf counts as missing (§2.3)."""
    return _rolling_extreme(x, windows, np.fmin)


def _rolling_extreme(x: np.ndarray, windows: Sequence[int], ufunc: np.ufunc) -> dict[int, np.ndarray]:
    # fmax/fmin skip NaN; max and min are idempotent, so a window is two overlapping
    # power-of-two segments. Results are float64 like pandas' (§1.5): RSV and MAX/MIN
    # then divide and subtract in float64 as Qlib does.
    x = np.where(np.isfinite(x), x, np.nan)
    levels = _extreme_levels(x, max(windows), ufunc)
    out = {}
    for window in windows:
        seg = _largest_power_of_two(window)
        total = levels[seg].copy()
        gap = window - seg
        if gap:
            ufunc(total[:, gap:], levels[seg][:, :-gap], out=total[:, gap:])
        out[window] = total.astype(np.float64)
    return out


def _first_argmax_merge(newer_key, newer_idx, older_key, older_idx):
    take_older = older_key >= newer_key  # ties go to the older row: the FIRST maximum
    np.maximum(newer_key, older_key, out=newer_key)
    np.copyto(newer_idx, older_idx, where=take_older)


def rolling_argmax_position(
    x: np.ndarray, windows: Sequence[int], first_row: np.ndarray, n_valid: dict[int, np.ndarray]
) -> dict[int, np.ndarray]:
    """``IdxMax(x, W)``: 1-based position of the first maximum, oldest row of the window = 1.

    §2.1: if the window holds a NaN (or ±inf, §2.3) the result is the position of the first
    such value; NaN when the window has no valid value. The window starts at
    ``max(t-W+1, first_row)``: rows before the series start are not part of it.
    ``n_valid[W]`` counts the finite values per window. For IdxMin pass ``-x``.
    """
    n_cols = x.shape[1]
    cols = np.arange(n_cols, dtype=np.int32)
    before_start = cols[None, :] < first_row[:, None]
    # Missing values rank above every number (so the first one wins); rows before the
    # series start rank below everything (they are not in the window at all).
    key = np.where(np.isfinite(x), x, np.inf)
    key[before_start] = -np.inf
    idx = np.broadcast_to(cols, x.shape).copy()
    levels = {1: (key, idx)}
    s = 1
    while 2 * s <= max(windows):
        pk, pi = levels[s]
        ck, ci = pk.copy(), pi.copy()
        _first_argmax_merge(ck[:, s:], ci[:, s:], pk[:, :-s], pi[:, :-s])
        levels[2 * s] = (ck, ci)
        s *= 2
    out = {}
    for window in windows:
        seg = _largest_power_of_two(window)
        sk, si = levels[seg]
        tk, ti = sk.copy(), si.copy()
        gap = window - seg
        if gap:
            _first_argmax_merge(tk[:, gap:], ti[:, gap:], sk[:, :-gap], si[:, :-gap])
        start = np.maximum(cols[None, :] - (window - 1), first_row[:, None])
        pos = (ti - start + 1).astype(np.float64)
        pos[n_valid[window] == 0] = np.nan
        out[window] = pos
    return out


def valid_counts(valid: np.ndarray, windows: Sequence[int]) -> dict[int, np.ndarray]:
    """Number of True cells in each window (int16)."""
    return window_sums(valid.astype(np.int16), windows)


def std_from_sums(
    n: np.ndarray, s1: np.ndarray, s2: np.ndarray, constant: np.ndarray | None = None
) -> np.ndarray:
    """Sample std (ddof 1) from count, Σx, Σx²; NaN below 2 values (§2.1).

    pandas returns exactly 0 for a window whose valid values are all equal; pass those
    windows as ``constant`` where the exact zero matters (the 2e-5 masks of §2.4).
    """
    nf = n.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (s2 - s1 * s1 / nf) / (nf - 1.0)
    np.maximum(var, 0.0, out=var)
    if constant is not None:
        var[constant] = 0.0
    var[n < 2] = np.nan
    return np.sqrt(var)


def mean_from_sums(n: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """``Mean``/``Sum`` helper: Σx / n, NaN where no valid value (§2.1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = s1 / n
    out[n == 0] = np.nan
    return out


def sum_or_nan(n: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """``Sum(x, W)``: Σ of valid values, NaN where there is none (§2.1)."""
    out = s1.astype(np.float64, copy=True)
    out[n == 0] = np.nan
    return out


def rolling_rank(x: np.ndarray, windows: Sequence[int], n_valid: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """``Rank(x, W)``: average 1-based rank of x_t among the window's valid values / their count.

    §2.1: NaN if x_t is missing; ties get the average rank. Counts are accumulated lag by
    lag, so all windows come out of one pass over the longest one.
    """
    xv = np.where(np.isfinite(x), x, np.nan)
    less = np.zeros(x.shape, dtype=np.int16)
    equal = np.isfinite(xv).astype(np.int16)  # lag 0: x_t equals itself
    scratch = np.empty(x.shape, dtype=bool)
    out = {}
    wanted = set(windows)
    for lag in range(1, max(windows)):
        now, past = xv[:, lag:], xv[:, :-lag]
        np.less(past, now, out=scratch[:, lag:])
        less[:, lag:] += scratch[:, lag:]
        np.equal(past, now, out=scratch[:, lag:])
        equal[:, lag:] += scratch[:, lag:]
        if lag + 1 in wanted:
            out[lag + 1] = _average_rank_pct(less, equal, n_valid[lag + 1], xv)
    if 1 in wanted:
        out[1] = _average_rank_pct(less * 0, equal, n_valid[1], xv)
    return out


def _average_rank_pct(less, equal, n, xv):
    with np.errstate(divide="ignore", invalid="ignore"):
        rank = (less + (equal + 1) / 2.0) / n
    rank[np.isnan(xv)] = np.nan
    return rank


def regression(
    y: np.ndarray, windows: Sequence[int], y_sq_sums: dict[int, np.ndarray], valid: np.ndarray
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """``Slope``, ``Rsquare`` (unmasked) and ``Resi`` of y against row position (§2.4).

    Least squares over each window's valid rows; gaps keep their positions; n = 1 gives
    NaN; the residual (of the current row) is NaN where y_t is missing. ``y_sq_sums`` are
    the window sums of y² over valid rows (shared with Std). The caller applies the
    Rsquare std mask.
    """
    y64 = y.astype(np.float64)
    ym = window_lag_sums(np.where(valid, y64, 0.0), windows)
    # Σlag and Σlag² over the valid rows from exact integer sums of the row index i:
    # lag = t - i, so Σlag = t·n - Σi and Σlag² = t²·n - 2t·Σi + Σi² (exact in float64).
    t = np.arange(y.shape[1], dtype=np.float64)[None, :]
    row = np.where(valid, t, 0.0)
    n_valid = window_sums(valid.astype(np.float64), windows)
    sum_i = window_sums(row, windows)
    sum_i2 = window_sums(row * row, windows)
    slope, rsq, resi = {}, {}, {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for w in windows:
            sy, sky = ym[w]
            n = n_valid[w]
            k1 = t * n - sum_i[w]
            k2 = (t * t) * n - (2.0 * t) * sum_i[w] + sum_i2[w]
            sxx = n * k2 - k1 * k1
            sxy = n * sky - k1 * sy
            syy = n * y_sq_sums[w] - sy * sy
            lag_slope = sxy / sxx
            # Lags run backwards in time, so the slope against position is the negative.
            slope[w] = -lag_slope
            r = sxy / np.sqrt(sxx * syy)
            rsq[w] = r * r
            # Fitted value at the current row = the intercept at lag 0.
            resi[w] = y64 - (sy / n - lag_slope * (k1 / n))
    return slope, rsq, resi


def pearson_from_sums(
    n: np.ndarray, sa: np.ndarray, sb: np.ndarray, saa: np.ndarray, sbb: np.ndarray, sab: np.ndarray
) -> np.ndarray:
    """Pearson r over the pairwise-valid rows of a window, NaN below 2 pairs or zero variance (§2.1)."""
    nf = n.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = sab - sa * sb / nf
        var_a = saa - sa * sa / nf
        var_b = sbb - sb * sb / nf
        denom = var_a * var_b
        out = cov / np.sqrt(denom)
    out[(n < 2) | ~(denom > 0.0)] = np.nan
    return out


def mask_near_constant(values: np.ndarray, *stds: np.ndarray) -> np.ndarray:
    """§2.4: NaN where any of the given rolling stds is <= 2e-5 (Corr, Rsquare)."""
    for std in stds:
        values[np.abs(std) <= STD_NAN_THRESHOLD] = np.nan
    return values


def finite_or_zero(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 copy with missing/±inf set to 0, validity mask): rolling-op input (§2.3)."""
    valid = np.isfinite(x)
    return np.where(valid, x, 0.0).astype(np.float64), valid
