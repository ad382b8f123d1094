"""TSDataSampler's 20-step windows by index arithmetic (semantics doc §6).

A segment becomes a `SampleSet`: the fetched rows once, as a [R, F] tensor, plus an
[S, step_len] int64 table of row numbers. A batch of windows is one gather
(`rows[index[ids]]`), so there is no per-sample Python and no DataLoader in the data path.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from alstm_pipeline.dataset.data_keys import DATA_COLUMNS
from alstm_pipeline.dataset.processing import ALSTM_FEATURES, LABEL_COLUMN, require_columns

from alstm_pipeline.dataset.constants import STEP_LEN  # noqa: E402 - re-exported here

SampleIds = torch.Tensor | slice | None


@dataclass
class SampleSet:
    """The samples of one segment and the rows their windows are gathered from.

    Samples are in Qlib's order: instrument-major, then date (§6 step 4).
    """

    rows: torch.Tensor  # [R, F] float32 feature rows
    labels: torch.Tensor  # [R] float64 label of each row (NaN allowed for test sets)
    index: torch.Tensor  # [S, step_len] int64; index[s, -1] is sample s's own row
    dates: np.ndarray  # [S] datetime64[ns]
    instruments: np.ndarray  # [S] str

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def step_len(self) -> int:
        return int(self.index.shape[1])

    def to(self, device) -> SampleSet:
        """Move the tensors (rows, labels, index) to `device`; dates/instruments stay numpy."""
        return replace(
            self,
            rows=self.rows.to(device),
            labels=self.labels.to(device),
            index=self.index.to(device),
        )

    def _window_rows(self, sample_ids: SampleIds) -> torch.Tensor:
        if sample_ids is None:
            return self.index
        if isinstance(sample_ids, torch.Tensor):
            sample_ids = sample_ids.to(self.index.device)
        return self.index[sample_ids]

    def windows(self, sample_ids: SampleIds = None) -> torch.Tensor:
        """[B, step_len, F] float32 model inputs of the given samples (all when None), oldest first."""
        return self.rows[self._window_rows(sample_ids)]

    def targets(self, sample_ids: SampleIds = None) -> torch.Tensor:
        """[B] float64 labels of the given samples: the label of each window's last (own) row."""
        return self.labels[self._window_rows(sample_ids)[:, -1]]


def _day_text(value) -> str:
    return str(pd.Timestamp(value).date())


def _fetch_start(calendar: pd.DatetimeIndex, start: pd.Timestamp, step_len: int) -> pd.Timestamp:
    """§6 step 1: the window history starts step_len calendar dates before the segment."""
    if len(calendar) == 0:
        raise ValueError("the calendar is empty")
    if not (calendar.is_monotonic_increasing and calendar.is_unique):
        raise ValueError("the calendar must be sorted ascending without duplicate dates")
    first_sample_pos = int(calendar.searchsorted(start, side="left"))
    return calendar[max(0, first_sample_pos - step_len)]


def _row_table(date_codes: np.ndarray, inst_codes: np.ndarray, n_dates: int, n_inst: int) -> np.ndarray:
    """§6 step 3: T[date, instrument] = row number, -1 where the pair has no row."""
    table = np.full((n_dates, n_inst), -1, dtype=np.int64)
    table[date_codes, inst_codes] = np.arange(len(date_codes), dtype=np.int64)
    return table


def _window_index(
    date_codes: np.ndarray, inst_codes: np.ndarray, table: np.ndarray, sample_rows: np.ndarray, step_len: int
) -> np.ndarray:
    """§6 step 5 for all samples at once: ffill then bfill, only within each window.

    Rows are sorted (instrument, date), so inside one instrument's table column row numbers
    grow with the date. Hence a running max down the column gives the last present row at or
    before each date (ffill), a reversed running min the first present row at or after it.
    A window entry takes the ffilled row unless that row lies before the window (or there
    is none): then it takes the window's first present row (bfill). Taking the larger of the
    two row numbers does exactly that, because rows before the window are smaller.
    """
    n_dates, n_inst = table.shape
    n_rows = len(date_codes)
    last_present = np.maximum.accumulate(table, axis=0)
    first_present = np.where(table >= 0, table, n_rows)
    first_present = np.minimum.accumulate(first_present[::-1], axis=0)[::-1]
    # Front padding (window reaching before the first table date) = step_len-1 rows of "none".
    padded = np.vstack([np.full((step_len - 1, n_inst), -1, dtype=np.int64), last_present])

    sample_date = date_codes[sample_rows]
    sample_inst = inst_codes[sample_rows]
    window_first = first_present[np.maximum(sample_date - (step_len - 1), 0), sample_inst]
    # padded row of window entry k for a sample at table date r: r + k (= date r - (step_len-1) + k).
    flat = (sample_date[:, None] + np.arange(step_len, dtype=np.int64)) * n_inst + sample_inst[:, None]
    index = padded.ravel()[flat]
    np.maximum(index, window_first[:, None], out=index)
    return index


def build_samples(
    data: pd.DataFrame,
    start,
    end,
    calendar: pd.DatetimeIndex,
    step_len: int = STEP_LEN,
) -> SampleSet:
    """Cut the samples of segment [start, end] (inclusive) from a data-key frame (§6).

    `data` has ``instrument, date``, the 20 ALSTM features and ``LABEL0`` (learn_frame or
    infer_frame). `calendar` is the sorted distinct dates of the raw handler frame; windows
    reach back at most step_len of its dates before `start` (§6 step 1). The window table
    runs over the dates present in the fetched rows (§6 step 3), so a date with no row at
    all (every label NaN in a learn frame) is not a window step.
    """
    require_columns(data, DATA_COLUMNS, "sample data")
    if step_len < 1:
        raise ValueError(f"step_len must be at least 1, got {step_len}")
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if start > end:
        raise ValueError(f"segment {_day_text(start)}..{_day_text(end)} starts after it ends")
    fetch_start = _fetch_start(pd.DatetimeIndex(calendar), start, step_len)

    all_dates = data["date"].to_numpy(dtype="datetime64[ns]")
    fetched_mask = (all_dates >= fetch_start.to_datetime64()) & (all_dates <= end.to_datetime64())
    is_sample = fetched_mask & (all_dates >= start.to_datetime64())
    if not is_sample.any():
        covered = "no dates at all"
        if len(all_dates):
            covered = f"{_day_text(all_dates.min())}..{_day_text(all_dates.max())}"
        raise ValueError(
            f"segment {_day_text(start)}..{_day_text(end)} has no rows; the data covers {covered}"
        )

    fetched = data.loc[fetched_mask]
    inst_codes, instruments = pd.factorize(fetched["instrument"].to_numpy(), sort=True)
    date_codes, table_dates = pd.factorize(all_dates[fetched_mask], sort=True)
    # §6 step 2: rows in (instrument, date) order.
    order = np.lexsort((date_codes, inst_codes))
    inst_codes = inst_codes[order].astype(np.int64)
    date_codes = date_codes[order].astype(np.int64)
    same_key = (np.diff(inst_codes) == 0) & (np.diff(date_codes) == 0)
    if same_key.any():
        at = int(np.flatnonzero(same_key)[0])
        raise ValueError(
            f"sample data has duplicated rows for {instruments[inst_codes[at]]} "
            f"on {_day_text(table_dates[date_codes[at]])}"
        )

    table = _row_table(date_codes, inst_codes, len(table_dates), len(instruments))
    # §6 step 4: samples are the rows dated inside the segment, in row (instrument-major) order.
    sample_rows = np.flatnonzero(is_sample[fetched_mask][order])
    index = _window_index(date_codes, inst_codes, table, sample_rows, step_len)

    rows = fetched[list(ALSTM_FEATURES)].to_numpy(dtype=np.float32)[order]
    labels = fetched[LABEL_COLUMN].to_numpy(dtype=np.float64)[order]
    return SampleSet(
        rows=torch.from_numpy(np.ascontiguousarray(rows)),
        labels=torch.from_numpy(np.ascontiguousarray(labels)),
        index=torch.from_numpy(index),
        dates=np.asarray(table_dates[date_codes[sample_rows]], dtype="datetime64[ns]"),
        instruments=np.asarray(instruments, dtype=str)[inst_codes[sample_rows]],
    )
