"""Qlib's Alpha158 features and LABEL0, computed on dense calendar-aligned arrays.

Numbers follow ``shared/reference/qlib-alpha158-alstm-semantics.md``: §1 (row set, dtypes),
§2 (operators), §3 (the 158 expressions), §4 (label). Element-wise arithmetic runs in
float32 like Qlib's stored fields, rolling operators in float64, and each finished
expression is cast to float32 (§1.5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alstm_pipeline.features import operators as op
from alstm_pipeline.features.order_stats import WindowOrderStats
from alstm_pipeline.features.panel import DensePanel, to_dense_panel

WINDOWS = (5, 10, 20, 30, 60)

KBAR_NAMES = ("KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2")
PRICE_NAMES = ("OPEN0", "HIGH0", "LOW0", "VWAP0")

# Rolling families in Qlib's order (§3) with the raw fields each one reads.
_FAMILY_INPUTS: dict[str, tuple[str, ...]] = {
    "ROC": ("close",),
    "MA": ("close",),
    "STD": ("close",),
    "BETA": ("close",),
    "RSQR": ("close",),
    "RESI": ("close",),
    "MAX": ("close", "high"),
    "MIN": ("close", "low"),
    "QTLU": ("close",),
    "QTLD": ("close",),
    "RANK": ("close",),
    "RSV": ("close", "high", "low"),
    "IMAX": ("high",),
    "IMIN": ("low",),
    "IMXD": ("high", "low"),
    "CORR": ("close", "volume"),
    "CORD": ("close", "volume"),
    "CNTP": ("close",),
    "CNTN": ("close",),
    "CNTD": ("close",),
    "SUMP": ("close",),
    "SUMN": ("close",),
    "SUMD": ("close",),
    "VMA": ("volume",),
    "VSTD": ("volume",),
    "WVMA": ("close", "volume"),
    "VSUMP": ("volume",),
    "VSUMN": ("volume",),
    "VSUMD": ("volume",),
}

_SINGLE_INPUTS: dict[str, tuple[str, ...]] = {
    "KMID": ("close", "open"),
    "KLEN": ("high", "low", "open"),
    "KMID2": ("close", "high", "low", "open"),
    "KUP": ("close", "high", "open"),
    "KUP2": ("close", "high", "low", "open"),
    "KLOW": ("close", "low", "open"),
    "KLOW2": ("close", "high", "low", "open"),
    "KSFT": ("close", "high", "low", "open"),
    "KSFT2": ("close", "high", "low"),
    "OPEN0": ("close", "open"),
    "HIGH0": ("close", "high"),
    "LOW0": ("close", "low"),
    "VWAP0": ("close", "vwap"),
}

ALPHA158_NAMES: tuple[str, ...] = (
    *KBAR_NAMES,
    *PRICE_NAMES,
    *(f"{family}{w}" for family in _FAMILY_INPUTS for w in WINDOWS),
)

FEATURE_INPUTS: dict[str, tuple[str, ...]] = {
    **_SINGLE_INPUTS,
    **{f"{family}{w}": inputs for family, inputs in _FAMILY_INPUTS.items() for w in WINDOWS},
}

# Calendar rows before day D (exclusive) that day D's features read: the 60-day windows
# reach D-59, and ROC60 / the Ref($close, 1) inside CORD60, CNTP60, SUMP60, WVMA60 ... reach D-60.
LOOKBACK_ROWS = 60
# LABEL0 of day D reads the closes of D+1 and D+2 (§4).
LABEL_LOOKAHEAD_ROWS = 2

LABEL_NAME = "LABEL0"
REQUIRED_FIELDS = ("open", "high", "low", "close", "volume")

# Instruments per block are chosen so that one block array holds about this many cells:
# numpy ops on ~1 MB arrays stay in cache and reuse freed memory (measured 5-10x faster
# per element than fresh 10 MB temporaries).
_BLOCK_CELLS = 1 << 17

_Emit = Callable[[str, np.ndarray], None]


def compute_alpha158(
    fields: pd.DataFrame,
    last_dates: Mapping[str, pd.Timestamp] | None = None,
    first_dates: Mapping[str, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """Alpha158 (§3) for every instrument and calendar day of the input.

    ``fields``: long frame ``instrument, date, open, high, low, close, volume`` (+ optional
    ``vwap``; ``factor`` is accepted and unused) of Qlib-adjusted values (§1.2).
    Returns ``instrument, date`` + the 158 float32 columns of :data:`ALPHA158_NAMES`, one
    row per instrument and calendar day (sorted union of the input's dates) from its first
    to its last date, sorted by (instrument, date); days without input are NaN-input rows.

    ``last_dates`` / ``first_dates`` (optional): per instrument the last / first date of its
    series in the full data. Rows then run from max(first, input start) to min(last, input
    end), so a lookback slice reproduces the full-history rows: a suspension at the end
    (or start) of the slice stays a NaN row instead of shortening the series.
    """
    panel = to_dense_panel(fields, REQUIRED_FIELDS, ("vwap",), first_dates, last_dates)
    columns = np.empty((len(ALPHA158_NAMES), panel.n_rows), dtype=np.float32)
    position = {name: i for i, name in enumerate(ALPHA158_NAMES)}
    for start, stop in _blocks(panel):
        writer = panel.block_writer(start, stop)
        block = {name: v[start:stop] for name, v in panel.values.items()}
        # Writing float64 results into the float32 columns is the final cast of §1.5.
        _alpha158_block(block, panel.first_row[start:stop], lambda name, v: writer.write(v, columns[position[name]]))
    return _assemble(panel, ALPHA158_NAMES, columns)


def compute_label(
    fields: pd.DataFrame,
    last_dates: Mapping[str, pd.Timestamp] | None = None,
    first_dates: Mapping[str, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """LABEL0 = Ref($close,-2)/Ref($close,-1) - 1 (§4), float32, same rows as :func:`compute_alpha158`.

    NaN on the last two rows of a series and wherever either of the next two calendar
    rows is a suspension.
    """
    panel = to_dense_panel(fields, ("close",), (), first_dates, last_dates)
    close = panel.values["close"]
    with np.errstate(divide="ignore", invalid="ignore"):
        label = op.shift(close, -2) / op.shift(close, -1) - 1  # float32 (§1.5)
    column = np.empty((1, panel.n_rows), dtype=np.float32)
    panel.block_writer(0, len(panel.instruments)).write(label, column[0])
    return _assemble(panel, (LABEL_NAME,), column)


def _blocks(panel: DensePanel) -> list[tuple[int, int]]:
    n_inst, n_cal = len(panel.instruments), len(panel.calendar)
    per_block = max(1, _BLOCK_CELLS // max(n_cal, 1))
    return [(s, min(s + per_block, n_inst)) for s in range(0, n_inst, per_block)]


def _assemble(panel: DensePanel, names: tuple[str, ...], columns: np.ndarray) -> pd.DataFrame:
    # columns is [feature, row]: pandas keeps it as one float32 block without a copy.
    frame = pd.DataFrame(columns.T, columns=list(names), copy=False)
    index = panel.long_index()
    frame.insert(0, "date", index["date"].to_numpy())
    frame.insert(0, "instrument", index["instrument"].to_numpy())
    return frame


@dataclass
class _Moments:
    """Per-window count, Σx, Σx² and std of one series over its own valid rows."""

    valid: np.ndarray
    zeroed: np.ndarray
    n: dict[int, np.ndarray]
    s1: dict[int, np.ndarray]
    s2: dict[int, np.ndarray]
    std: dict[int, np.ndarray]

    def mean(self, w: int) -> np.ndarray:
        return op.mean_from_sums(self.n[w], self.s1[w])


class _CountCache:
    """Window counts of validity masks; most series share their mask with the close."""

    def __init__(self) -> None:
        self._entries: list[tuple[np.ndarray, dict[int, np.ndarray]]] = []

    def __call__(self, valid: np.ndarray) -> dict[int, np.ndarray]:
        for mask, counts in self._entries:
            if np.array_equal(mask, valid):
                return counts
        counts = op.valid_counts(valid, WINDOWS)
        self._entries.append((valid, counts))
        return counts


def _moments(x: np.ndarray, counts: _CountCache, constant: dict[int, np.ndarray] | None = None) -> _Moments:
    zeroed, valid = op.finite_or_zero(x)
    n = counts(valid)
    s1 = op.window_sums(zeroed, WINDOWS)
    s2 = op.window_sums(zeroed * zeroed, WINDOWS)
    std = {w: op.std_from_sums(n[w], s1[w], s2[w], None if constant is None else constant[w]) for w in WINDOWS}
    return _Moments(valid, zeroed, n, s1, s2, std)


def _alpha158_block(f: dict[str, np.ndarray], first_row: np.ndarray, emit: _Emit) -> None:
    """All 158 features of one block of instruments ([instrument, calendar row] arrays)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        _kbar_and_price(f, emit)
        counts = _CountCache()
        close = _close_features(f["close"], counts, emit)
        _high_low_features(f, first_row, counts, emit)
        _correlation_features(f, close, counts, emit)
        _change_count_features(f["close"], first_row, emit)
        _volume_features(f, counts, emit)


def _kbar_and_price(f: dict[str, np.ndarray], emit: _Emit) -> None:
    # §1.5: float32 arithmetic; `$high-$low+1e-12` is a float32 sum.
    o, h, l, c = f["open"], f["high"], f["low"], f["close"]
    span = h - l + 1e-12
    body_top = np.maximum(o, c)  # Greater: NaN if either side is NaN (§2.1)
    body_bottom = np.minimum(o, c)
    shift_up = 2 * c - h - l
    emit("KMID", (c - o) / o)
    emit("KLEN", (h - l) / o)
    emit("KMID2", (c - o) / span)
    emit("KUP", (h - body_top) / o)
    emit("KUP2", (h - body_top) / span)
    emit("KLOW", (body_bottom - l) / o)
    emit("KLOW2", (body_bottom - l) / span)
    emit("KSFT", shift_up / o)
    emit("KSFT2", shift_up / span)
    emit("OPEN0", o / c)
    emit("HIGH0", h / c)
    emit("LOW0", l / c)
    # §1.3: without a vwap field Qlib yields NaN for VWAP0.
    vwap = f.get("vwap")
    emit("VWAP0", vwap / c if vwap is not None else np.full_like(c, np.nan))
    for w in WINDOWS:
        emit(f"ROC{w}", op.shift(c, w) / c)


def _close_features(c: np.ndarray, counts: _CountCache, emit: _Emit) -> _Moments:
    valid = np.isfinite(c)
    n = counts(valid)
    order_stats = WindowOrderStats(c, WINDOWS, n)
    constant = {w: order_stats.is_constant(w) for w in WINDOWS}
    # pandas' rolling std is exactly 0 on a constant window; the Rsquare/Corr masks need it.
    close = _moments(c, counts, constant=constant)
    slope, rsq, resi = op.regression(c, WINDOWS, close.s2, close.valid)
    ranks = op.rolling_rank(c, WINDOWS, n)
    for w in WINDOWS:
        emit(f"MA{w}", close.mean(w) / c)
        emit(f"STD{w}", close.std[w] / c)
        emit(f"BETA{w}", slope[w] / c)
        emit(f"RSQR{w}", op.mask_near_constant(rsq[w], close.std[w]))
        emit(f"RESI{w}", resi[w] / c)
        emit(f"QTLU{w}", order_stats.quantile(w, 0.8) / c)
        emit(f"QTLD{w}", order_stats.quantile(w, 0.2) / c)
        emit(f"RANK{w}", ranks[w])
    return close


def _high_low_features(f: dict[str, np.ndarray], first_row: np.ndarray, counts: _CountCache, emit: _Emit) -> None:
    h, l, c = f["high"], f["low"], f["close"]
    highest = op.rolling_max(h, WINDOWS)
    lowest = op.rolling_min(l, WINDOWS)
    # §2.1: IdxMax/IdxMin point at the first NaN of the window; IdxMin(x) = IdxMax(-x).
    high_at = op.rolling_argmax_position(h, WINDOWS, first_row, counts(np.isfinite(h)))
    low_at = op.rolling_argmax_position(-l, WINDOWS, first_row, counts(np.isfinite(l)))
    for w in WINDOWS:
        emit(f"MAX{w}", highest[w] / c)
        emit(f"MIN{w}", lowest[w] / c)
        emit(f"RSV{w}", (c - lowest[w]) / (highest[w] - lowest[w] + 1e-12))
        emit(f"IMAX{w}", high_at[w] / w)
        emit(f"IMIN{w}", low_at[w] / w)
        emit(f"IMXD{w}", (high_at[w] - low_at[w]) / w)


def _correlation_features(f: dict[str, np.ndarray], close: _Moments, counts: _CountCache, emit: _Emit) -> None:
    c, v = f["close"], f["volume"]
    log_volume = np.log(v + 1)  # float32 (§1.5); Log(0) = -inf counts as missing (§2.3)
    corr = _corr(close, _moments(log_volume, counts), counts)
    prev_c, prev_v = op.shift(c, 1), op.shift(v, 1)
    # v/Ref(v,1) is inf after a zero-volume day: that row drops out of the Corr (§2.3).
    cord = _corr(_moments(c / prev_c, counts), _moments(np.log(v / prev_v + 1), counts), counts)
    for w in WINDOWS:
        emit(f"CORR{w}", corr[w])
        emit(f"CORD{w}", cord[w])


def _corr(a: _Moments, b: _Moments, counts: _CountCache) -> dict[int, np.ndarray]:
    """``Corr(a, b, W)`` over pairwise-valid rows, NaN where either own std <= 2e-5 (§2.1, §2.4)."""
    both = a.valid & b.valid
    sab = op.window_sums(a.zeroed * b.zeroed, WINDOWS)
    if np.array_equal(both, a.valid) and np.array_equal(both, b.valid):
        n, sa, sb, saa, sbb = a.n, a.s1, b.s1, a.s2, b.s2
    else:
        za, zb = np.where(both, a.zeroed, 0.0), np.where(both, b.zeroed, 0.0)
        n = counts(both)
        sa, sb = op.window_sums(za, WINDOWS), op.window_sums(zb, WINDOWS)
        saa, sbb = op.window_sums(za * za, WINDOWS), op.window_sums(zb * zb, WINDOWS)
    out = {}
    for w in WINDOWS:
        r = op.pearson_from_sums(n[w], sa[w], sb[w], saa[w], sbb[w], sab[w])
        out[w] = op.mask_near_constant(r, a.std[w], b.std[w])
    return out


def _change_count_features(c: np.ndarray, first_row: np.ndarray, emit: _Emit) -> None:
    prev = op.shift(c, 1)
    # §2.1: a comparison with NaN is False, so a suspended day counts as 0, not as missing,
    # and the mean divides by every row of the window since the series start.
    rises = op.window_sums((c > prev).astype(np.int16), WINDOWS)
    falls = op.window_sums((c < prev).astype(np.int16), WINDOWS)
    age = np.arange(c.shape[1])[None, :] - first_row[:, None] + 1
    for w in WINDOWS:
        rows = np.minimum(age, w).astype(np.float64)
        up, down = rises[w] / rows, falls[w] / rows
        emit(f"CNTP{w}", up)
        emit(f"CNTN{w}", down)
        emit(f"CNTD{w}", up - down)
    _gain_loss_ratios(c, prev, "SUM", emit)


def _gain_loss_ratios(x: np.ndarray, prev: np.ndarray, prefix: str, emit: _Emit) -> None:
    """SUMP/SUMN/SUMD (x = close) or VSUMP/VSUMN/VSUMD (x = volume)."""
    change = x - prev  # float32; Greater(., 0) keeps NaN (§2.1)
    gain, valid = op.finite_or_zero(np.maximum(change, 0))
    loss, _ = op.finite_or_zero(np.maximum(-change, 0))
    size, _ = op.finite_or_zero(np.abs(change))
    n = op.valid_counts(valid, WINDOWS)
    gains, losses, sizes = (op.window_sums(s, WINDOWS) for s in (gain, loss, size))
    for w in WINDOWS:
        total = op.sum_or_nan(n[w], sizes[w]) + 1e-12
        up, down = op.sum_or_nan(n[w], gains[w]), op.sum_or_nan(n[w], losses[w])
        emit(f"{prefix}P{w}", up / total)
        emit(f"{prefix}N{w}", down / total)
        emit(f"{prefix}D{w}", (up - down) / total)


def _volume_features(f: dict[str, np.ndarray], counts: _CountCache, emit: _Emit) -> None:
    c, v = f["close"], f["volume"]
    volume = _moments(v, counts)
    denominator = v + 1e-12  # float32: only matters on a zero-volume day (§2.3)
    weighted = _moments(np.abs(c / op.shift(c, 1) - 1) * v, counts)
    for w in WINDOWS:
        emit(f"VMA{w}", volume.mean(w) / denominator)
        emit(f"VSTD{w}", volume.std[w] / denominator)
        emit(f"WVMA{w}", weighted.std[w] / (weighted.mean(w) + 1e-12))
    _gain_loss_ratios(v, op.shift(v, 1), "VSUM", emit)
