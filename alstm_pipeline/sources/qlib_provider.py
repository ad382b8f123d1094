"""Bars from a Qlib provider directory, read straight from its ``.bin`` files (no Qlib).

Layout (semantics §1.1): ``calendars/day.txt`` (one date a line, ascending),
``instruments/all.txt`` (``CODE<TAB>start<TAB>end``), and
``features/<code lower-case>/<field>.day.bin``: little-endian float32, value 0 the
calendar position of the series' first day, then one value per calendar day.

Fields read: open, high, low, close, volume (required), factor (1.0 when the file is
absent, as for any source without adjustment data) and vwap (NaN when absent, §1.3).
The values are already Qlib-adjusted and pass through unchanged (float32, bit for bit).

Days inside an instrument's stored range on which it did not trade are stored as NaN;
they are dropped here so that every source yields only traded rows (the feature layer
re-creates NaN rows on the calendar within each instrument's range). A day is "not
traded" when open, high, low, close and volume are all NaN; factor is ignored for this
because Qlib's collector forward-fills it across suspensions (§1.2). A day with some of
those five fields stored and others NaN is an error.

How long a series is: Qlib's ``dump_bin`` writes every field of an instrument from the
same table, reindexed to the calendar between that instrument's first and last date,
and writes those two dates to ``instruments/all.txt``. So all field files of an
instrument end on the same day, and that day is its ``all.txt`` end (an instrument that
delisted ends before the calendar does, legitimately). Qlib's own reader does not check
this: it reads what is there, so a file cut short reads as missing days. Here a ``.bin``
that ends before the latest end among its instrument's fields, or before the
instrument's ``all.txt`` end (clipped to the calendar), is reported as truncated, with
the values and bytes expected and found, instead of as NaN days.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .base import RAW_COLUMNS, Problems, SourceDataError, normalise_query, ranges_frame
from .universe import read_spans
from .validation import check_values, finish_raw, today

REQUIRED_FIELDS = ("open", "high", "low", "close", "volume")
OPTIONAL_FIELDS = ("factor", "vwap")


class QlibProviderSource:
    """A Qlib data directory (``provider_uri``) with daily frequency data."""

    kind = "qlib"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._calendar = read_calendar(self.path / "calendars" / "day.txt")
        all_file = self.path / "instruments" / "all.txt"
        if not all_file.is_file():
            raise SourceDataError("missing: a Qlib provider directory lists its instruments there", file=all_file)
        # Feature folders are lower-case; all.txt keeps the codes' own case (e.g. BF.B).
        spans = read_spans(all_file)
        self._codes = sorted(spans["instrument"].unique())
        # The last day all.txt says each instrument has data (several lines: the latest).
        self._listed_end = spans.groupby("instrument")["end"].max().to_dict()
        problems = Problems(self.path)
        for code in self._codes:
            folder = self._folder(code)
            problems.files_checked += 1
            if not folder.is_dir():
                problems.add(f"is missing: instrument {code} is listed in instruments/all.txt", file=folder)
        problems.raise_if_any()

    def __repr__(self) -> str:
        return f"QlibProviderSource({str(self.path)!r}, instruments={len(self._codes)})"

    def _folder(self, code: str) -> Path:
        return self.path / "features" / code.lower()

    def calendar(self) -> pd.DatetimeIndex:
        """The provider's ``calendars/day.txt``."""
        return self._calendar.copy()

    def instruments(self) -> list[str]:
        """Codes from ``instruments/all.txt``, sorted."""
        return list(self._codes)

    def date_ranges(self) -> pd.DataFrame:
        """Each instrument's stored range, from the header and length of its close series."""
        rows = {}
        for code in self._codes:
            first, count = bin_extent(self._folder(code) / "close.day.bin", len(self._calendar))
            if count:
                rows[code] = {"min": self._calendar[first], "max": self._calendar[first + count - 1]}
        return ranges_frame(pd.DataFrame.from_dict(rows, orient="index", columns=["min", "max"]))

    def read(self, start=None, end=None, instruments: Iterable[str] | None = None) -> pd.DataFrame:
        """Validated raw_ohlcv rows (traded days only); see ``Source.read``.

        Every ``.bin`` of every instrument asked for is checked; if any has problems, one
        ``SourceReport`` names them all.
        """
        start, end, wanted = normalise_query(start, end, instruments)
        calendar = self._calendar.to_numpy(dtype="datetime64[ns]")
        # Calendar positions [low, high) inside the requested dates.
        low = 0 if start is None else int(np.searchsorted(calendar, np.datetime64(start, "ns"), side="left"))
        high = len(calendar) if end is None else int(np.searchsorted(calendar, np.datetime64(end, "ns"), side="right"))
        held = set(self._codes)
        codes = self._codes if wanted is None else [code for code in wanted if code in held]
        problems = Problems(self.path)
        parts = []
        for code in codes:
            before = len(problems)
            part = self._read_instrument(code, calendar, low, high, problems)
            if len(problems) == before:
                parts.append(part)
        return finish_raw(parts, RAW_COLUMNS, file=self.path, problems=problems)

    def _read_instrument(self, code: str, calendar: np.ndarray, low: int, high: int, problems: Problems):
        """One instrument's traded rows in [low, high); its problems go to ``problems``."""
        folder = self._folder(code)
        series, files = {}, {}
        for field in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS):
            file = folder / f"{field}.day.bin"
            if not file.is_file():
                if field in REQUIRED_FIELDS:
                    problems.files_checked += 1
                    problems.add(f"is missing: {field} is a required field", file=file, instrument=code)
                continue
            problems.files_checked += 1
            files[field] = file
            try:
                series[field] = read_bin(file, len(calendar), instrument=code)
            except SourceDataError as error:
                problems.add_error(error)
        if len(series) < len(files) or any(field not in series for field in REQUIRED_FIELDS):
            return None  # a field missing or unreadable: the others cannot be checked against it

        # Truncation (see the module docstring): every field should run to the same end.
        stops = {field: begin + len(values) for field, (begin, values) in series.items()}
        listed = self._listed_end.get(code)
        listed_stop = 0 if listed is None else int(np.searchsorted(calendar, np.datetime64(listed, "ns"), side="right"))
        expected = max(max(stops.values()), listed_stop)
        short = {field: stop for field, stop in stops.items() if stop < expected}
        for field, stop in short.items():
            begin = series[field][0]
            want, have = expected - begin, stop - begin
            by = "instruments/all.txt" if expected > max(stops.values()) else "the instrument's other fields"
            problems.add(
                f"file is shorter than the calendar span it claims: from calendar index {begin} "
                f"({_day(calendar, begin)}) {by} run{'s' if by.endswith('txt') else ''} to "
                f"{_day(calendar, expected - 1)}, which needs {want} values ({4 * (want + 1)} bytes with the "
                f"header), but it holds {have} ({4 * (have + 1)} bytes): truncated by {want - have} values",
                file=files[field],
                instrument=code,
            )

        # Fields may start on different days: align them on the calendar.
        first = max(low, min(begin for begin, _ in series.values()))
        stop = min(high, max(stops.values()))
        length = max(stop - first, 0)
        aligned = {}
        for field, (begin, values) in series.items():
            column = np.full(length, np.nan, dtype=np.float32)
            lo, hi = max(begin, first), min(begin + len(values), first + length)
            if hi > lo:
                column[lo - first : hi - first] = values[lo - begin : hi - begin]
            aligned[field] = column
        aligned.setdefault("factor", np.ones(length, dtype=np.float32))
        aligned.setdefault("vwap", np.full(length, np.nan, dtype=np.float32))

        traded = ~np.all([np.isnan(aligned[field]) for field in REQUIRED_FIELDS], axis=0)
        if short:
            # Days past a truncated file's end are already reported as truncation, not as NaN values.
            traded[max(min(short.values()) - first, 0) :] = False
        dates = calendar[first : first + length][traded]
        values = {field: column[traded] for field, column in aligned.items()}
        instrument = pd.Categorical.from_codes(np.zeros(len(dates), dtype=np.int8), categories=[code])
        check_values(instrument, dates, values, file=files, problems=problems)
        columns = {"instrument": instrument, "date": dates} | {field: values[field] for field in RAW_COLUMNS[2:]}
        return pd.DataFrame(columns)


def _day(calendar: np.ndarray, index: int) -> str:
    return str(calendar[index])[:10]


def read_calendar(file: Path) -> pd.DatetimeIndex:
    """``calendars/day.txt``: ascending, distinct dates, one a line."""
    if not file.is_file():
        raise SourceDataError("missing: a Qlib provider directory needs its trading calendar", file=file)
    lines = [line.strip() for line in file.read_text(encoding="utf-8", errors="replace").splitlines()]
    texts = [line for line in lines if line]
    if not texts:
        raise SourceDataError("is empty: no trading dates", file=file)
    dates = pd.to_datetime(pd.Series(texts), errors="coerce", format="ISO8601")
    if dates.isna().any():
        row = int(np.argmax(dates.isna().to_numpy()))
        raise SourceDataError(f"line {lines.index(texts[row]) + 1}: date {texts[row][:40]!r} does not parse", file=file)
    days = dates.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype("datetime64[ns]")
    if np.any(np.diff(days) <= np.timedelta64(0)):
        row = int(np.argmax(np.diff(days) <= np.timedelta64(0))) + 1
        raise SourceDataError(
            f"dates must be ascending and distinct; {texts[row]!r} follows {texts[row - 1]!r}", file=file
        )
    future = days > today()
    if future.any():  # no partition reaches such a day: its bars would go unread, unreported
        row = int(np.argmax(future))
        raise SourceDataError(
            f"line {lines.index(texts[row]) + 1}: date {texts[row][:40]!r} is after today "
            f"({str(today())[:10]}): {int(future.sum())} future date(s); a Qlib calendar "
            "lists past trading days only (future ones belong in day_future.txt)",
            file=file,
        )
    return pd.DatetimeIndex(days, name="date")


def read_bin(file: Path, calendar_length: int, *, instrument: str | None = None) -> tuple[int, np.ndarray]:
    """One ``.bin`` series: (calendar position of its first value, float32 values)."""
    size = file.stat().st_size
    if size % 4:
        raise SourceDataError(
            f"size {size} bytes is not a multiple of 4: truncated or not a Qlib .bin", file=file, instrument=instrument
        )
    if size == 0:
        raise SourceDataError("is empty: a .bin needs at least its start index", file=file, instrument=instrument)
    if size == 4:  # read as no days at all: the instrument would be listed without bars
        raise SourceDataError("holds no values, only its start index", file=file, instrument=instrument)
    data = np.fromfile(file, dtype="<f4")
    first = _start_index(data[0], len(data) - 1, calendar_length, file, instrument)
    return first, data[1:].astype(np.float32, copy=False)


def bin_extent(file: Path, calendar_length: int) -> tuple[int, int]:
    """(first calendar position, number of days) of a ``.bin`` without reading its values."""
    size = file.stat().st_size
    if size % 4 or size == 0:
        read_bin(file, calendar_length)  # raises the precise error
    header = np.fromfile(file, dtype="<f4", count=1)
    count = size // 4 - 1
    return _start_index(header[0], count, calendar_length, file, None), count


def _start_index(value: np.float32, count: int, calendar_length: int, file: Path, instrument) -> int:
    if not np.isfinite(value) or value != np.floor(value):
        raise SourceDataError(f"start index {float(value)} is not a whole number", file=file, instrument=instrument)
    first = int(value)
    if not 0 <= first < calendar_length:
        raise SourceDataError(
            f"start index {first} is outside the calendar (0..{calendar_length - 1})", file=file, instrument=instrument
        )
    if first + count > calendar_length:
        raise SourceDataError(
            f"{count} values from calendar index {first} run past the calendar's last day "
            f"(index {calendar_length - 1})",
            file=file,
            instrument=instrument,
        )
    return first
