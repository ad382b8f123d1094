"""``peek_date_bounds``: a source's first and last date, cheaply, without reading bars.

For callers that only need a hint of the date range, such as Dagster definitions that
place the first partition while the code location loads: that must stay fast and must
not fail on bad data (bad data is reported, all of it, when the bars are read). So this
reads no bars, validates nothing and never raises; where the bounds cannot be had
cheaply it answers None.

- Qlib provider directory: the first and last non-blank lines of ``calendars/day.txt``
  (the last one read by seeking to the end of the file).
- Parquet file or folder: the min/max statistics of the date column in each row group,
  from the Parquet footers. When any row group lacks them, that bound is unknown (None)
  rather than a guess from the row groups that have them.
- Folder of ``<CODE>.csv``: the first data line and the last line of each file, the last
  one read by seeking to the end (two small reads per file, however long the file). It
  assumes each file is in date order, as Qlib's collectors and Yahoo-style downloads
  write them (either direction: the two dates are compared). A file whose header has
  no date column, or whose first or last date does not parse as ISO 8601, is skipped.
  Cost grows with the number of files: 400 per-symbol files of the shared panel took
  about 30-40 ms (page cache warm, 2 busy cores), far below a second, so it is kept
  rather than answering None for CSV folders.
- Anything else (a missing path, an unreadable file, an empty folder): (None, None).

A date after today is never a bound (reading the bars reports it): a CSV file's last
day is then the newest day up to today among the whole lines of its two ends; a Parquet
maximum after today leaves the last day unknown, as does a calendar that ends after today.

Dates are wall-clock calendar days, as the sources give them: a timestamp at 16:00 is
that day; a time-zone-aware Parquet timestamp is taken in its own zone.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .bars import normalise_column_name
from .parquet import PARQUET_SUFFIXES

Bounds = tuple[dt.date | None, dt.date | None]
NO_BOUNDS: Bounds = (None, None)
#: Bytes read from each end of a text file: a header or a bar line is far shorter.
_CHUNK = 4096


def peek_date_bounds(path: str | os.PathLike) -> Bounds:
    """(first date, last date) the source at ``path`` holds, or None where not cheaply known.

    Never raises and never validates: see the module docstring for what is read.
    """
    try:
        path = Path(path).expanduser()
        if path.is_file():
            return _parquet_bounds([path]) if path.suffix.lower() in PARQUET_SUFFIXES else NO_BOUNDS
        if not path.is_dir():
            return NO_BOUNDS
        if (path / "calendars").is_dir() or (path / "features").is_dir():
            return _calendar_bounds(path / "calendars" / "day.txt")
        parquet = sorted(p for p in path.rglob("*") if p.suffix.lower() in PARQUET_SUFFIXES and p.is_file())
        csv = sorted(p for p in path.glob("*.csv") if p.is_file())
        if parquet and csv:  # ambiguous: open_source refuses it, so no bounds either
            return NO_BOUNDS
        if parquet:
            return _parquet_bounds(parquet)
        if csv:
            return _csv_bounds(csv)
        return NO_BOUNDS
    except Exception:  # noqa: BLE001 -- a hint must never break its caller; reading reports the cause
        return NO_BOUNDS


def peek_source_problem(path: str | os.PathLike) -> str | None:
    """Why the source at ``path`` surely cannot be read, from cheap checks only; else None.

    Sure means: no path there, or a Qlib provider directory whose ``calendars/day.txt`` is
    missing, or does not start and end with dates, or ends after today (``QlibProviderSource``
    refuses each of these). Reading the bars gives the full report; this only lets the
    partitions avoid a long range that no run could ingest. Never raises.
    """
    try:
        path = Path(path).expanduser()
        if not path.exists():
            return f"{path} does not exist"
        if path.is_dir() and ((path / "calendars").is_dir() or (path / "features").is_dir()):
            calendar = path / "calendars" / "day.txt"
            if not calendar.is_file():
                return f"{calendar} is missing"
            first, last = _calendar_days(calendar)
            if first is None or last is None:
                return f"{calendar} does not start and end with dates"
            if last > dt.date.today():
                return f"{calendar} ends after today ({last})"
        return None
    except Exception:  # noqa: BLE001 -- a hint must never break its caller
        return None


def _calendar_days(file: Path) -> Bounds:
    with open(file, "rb") as handle:
        first = _first_line(handle.read(_CHUNK))
        last = _last_line(_tail(handle))
    return _day(first), _day(last)


def _calendar_bounds(file: Path) -> Bounds:
    first_day, last_day = _calendar_days(file)
    if last_day is not None and last_day > dt.date.today():
        return first_day, None  # a broken calendar: reading the source says so
    return first_day, last_day


def _parquet_bounds(files: list[Path]) -> Bounds:
    low: dt.date | None = None
    high: dt.date | None = None
    for file in files:
        metadata = pq.ParquetFile(file).metadata  # the footer only
        schema = metadata.schema.to_arrow_schema()
        names = [normalise_column_name(name) for name in schema.names]
        if "date" not in names:
            return NO_BOUNDS
        field = schema.field(names.index("date"))
        # The leaf column of the date field in the footer's flat column list.
        column = [metadata.schema.column(i).name for i in range(metadata.num_columns)].index(field.name)
        for group in range(metadata.num_row_groups):
            chunk = metadata.row_group(group).column(column)
            if metadata.row_group(group).num_rows == 0:
                continue
            stats = chunk.statistics
            if stats is None or not stats.has_min_max:
                return NO_BOUNDS  # unknown for this row group: any bound could be wrong
            first, last = _stat_day(stats.min, field.type), _stat_day(stats.max, field.type)
            if first is None or last is None:
                return NO_BOUNDS
            low = first if low is None else min(low, first)
            high = last if high is None else max(high, last)
    # A date after today is reported when the bars are read; which day precedes it the
    # statistics cannot tell, so the last day is unknown.
    return low, None if high is not None and high > dt.date.today() else high


def _stat_day(value, arrow_type: pa.DataType) -> dt.date | None:
    """A statistic of the date column as a calendar day (as the sources would read it)."""
    if isinstance(value, dt.datetime):
        if getattr(arrow_type, "tz", None) and value.tzinfo is not None:
            # Stored as UTC; the sources take the wall-clock day in the column's zone.
            return pd.Timestamp(value).tz_convert(arrow_type.tz).date()
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        # Text min/max is the date min/max only for ISO dates, which sort as text.
        return _day(value)
    return None


def _csv_bounds(files: list[Path]) -> Bounds:
    low: dt.date | None = None
    high: dt.date | None = None
    today = dt.date.today()
    for file in files:
        try:
            with open(file, "rb") as handle:
                head = handle.read(_CHUNK)
                tail = _tail(handle)
                size = handle.tell()
        except OSError:
            continue
        lines = head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
        if len(lines) < 2:
            continue  # no complete first data line in the head (or an empty file)
        header = [normalise_column_name(name.strip().strip('"')) for name in lines[0].split(",")]
        if "date" not in header:
            continue
        column = header.index("date")
        days = [_csv_day(lines[1], column), _csv_day(_last_line(tail), column)]
        if None in days:
            continue
        if max(days) > today:
            # A bar dated after today is reported when the bars are read; the bound is the
            # newest day up to today among the whole lines at either end of the file.
            whole = _whole_lines(head, tail, size)[1:]  # without the header
            days = [day for day in (_csv_day(line, column) for line in whole) if day is not None and day <= today]
            if not days:
                continue
        low = min(days) if low is None else min(low, *days)
        high = max(days) if high is None else max(high, *days)
    return low, high


def _whole_lines(head: bytes, tail: bytes, size: int) -> list[str]:
    """The complete lines in the first and last _CHUNK bytes of a file of ``size`` bytes:
    a line cut by a chunk's edge is left out (its date field could be cut too)."""
    head_lines = head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
    if len(head) < size:
        head_lines = head_lines[:-1]
    tail_lines = tail.decode("utf-8", errors="replace").splitlines()
    if len(tail) < size:
        tail_lines = tail_lines[1:]
    return [line for line in head_lines + tail_lines if line.strip()]


def _csv_day(line: str | None, column: int) -> dt.date | None:
    if line is None:
        return None
    fields = line.split(",")
    return _day(fields[column].strip().strip('"')) if column < len(fields) else None


def _tail(handle) -> bytes:
    """The last _CHUNK bytes of an open binary file (the whole file when shorter)."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(size - _CHUNK, 0))
    return handle.read()


def _first_line(data: bytes) -> str | None:
    for line in data.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines():
        if line.strip():
            return line.strip()
    return None


def _last_line(data: bytes) -> str | None:
    for line in reversed(data.decode("utf-8", errors="replace").splitlines()):
        if line.strip():
            return line.strip()
    return None


def _day(text: str | None) -> dt.date | None:
    """An ISO date (a time part after it allowed) as a date; anything else None."""
    if not text or len(text) < 10:
        return None
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None
