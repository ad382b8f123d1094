"""Long ``instrument, date, field...`` frames ⇄ dense ``[instrument, calendar row]`` arrays.

§1.1: every operator works on the instrument's calendar-aligned series. The calendar is the
sorted union of the input's dates; an instrument's series runs from its first to its last
date (optionally widened by ``first_dates`` / ``last_dates`` from the full data) and a day
inside that span without a row is a row of NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class DensePanel:
    """Fields of many instruments aligned to one calendar.

    ``values[field][i, t]`` is instrument i's value on ``calendar[t]`` (float32, NaN where it
    has no row). Instrument i's series spans calendar rows ``first_row[i] .. last_row[i]``.
    """

    instruments: np.ndarray
    calendar: np.ndarray
    values: dict[str, np.ndarray]
    first_row: np.ndarray
    last_row: np.ndarray

    @property
    def n_rows(self) -> int:
        """Rows of the long output: one per instrument and calendar day of its span."""
        return int((self.last_row - self.first_row + 1).sum())

    def row_offsets(self) -> np.ndarray:
        """Start of each instrument's rows in the long output, plus the total at the end."""
        return np.concatenate([[0], np.cumsum(self.last_row - self.first_row + 1)])

    def long_index(self) -> pd.DataFrame:
        """``instrument, date`` of every output row, sorted by (instrument, date)."""
        lengths = self.last_row - self.first_row + 1
        starts = np.cumsum(lengths) - lengths
        cal_rows = np.repeat(self.first_row - starts, lengths) + np.arange(lengths.sum())
        return pd.DataFrame({"instrument": np.repeat(self.instruments, lengths), "date": self.calendar[cal_rows]})

    def block_writer(self, start: int, stop: int) -> BlockWriter:
        """A :class:`BlockWriter` for the block of instruments start..stop-1."""
        return BlockWriter(self, start, stop)


class BlockWriter:
    """Copies the span cells of a ``[instrument, calendar row]`` block into long rows.

    Consecutive instruments with the same span form one rectangle of the block whose
    cells, read row by row, are exactly their output rows; each is copied with one slice
    assignment (which also performs the final float32 cast).
    """

    def __init__(self, panel: DensePanel, start: int, stop: int):
        offsets = panel.row_offsets()
        self._runs = []
        i0 = start
        for i in range(start + 1, stop + 1):
            if i == stop or (panel.first_row[i], panel.last_row[i]) != (panel.first_row[i0], panel.last_row[i0]):
                first, last = int(panel.first_row[i0]), int(panel.last_row[i0])
                self._runs.append((int(offsets[i0]), int(offsets[i]), i0 - start, i - start, first, last))
                i0 = i

    def write(self, values: np.ndarray, out: np.ndarray) -> None:
        """Write ``values`` ([block instrument, calendar row]) into ``out`` (one long column)."""
        for r0, r1, b0, b1, first, last in self._runs:
            out[r0:r1].reshape(b1 - b0, last - first + 1)[...] = values[b0:b1, first : last + 1]


def to_dense_panel(
    fields: pd.DataFrame,
    required: Sequence[str],
    optional: Sequence[str] = (),
    first_dates: Mapping[str, pd.Timestamp] | None = None,
    last_dates: Mapping[str, pd.Timestamp] | None = None,
) -> DensePanel:
    """Pivot a long frame to a :class:`DensePanel`.

    ``required`` value columns must exist; ``optional`` ones are used when present (absent
    ones are simply not in ``values``). With ``first_dates``/``last_dates`` (the full
    data's series bounds) spans widen to those dates, clipped to the input calendar; when
    both are given, an instrument that is in both but has no row in the input (suspended
    through the whole slice) gets its all-NaN rows too. Raises ``ValueError`` naming the
    problem for missing columns, null keys, duplicate (instrument, date) rows and bounds
    inside an instrument's input rows.
    """
    missing = [c for c in ("instrument", "date", *required) if c not in fields.columns]
    if missing:
        raise ValueError(f"fields frame lacks column(s) {missing}; has {list(fields.columns)}")
    # A pd.Series indexed by instrument works as well as a dict (iterating it would not).
    first_dates = None if first_dates is None else dict(first_dates.items())
    last_dates = None if last_dates is None else dict(last_dates.items())
    inst_codes, instruments = pd.factorize(fields["instrument"], sort=True)
    dates = pd.to_datetime(fields["date"]).to_numpy("datetime64[ns]")
    date_codes, calendar = pd.factorize(dates, sort=True)
    if (inst_codes < 0).any() or (date_codes < 0).any():  # factorize codes nulls as -1
        bad = int(np.flatnonzero((inst_codes < 0) | (date_codes < 0))[0])
        raise ValueError(f"fields frame has a null instrument or date (row {bad}: {dict(fields.iloc[bad])})")
    calendar = np.asarray(calendar, dtype="datetime64[ns]")
    instruments = np.asarray(instruments, dtype=object)
    if first_dates is not None and last_dates is not None and len(calendar):
        absent = sorted((set(first_dates) & set(last_dates)) - set(instruments))
        if absent:
            with_absent = np.array(sorted([*instruments, *absent]), dtype=object)
            inst_codes = np.searchsorted(with_absent, instruments)[inst_codes]
            instruments = with_absent
    n_inst, n_cal = len(instruments), len(calendar)

    flat = inst_codes.astype(np.int64) * n_cal + date_codes
    present = np.zeros(n_inst * n_cal, dtype=bool)
    present[flat] = True
    if int(present.sum()) != len(flat):
        _raise_duplicate(fields)

    columns = [c for c in required] + [c for c in optional if c in fields.columns]
    values = {}
    for name in columns:
        column = fields[name]
        if not (pd.api.types.is_numeric_dtype(column) or column.isna().all()):
            raise ValueError(f"column {name!r} must be numeric, got dtype {column.dtype}")
        dense = np.full(n_inst * n_cal, np.nan, dtype=np.float32)
        dense[flat] = column.to_numpy(dtype=np.float32, na_value=np.nan)
        values[name] = dense.reshape(n_inst, n_cal)

    present = present.reshape(n_inst, n_cal)
    if n_cal == 0:  # an empty frame: no series, no calendar
        return DensePanel(instruments, calendar, values, np.zeros(0, np.int64), np.zeros(0, np.int64))
    has_rows = present.any(axis=1)
    # An instrument without input rows starts after the calendar and ends before it
    # unless its bounds say otherwise; such empty spans are dropped below.
    first_row = np.where(has_rows, present.argmax(axis=1), n_cal).astype(np.int64)
    last_row = np.where(has_rows, n_cal - 1 - present[:, ::-1].argmax(axis=1), -1).astype(np.int64)
    if first_dates is not None:
        first_row = _widen(first_row, has_rows, instruments, calendar, first_dates, earlier=True)
    if last_dates is not None:
        last_row = _widen(last_row, has_rows, instruments, calendar, last_dates, earlier=False)
    keep = first_row <= last_row
    if not keep.all():
        instruments, first_row, last_row = instruments[keep], first_row[keep], last_row[keep]
        values = {name: v[keep] for name, v in values.items()}
    return DensePanel(instruments, calendar, values, first_row, last_row)


def _widen(
    rows: np.ndarray,
    has_rows: np.ndarray,
    instruments: np.ndarray,
    calendar: np.ndarray,
    bounds: Mapping[str, pd.Timestamp],
    earlier: bool,
) -> np.ndarray:
    """Move span ends out to the full-data first/last dates, clipped to the input calendar."""
    rows = rows.copy()
    for i, inst in enumerate(instruments):
        if inst not in bounds:
            continue
        bound = np.datetime64(pd.Timestamp(bounds[inst]), "ns")
        if earlier:
            target = int(np.searchsorted(calendar, bound, side="left"))
            if has_rows[i] and target > rows[i]:
                raise ValueError(
                    f"first_dates[{inst!r}] = {bounds[inst]} is after its first row in the input "
                    f"({calendar[rows[i]]})"
                )
        else:
            target = int(np.searchsorted(calendar, bound, side="right")) - 1
            if has_rows[i] and target < rows[i]:
                raise ValueError(
                    f"last_dates[{inst!r}] = {bounds[inst]} is before its last row in the input "
                    f"({calendar[rows[i]]})"
                )
        rows[i] = target
    return rows


def _raise_duplicate(fields: pd.DataFrame) -> None:
    dup = fields[fields.duplicated(["instrument", "date"], keep=False)].iloc[0]
    raise ValueError(
        f"fields frame has several rows for instrument {dup['instrument']!r} on {dup['date']}"
    )
