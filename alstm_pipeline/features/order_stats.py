"""Order statistics of sliding windows without sorting each window (Quantile, §2.1).

A sorted list of arrays ``S[0] <= S[1] <= ... <= S[n-1]`` (element-wise) holds, at column
t, the sorted values of the window of length n ending at calendar row t. Such lists are
merged with comparator networks (element-wise min/max over whole blocks), so the cost is
a few hundred vectorised min/max calls per block instead of one sort per window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def merge_sorted_lists(a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    """Batcher's odd-even merge of two sorted lists of arrays, element-wise (no NaN allowed).

    Valid for any two lengths (checked by the 0-1 principle in the tests); a 30+30 merge
    takes about 150 min/max pairs over whole arrays instead of a per-window sort.
    """
    if not a or not b:
        return list(a or b)
    if len(a) == 1 and len(b) == 1:
        return [np.minimum(a[0], b[0]), np.maximum(a[0], b[0])]
    evens = merge_sorted_lists(a[0::2], b[0::2])
    odds = merge_sorted_lists(a[1::2], b[1::2])
    out = [evens[0]]
    for i, odd in enumerate(odds):
        if i + 1 < len(evens):
            out += [np.minimum(odd, evens[i + 1]), np.maximum(odd, evens[i + 1])]
        else:
            out.append(odd)
    return out + evens[len(odds) + 1 :]


def kth_of_union(a: list[np.ndarray], b: list[np.ndarray], k: int) -> np.ndarray:
    """k-th smallest (0-based) of the union of two sorted lists, element-wise.

    If i of the k+1 smallest come from a, the k-th is max(a[i-1], b[k-i]); the true split
    gives the smallest such value.
    """
    best = None
    for i in range(max(0, k + 1 - len(b)), min(k + 1, len(a)) + 1):
        parts = ([a[i - 1]] if i > 0 else []) + ([b[k - i]] if k - i >= 0 else [])
        term = parts[0] if len(parts) == 1 else np.maximum(parts[0], parts[1])
        best = term if best is None else np.minimum(best, term)
    return best


def right_aligned(lists: list[list[np.ndarray]], gaps: list[int]) -> list[list[np.ndarray]]:
    """Views of several lists of arrays whose last columns sit ``gap`` columns before the
    end, cut to a common length (columns are calendar rows, all aligned on the right)."""
    length = min(arrays[0].shape[1] - gap for arrays, gap in zip(lists, gaps))
    return [[x[:, x.shape[1] - gap - length : x.shape[1] - gap] for x in arrays] for arrays, gap in zip(lists, gaps)]


class WindowOrderStats:
    """Order statistics of every length-W window of a block, for ``Quantile`` and for
    telling constant windows (§2.1: pandas' rolling quantile, linear interpolation at
    (m-1)·q over the m valid values).

    Full windows (W valid values) get their order statistics from sorting networks built
    over the whole block: sorted lists of every window of length n are merged from lists of
    length n - n//2 and n//2 (memoised), and a window whose full list is not needed
    elsewhere only computes the few statistics asked for from its two halves. Windows with
    missing values (series start, suspensions) are few: they are gathered and np.sort-ed.
    """

    def __init__(self, x: np.ndarray, windows: Sequence[int], n_valid: dict[int, np.ndarray]):
        self._n_valid = n_valid
        self._n_cols = x.shape[1]
        longest = max(windows)
        finite = np.isfinite(x)
        # Missing values sort last (+inf); the cells whose window holds one use the fallback.
        self._key = np.full((x.shape[0], longest - 1 + self._n_cols), np.inf, dtype=x.dtype)
        self._key[:, longest - 1 :] = np.where(finite, x, np.inf)
        self._nan_padded = np.where(np.isinf(self._key), np.nan, self._key)
        self._lists: dict[int, list[np.ndarray]] = {1: [self._key]}
        self._full_lists = set().union(*(self._halves_closure(w) for w in windows))
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._fallback: dict[int, tuple[tuple[np.ndarray, np.ndarray], np.ndarray]] = {}

    @staticmethod
    def _halves_closure(window: int) -> set[int]:
        """Lengths whose full sorted lists are built to serve ``window``."""
        if window == 1:
            return set()
        needed: set[int] = set()
        stack = [window - window // 2, window // 2]
        while stack:
            n = stack.pop()
            if n > 1 and n not in needed:
                needed.add(n)
                stack += [n - n // 2, n // 2]
        return needed

    def _sorted_list(self, n: int) -> list[np.ndarray]:
        if n not in self._lists:
            older, newer = right_aligned([self._sorted_list(n - n // 2), self._sorted_list(n // 2)], [n // 2, 0])
            self._lists[n] = merge_sorted_lists(older, newer)
        return self._lists[n]

    def _full_window_stat(self, window: int, k: int) -> np.ndarray:
        """k-th smallest of each window, valid where the window has no missing value."""
        if (window, k) not in self._cache:
            if window == 1 or window in self._full_lists:
                stat = self._sorted_list(window)[k]
            else:
                older, newer = right_aligned(
                    [self._sorted_list(window - window // 2), self._sorted_list(window // 2)], [window // 2, 0]
                )
                stat = kth_of_union(older, newer, k)
            self._cache[(window, k)] = stat[:, stat.shape[1] - self._n_cols :]
        return self._cache[(window, k)]

    def _partial_windows(self, window: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """Cells whose window has some but not all values missing, and their windows
        sorted (NaN last). All-missing windows (before a series starts) are NaN anyway."""
        if window not in self._fallback:
            n = self._n_valid[window]
            cells = np.nonzero((n != window) & (n > 0))
            offset = self._key.shape[1] - self._n_cols  # pad columns before calendar row 0
            cols = (cells[1] + offset - window + 1)[:, None] + np.arange(window)
            values = self._nan_padded[cells[0][:, None], cols]
            self._fallback[window] = (cells, np.sort(values, axis=1))
        return self._fallback[window]

    def _order_stat(self, window: int, k: np.ndarray, k_if_full: int) -> np.ndarray:
        """Order statistic k (0-based, per cell) as float64; ``k_if_full`` is k for full windows."""
        out = self._full_window_stat(window, k_if_full).astype(np.float64)
        out[self._n_valid[window] == 0] = np.nan
        cells, ordered = self._partial_windows(window)
        if cells[0].size:
            kp = np.clip(k[cells], 0, window - 1)
            out[cells] = ordered[np.arange(kp.size), kp]
        return out

    def quantile(self, window: int, q: float) -> np.ndarray:
        """``Quantile(x, W, q)``: NaN where the window has no valid value."""
        m = self._n_valid[window].astype(np.int64)
        h = q * (m - 1).astype(np.float64)
        lo = np.floor(h).astype(np.int64)
        frac = h - lo
        lo_full = int(np.floor(q * float(window - 1)))
        v_lo = self._order_stat(window, lo, lo_full)
        v_hi = self._order_stat(window, lo + 1, min(lo_full + 1, window - 1))
        out = np.where(frac == 0.0, v_lo, v_lo + (v_hi - v_lo) * frac)
        out[m == 0] = np.nan
        return out

    def is_constant(self, window: int) -> np.ndarray:
        """True where the window's valid values are all equal (a single value included)."""
        m = self._n_valid[window].astype(np.int64)
        smallest = self._order_stat(window, np.zeros_like(m), 0)
        largest = self._order_stat(window, m - 1, window - 1)
        return (m > 0) & (smallest == largest)
