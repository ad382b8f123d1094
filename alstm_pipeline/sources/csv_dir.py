"""Bars from a folder of per-instrument CSV files, the layout Qlib's data collectors write.

``<folder>/<CODE>.csv`` holds one instrument; the file name (without ``.csv``) is its
code, case kept (``BF.B.csv`` is ``BF.B``). Columns as described in ``bars.py``; a
``symbol`` column, if present, is ignored in favour of the file name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from .bars import arrow_to_bars_frame, bars_to_raw, wanted_columns
from .base import RAW_COLUMNS, Problems, SourceDataError, normalise_query, ranges_frame
from .validation import finish_raw, parse_dates


class CsvDirSource:
    """A folder of ``<CODE>.csv`` files, one instrument each."""

    kind = "csv"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise SourceDataError("is not a folder of CSV files", file=self.path)
        self.files = {file.name[: -len(".csv")]: file for file in sorted(self.path.glob("*.csv")) if file.is_file()}
        if not self.files:
            raise SourceDataError("folder holds no .csv files", file=self.path)

    def __repr__(self) -> str:
        return f"CsvDirSource({str(self.path)!r}, files={len(self.files)})"

    def instruments(self) -> list[str]:
        """Codes taken from the file names, sorted."""
        return sorted(self.files)

    def calendar(self) -> pd.DatetimeIndex:
        """All dates present in any file, sorted; every file with bad dates is reported at once."""
        dates = self._all_dates()
        return pd.DatetimeIndex(np.unique(np.concatenate(list(dates.values()))), name="date")

    def date_ranges(self) -> pd.DataFrame:
        """Each instrument's first and last date."""
        rows = {code: {"min": days.min(), "max": days.max()} for code, days in self._all_dates().items() if len(days)}
        return ranges_frame(pd.DataFrame.from_dict(rows, orient="index", columns=["min", "max"]))

    def read(self, start=None, end=None, instruments: Iterable[str] | None = None) -> pd.DataFrame:
        """Validated raw_ohlcv rows; see ``Source.read``.

        Every file is checked; if any has problems, one ``SourceReport`` names them all.
        """
        start, end, wanted = normalise_query(start, end, instruments)
        codes = self.instruments() if wanted is None else [code for code in wanted if code in self.files]
        problems = Problems(self.path)
        parts, part_files = [], []
        # One file after another: a thread pool measured no faster on 2 cores (the pandas
        # work per file holds the GIL; Arrow's parsing of a small file is the lesser part).
        for code in codes:
            file = self.files[code]
            problems.files_checked += 1
            before = len(problems)
            try:
                bars = read_bars_csv(file)
                raw = bars_to_raw(bars, file=file, problems=problems, instrument=code, start=start, end=end)
            except SourceDataError as error:  # this file is unusable; go on to report the others
                problems.add_error(error)
                continue
            if len(problems) == before:  # a bad file's rows are not kept: nothing is returned anyway
                parts.append(raw)
                part_files.append(file)
        return finish_raw(parts, RAW_COLUMNS, file=self.path, problems=problems, part_files=part_files)

    def _all_dates(self) -> dict[str, np.ndarray]:
        problems = Problems(self.path)
        dates = {}
        for code, file in self.files.items():
            problems.files_checked += 1
            try:
                dates[code] = self._read_dates(code, file, problems)
            except SourceDataError as error:
                problems.add_error(error)
        problems.raise_if_any()
        return dates

    def _read_dates(self, code: str, file: Path, problems: Problems) -> np.ndarray:
        bars = read_bars_csv(file, only=("date",))
        if "date" not in bars.columns:
            raise SourceDataError("missing required column(s) date", file=file)
        return parse_dates(bars["date"], np.full(len(bars), code, dtype=object), file=file, problems=problems)


def read_bars_csv(file: Path, only: Iterable[str] | None = None) -> pd.DataFrame:
    """One CSV as a DataFrame with normalised column names; non-CSV content is an error.

    ``only`` limits the columns parsed (by normalised name), e.g. to the dates.
    """
    head = _head(file)
    if not head.strip():
        raise SourceDataError("is empty, not a CSV of daily bars", file=file)
    if head.lstrip().startswith("<"):
        # The panel's own upstream once saved an HTML error page as BF.B.csv.
        first_line = head.lstrip().splitlines()[0][:60]
        raise SourceDataError(
            f"is not a CSV of daily bars: it starts like an HTML/XML page ({first_line!r})", file=file
        )
    header = head.lstrip("\ufeff").splitlines()[0]
    names = [name.strip().strip('"') for name in header.split(",")]
    spelled = wanted_columns(names)
    keep = [spelled[name] for name in (only or spelled) if name in spelled]
    try:
        table = pacsv.read_csv(
            file,
            read_options=pacsv.ReadOptions(use_threads=False),
            convert_options=pacsv.ConvertOptions(include_columns=keep, strings_can_be_null=True),
        )
    except (pa.ArrowException, OSError) as error:
        raise SourceDataError(f"is not a readable CSV of daily bars ({error})", file=file) from None
    if table.num_rows == 0:
        # Stored as is, it would list an instrument with no bars in the universe.
        raise SourceDataError("holds no bars: a header and no rows (nothing left after parsing)", file=file)
    return arrow_to_bars_frame(table)


def _head(file: Path, size: int = 4096) -> str:
    with open(file, "rb") as handle:
        return handle.read(size).decode("utf-8", errors="replace")

