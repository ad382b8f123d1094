"""Bars from one Parquet file or a folder of them (the shared panel, the bundled sample).

Each file holds a panel: an ``instrument`` column plus the bar columns described in
``bars.py``. ``date`` may be a date, a timestamp or ISO text (the panel has had both).
"""

from __future__ import annotations

import functools
import operator
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .bars import BAR_COLUMNS, arrow_to_bars_frame, bars_to_raw, wanted_columns
from .base import RAW_COLUMNS, Problems, SourceDataError, normalise_query, ranges_frame
from .validation import finish_raw, parse_dates, require_columns, today

PARQUET_SUFFIXES = (".parquet", ".pq")
BATCH_ROWS = 262_144  # bounds the float64 intermediates of the adjustment; same speed as one slice


class ParquetSource:
    """A Parquet file, or a folder whose ``*.parquet`` files (any depth) together form the panel."""

    kind = "parquet"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.rglob("*") if p.suffix in PARQUET_SUFFIXES and p.is_file())
            if not self.files:
                raise SourceDataError("folder holds no .parquet files", file=self.path)
        else:
            self.files = [self.path]
        # Reading the footers up front turns a wrong file into an error at open time,
        # every wrong file of a folder in one report.
        problems = Problems(self.path)
        self._schemas, self._columns = {}, {}
        for file in self.files:
            problems.files_checked += 1
            try:
                self._schemas[file], rows = _read_footer(file)
                self._columns[file] = _bar_columns(file, self._schemas[file])
                if rows == 0:  # stored as is, a run would ingest nothing and say nothing
                    raise SourceDataError("holds no rows of bars (an empty table)", file=file)
            except SourceDataError as error:
                problems.add_error(error)
        problems.raise_if_any()

    def __repr__(self) -> str:
        return f"ParquetSource({str(self.path)!r}, files={len(self.files)})"

    def _read_batches(self, file: Path, names: Iterable[str], row_filter=None) -> Iterator[pd.DataFrame]:
        """The file's rows in slices of BATCH_ROWS, columns renamed and dates as datetime64.

        Slices keep the float64 intermediates of the adjustment to one slice at a time.
        """
        spelled = self._columns[file]
        columns = [spelled[name] for name in names if name in spelled]
        # Dictionary-decode the repetitive text columns: each code (and text date) is then
        # handled once, not once per row.
        schema = self._schemas[file]
        repetitive = [
            name for name in columns
            if name in (spelled["instrument"], spelled["date"])
            and (pa.types.is_string(schema.field(name).type) or pa.types.is_large_string(schema.field(name).type))
        ]
        file_format = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=repetitive))
        try:
            batches = ds.dataset(file, format=file_format).to_batches(
                columns=columns, filter=row_filter, batch_size=BATCH_ROWS
            )
            for batch in batches:
                yield arrow_to_bars_frame(pa.Table.from_batches([batch]))
        except (pa.ArrowException, OSError) as error:
            raise SourceDataError(f"cannot be read ({error})", file=file) from None

    def _read_table(self, file: Path, names: Iterable[str]) -> pd.DataFrame:
        """All rows of some columns of one file (small columns: dates, codes)."""
        parts = list(self._read_batches(file, names))
        return pd.concat(parts, ignore_index=True) if len(parts) != 1 else parts[0]

    def _row_filter(self, file: Path, start, end, instruments: list[str] | None):
        """Arrow predicate pushed into the Parquet reader: only matching row groups are decoded."""
        schema = self._schemas[file]
        spelled = self._columns[file]
        conditions = []
        instrument_type = schema.field(spelled["instrument"]).type
        textual = pa.types.is_string(instrument_type) or pa.types.is_large_string(instrument_type)
        if instruments is not None and textual:  # other code types are filtered after reading
            conditions.append(ds.field(spelled["instrument"]).isin(instruments))
        date_type = schema.field(spelled["date"]).type
        comparable = pa.types.is_date(date_type) or (
            pa.types.is_timestamp(date_type) and date_type.tz is None
        )
        if comparable:  # text or tz-aware dates are filtered after parsing instead
            if start is not None:
                conditions.append(ds.field(spelled["date"]) >= pa.scalar(start.to_pydatetime()).cast(date_type))
            # a timestamp on the end day at 16:00 still belongs to that day
            upper = None if end is None else end + pd.Timedelta(days=1)
            tomorrow = pd.Timestamp(today()) + pd.Timedelta(days=1)
            if upper is not None and upper < tomorrow:
                # Rows dated after today are read whatever the range, to be reported (validation.py).
                column = ds.field(spelled["date"])
                conditions.append((column < pa.scalar(upper.to_pydatetime()).cast(date_type))
                                  | (column >= pa.scalar(tomorrow.to_pydatetime()).cast(date_type)))
        if not conditions:
            return None
        return functools.reduce(operator.and_, conditions)

    def calendar(self) -> pd.DatetimeIndex:
        """All dates present in any file, sorted."""
        problems = Problems(self.path)
        dates = []
        for file in self.files:
            problems.files_checked += 1
            try:
                unique = self._read_table(file, ["date"])["date"].drop_duplicates()
            except SourceDataError as error:
                problems.add_error(error)
                continue
            dates.append(parse_dates(unique, None, file=file, problems=problems))
        problems.raise_if_any()
        return pd.DatetimeIndex(np.unique(np.concatenate(dates)), name="date")

    def instruments(self) -> list[str]:
        """Instrument codes present in any file, sorted."""
        codes: set[str] = set()
        for file in self.files:
            column = pq.read_table(file, columns=[self._columns[file]["instrument"]]).column(0)
            codes.update(str(code) for code in pc.unique(column).to_pylist() if code is not None)
        return sorted(codes)

    def date_ranges(self) -> pd.DataFrame:
        """Each instrument's first and last date over all files."""
        problems = Problems(self.path)
        parts = []
        for file in self.files:
            problems.files_checked += 1
            try:
                frame = self._read_table(file, ["instrument", "date"])
            except SourceDataError as error:
                problems.add_error(error)
                continue
            frame["date"] = parse_dates(frame["date"], frame["instrument"].to_numpy(), file=file, problems=problems)
            extent = frame.groupby("instrument", sort=False, observed=True)["date"].agg(["min", "max"])
            parts.append(extent.set_axis(extent.index.astype(str)))
        problems.raise_if_any()
        ranges = pd.concat(parts).groupby(level=0).agg({"min": "min", "max": "max"})
        return ranges_frame(ranges)

    def read(self, start=None, end=None, instruments: Iterable[str] | None = None) -> pd.DataFrame:
        """Validated raw_ohlcv rows; see ``Source.read``.

        Every file (and every instrument in it) is checked; if any has problems, one
        ``SourceReport`` names them all.
        """
        start, end, wanted = normalise_query(start, end, instruments)
        problems = Problems(self.path)
        parts, part_files = [], []
        for file in self.files:
            problems.files_checked += 1
            before = len(problems)
            mine = []
            try:
                for bars in self._read_batches(file, self._columns[file], self._row_filter(file, start, end, wanted)):
                    try:
                        raw = bars_to_raw(bars, file=file, problems=problems, start=start, end=end)
                    except SourceDataError as error:  # e.g. both adj_close and factor: same in every slice
                        problems.add_error(error)
                        break
                    if wanted is not None:
                        raw = raw[raw["instrument"].isin(wanted)]
                    mine.append(raw)
            except SourceDataError as error:  # the file stopped reading part-way
                problems.add_error(error)
            if len(problems) == before:  # a bad file's rows are not kept: nothing is returned anyway
                parts.extend(mine)
                part_files.extend([file] * len(mine))
        return finish_raw(parts, RAW_COLUMNS, file=self.path, problems=problems, part_files=part_files)


def _read_footer(file: Path) -> tuple[pa.Schema, int]:
    """The file's schema and row count, from its footer."""
    try:
        with pq.ParquetFile(file) as footer:
            return footer.schema_arrow, footer.metadata.num_rows
    except (pa.ArrowException, OSError) as error:
        raise SourceDataError(f"is not a readable Parquet file ({error})", file=file) from None


def _bar_columns(file: Path, schema: pa.Schema) -> dict[str, str]:
    """Normalised name -> the file's own spelling, for the columns a panel needs or may have."""
    columns = wanted_columns(schema.names)
    require_columns(columns, ("instrument", *BAR_COLUMNS), file=file)
    return columns
