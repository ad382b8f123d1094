"""Checks every source runs before it hands out rows; bad input raises, never vanishes.

A read checks *everything* before it raises: problems are collected in a ``Problems``
(``base.py``) and raised together as one ``SourceReport`` (a ``SourceDataError``) that
names every bad file, instrument, date and problem, so a user with 500 files fixes them
in one pass rather than one run per file. The row checks below therefore record bad
rows and go on; a file that cannot be read at all raises ``SourceDataError``, which the
source records for that file before going on to the next one. Nothing is returned
when anything was found.

Rejected (each problem reads ``"<file>: instrument <X>, date <D>: <problem>"``):

- a file that is not bars at all (an HTML error page saved as ``BF.B.csv``), a CSV that
  does not parse, a Parquet file that does not open;
- a missing required column (``instrument`` for Parquet, ``date open high low close volume``);
- a date that is missing or does not parse;
- a price (open, high, low, close, adj_close or factor) that is missing, NaN, infinite or
  not positive: it cannot be stored meaningfully, and a zero price poisons every ratio;
- a volume that is missing, NaN, infinite or negative (zero volume is valid: real days
  in the shared panel have it);
- a vwap that is infinite or not positive (NaN vwap is valid: semantics §1.3);
- two rows for the same (instrument, date);
- a date after today (the machine's local date): no bar comes from the future, and no
  partition reaches it, so such a row would otherwise be dropped without a word. Checked
  on every read, whatever its date range;
- a file that holds no bars at all (a CSV with only its header, a Parquet file with no
  rows, a ``.bin`` with only its start index);
- both ``adj_close`` and ``factor`` columns (raw or adjusted prices? see ``bars.py``);
- in a Qlib provider directory: a missing, unparsable or unsorted ``calendars/day.txt``
  (or one with a date after today),
  a missing ``instruments/all.txt``, a listed instrument without its feature folder or
  without one of the required field files, a ``.bin`` file whose size is not a multiple
  of 4, that is empty, whose first calendar index is not a whole number inside the
  calendar or whose series runs past the calendar's end, a ``.bin`` that ends before
  the instrument's other fields or its ``instruments/all.txt`` span (truncated), and a
  day on which some of open/high/low/close/volume are stored but others are NaN.

Not rejected here: inconsistent bars such as ``high < low`` or a close outside
[low, high]. They can be stored and computed on; the raw_ohlcv asset checks report them.
The shared S&P 500 panel passes every check (it has no such inconsistent bars either,
raw or adjusted; 104 of its rows have zero volume).
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from .base import PROBLEMS_KEPT_PER_GROUP, Problems, SourceDataError

#: Price-like columns: must be finite and > 0 (``adj_close`` and ``factor`` included).
POSITIVE_COLUMNS = ("open", "high", "low", "close", "adj_close", "factor")


def require_columns(columns: Iterable[str], required: Iterable[str], *, file) -> None:
    """Raise naming every required column that is absent."""
    present = set(columns)
    missing = [name for name in required if name not in present]
    if missing:
        raise SourceDataError(
            f"missing required column(s) {', '.join(missing)}; found {', '.join(sorted(present)) or 'none'}",
            file=file,
        )


def check_values(
    instrument,
    date: np.ndarray,
    values: dict[str, np.ndarray],
    *,
    file,
    problems: Problems,
    reported: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Record every row whose values cannot be stored meaningfully (see the module docstring).

    ``instrument`` and ``date`` are per-row arrays used only to name bad rows. ``file`` is
    one path or a dict column -> path (a Qlib provider keeps each field in its own file).
    ``reported`` (column -> mask) marks cells already recorded, e.g. text that is not a
    number. Returns the mask of bad rows.
    """
    any_bad = np.zeros(len(date), dtype=bool)
    for name, column in values.items():
        column = np.asarray(column, dtype=np.float64)
        finite = np.isfinite(column)
        if name in POSITIVE_COLUMNS:
            bad = ~finite | (column <= 0)
            what = "must be a positive number"
        elif name == "volume":
            bad = ~finite | (column < 0)
            what = "must be a number >= 0"
        elif name == "vwap":
            bad = np.isinf(column) | (column <= 0)
            what = "must be a positive number or missing"
        else:
            continue
        if reported and reported.get(name) is not None:
            bad = bad & ~reported[name]
        if bad.any():
            where = file.get(name) if isinstance(file, dict) else file
            report_rows(
                problems, bad, instrument, date, where,
                lambda row, name=name, column=column, what=what: f"{name} is {_show(column[row])}; {name} {what}",
            )
            any_bad |= bad
    return any_bad


def report_rows(problems: Problems, bad: np.ndarray, instrument, date, file, describe) -> None:
    """Record the bad rows of one file: the first few of each instrument in full, the rest counted.

    Vectorised over instruments, since a panel may hold a million bad rows of 500 of them;
    ``describe(row)`` gives the problem text of one row; ``date`` may be None (unknown).
    """
    rows = np.flatnonzero(bad)
    names = np.asarray(instrument, dtype=object)[rows]
    codes = pd.Categorical(names)
    rank = pd.Series(codes.codes).groupby(codes.codes).cumcount().to_numpy()
    for index in np.flatnonzero(rank < PROBLEMS_KEPT_PER_GROUP):
        row = rows[index]
        day = None if date is None else pd.Timestamp(date[row])
        problems.add(describe(row), file=file, instrument=names[index], date=day)
    hidden = codes[rank >= PROBLEMS_KEPT_PER_GROUP]
    if len(hidden):
        for code, count in pd.Series(hidden).value_counts(dropna=False).items():
            if count:
                problems.add_count(count, file=file, instrument=code)


def _show(value: float) -> str:
    return "missing (NaN)" if np.isnan(value) else repr(float(value))


def parse_dates(raw: pd.Series, instrument, *, file, problems: Problems) -> np.ndarray:
    """Turn a date column (datetime, date objects or text) into midnight datetime64[ns].

    Text must be ISO 8601 (``2021-04-21``, a time part is allowed and dropped); any other
    single format pandas can infer is accepted as a fallback. Every value that does not
    parse is recorded (and left NaT). ``instrument`` (per row) only names the bad rows.
    """
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        values = raw.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")  # the exchange's wall-clock date
    elif pd.api.types.is_datetime64_any_dtype(raw.dtype):
        values = raw.to_numpy(dtype="datetime64[ns]")
    else:
        # A panel repeats each date once per instrument: parse each distinct text once.
        codes, uniques = pd.factorize(raw)
        parsed = _parse_date_texts(pd.Series(uniques, dtype=object)).to_numpy(dtype="datetime64[ns]")
        parsed = np.append(parsed, np.datetime64("NaT", "ns"))  # code -1 (a missing date) -> NaT
        values = parsed[codes]
    bad = np.isnat(values)
    if bad.any():
        def describe(row):
            text = raw.iloc[row]
            return "date is missing" if pd.isna(text) else f"date {str(text)[:40]!r} does not parse"

        report_rows(problems, bad, _names(instrument, len(raw)), None, file, describe)
    # Bars are daily: a time of day (e.g. 16:00 exchange close) says nothing about the day.
    return values.astype("datetime64[D]").astype("datetime64[ns]")


def _names(instrument, rows: int) -> np.ndarray:
    """Per-row instrument names as an object array (None where unknown)."""
    if instrument is None:
        return np.full(rows, None, dtype=object)
    return np.asarray(instrument, dtype=object)


def _parse_date_texts(texts: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(texts, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        try:
            with warnings.catch_warnings():  # "could not infer format": the NaT it leaves is reported
                warnings.simplefilter("ignore", UserWarning)
                fallback = pd.to_datetime(texts.astype(str), errors="coerce")
        except (ValueError, TypeError, OverflowError):
            return parsed
        if fallback.isna().sum() < parsed.isna().sum():
            return fallback
    return parsed


def today() -> np.datetime64:
    """The machine's local date at midnight (datetime64[ns]): the latest day a bar may have."""
    return np.datetime64(dt.date.today(), "D").astype("datetime64[ns]")


def check_not_future(dates: np.ndarray, instrument, *, file, problems: Problems) -> np.ndarray:
    """Record every row dated after today; returns their mask. ``instrument`` names the rows."""
    last = today()
    future = dates > last
    if future.any():
        report_rows(
            problems, future, _names(instrument, len(dates)), dates, file,
            lambda row: f"date is after today ({str(last)[:10]}): a bar cannot come from the future",
        )
    return future


def parse_numbers(
    raw: pd.Series, name: str, instrument, date: np.ndarray, *, file, problems: Problems
) -> tuple[np.ndarray, np.ndarray | None]:
    """Numeric column as float64 and the mask of cells that are not numbers (None: none).

    Every text that is not a number is recorded; blanks become NaN. A non-number is left
    NaN too, so callers pass the mask to ``check_values`` as ``reported``: one problem
    per bad cell, not two.
    """
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan), None
    numbers = pd.to_numeric(raw, errors="coerce")
    not_number = numbers.isna().to_numpy() & raw.notna().to_numpy()
    not_number &= raw.astype(str).str.strip().ne("").to_numpy()
    if not_number.any():
        report_rows(
            problems, not_number, instrument, date, file,
            lambda row: f"{name} {str(raw.iloc[row])[:40]!r} is not a number",
        )
        return numbers.to_numpy(dtype=np.float64, na_value=np.nan), not_number
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan), None


def check_instruments(instrument: pd.Series, date: np.ndarray, *, file, problems: Problems) -> pd.Categorical:
    """Instrument codes as a Categorical of str; every blank or missing code is recorded.

    Categorical because a panel repeats each code thousands of times: checks, sorting and
    duplicate detection then work on small integer codes. ``date`` names the bad rows.
    """
    if isinstance(instrument.dtype, pd.CategoricalDtype):
        codes = instrument.array
    else:
        codes = pd.Categorical(instrument)
    if not all(isinstance(code, str) for code in codes.categories):
        # numeric codes (e.g. 600000) are still codes, not numbers
        codes = codes.rename_categories([str(code) for code in codes.categories])
    blank = np.array([code.strip() == "" for code in codes.categories] + [True], dtype=bool)
    bad = blank[codes.codes]  # code -1 (missing) picks the trailing True
    if bad.any():
        unknown = np.full(len(bad), None, dtype=object)
        report_rows(problems, bad, unknown, date, file, lambda row: "instrument code is missing")
    return codes


def finish_raw(
    parts: list[pd.DataFrame],
    columns: Iterable[str],
    *,
    file,
    problems: Problems,
    part_files: list | None = None,
) -> pd.DataFrame:
    """One frame from per-file parts: sorted by (instrument, date), no repeated pair.

    ``instrument`` may be Categorical in the parts; it leaves as plain str (object).
    ``part_files`` (one path per part) lets a repeated (instrument, date) name its file,
    or both files when it is repeated across two. Raises the collected ``problems``, if
    any, before returning: nothing is returned partially.
    """
    others = [name for name in columns if name not in ("instrument", "date")]
    if not parts:
        parts, part_files = [_empty_part(others)], None
    instrument = union_categoricals([pd.Categorical(part["instrument"]) for part in parts])
    date = np.concatenate([part["date"].to_numpy(dtype="datetime64[ns]") for part in parts])
    values = {name: np.concatenate([part[name].to_numpy() for part in parts]) for name in others}
    origin = None
    if part_files is not None:
        origin = np.repeat(np.arange(len(parts), dtype=np.int32), [len(part) for part in parts])

    # sort key: each code's rank among the sorted names (categories come in first-seen order)
    rank = np.argsort(np.argsort(np.asarray(instrument.categories, dtype=object)))
    keys = rank[instrument.codes]
    days = date.view(np.int64)
    order = np.lexsort((days, keys))
    if not np.array_equal(order, np.arange(len(order))):
        keys, days, date = keys[order], days[order], date[order]
        codes = instrument.codes[order]
        values = {name: column[order] for name, column in values.items()}
        origin = None if origin is None else origin[order]
    else:
        codes = instrument.codes
    names = np.asarray(instrument.categories, dtype=object)
    repeated = (keys[1:] == keys[:-1]) & (days[1:] == days[:-1])
    if repeated.any():
        _report_repeats(problems, np.flatnonzero(repeated) + 1, names[codes], date, origin, part_files, file)
    problems.raise_if_any()
    return pd.DataFrame({"instrument": names[codes], "date": date} | values)


def _report_repeats(problems: Problems, rows, names, date, origin, part_files, root) -> None:
    """Each repeated (instrument, date) under the file holding both rows (or the source, across files)."""
    where = np.full(len(rows), str(root), dtype=object)
    problem = np.full(len(rows), "more than one row for this instrument and date", dtype=object)
    if origin is not None:
        files = np.asarray([str(file) for file in part_files], dtype=object)
        first, second = files[origin[rows - 1]], files[origin[rows]]
        same = first == second
        where[same] = first[same]
        if not same.all():
            pairs = pd.Series(first[~same]).map(lambda f: Path(f).name) + " and " + pd.Series(second[~same]).map(
                lambda f: Path(f).name
            )
            problem[~same] = (problem[~same][0] + " (in " + pairs + ")").to_numpy(dtype=object)
    order = np.argsort(where, kind="stable")  # group by file, keep (instrument, date) order within
    rows, where, problem = rows[order], where[order], problem[order]
    for file in dict.fromkeys(where):
        mine = where == file
        report_rows(problems, mine, names[rows], date[rows], file, lambda index: problem[index])


def _empty_part(value_columns: list[str]) -> pd.DataFrame:
    empty = {"instrument": pd.Categorical([]), "date": np.array([], dtype="datetime64[ns]")}
    return pd.DataFrame(empty | {name: np.array([], dtype=np.float32) for name in value_columns})
