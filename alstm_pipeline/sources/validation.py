"""Checks every source runs before it hands out rows; bad input raises, never vanishes.

Rejected with ``SourceDataError`` (message ``"<file>: instrument <X>, date <D>: <problem>"``):

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
- both ``adj_close`` and ``factor`` columns (raw or adjusted prices? see ``bars.py``);
- in a Qlib provider directory: a missing, unparsable or unsorted ``calendars/day.txt``,
  a missing ``instruments/all.txt``, a listed instrument without its feature folder or
  without one of the required field files, a ``.bin`` file whose size is not a multiple
  of 4, that is empty, whose first calendar index is not a whole number inside the
  calendar or whose series runs past the calendar's end, and a day on which some of
  open/high/low/close/volume are stored but others are NaN.

Not rejected here: inconsistent bars such as ``high < low`` or a close outside
[low, high]. They can be stored and computed on; the raw_ohlcv asset checks report them.
The shared S&P 500 panel passes every check (it has no such inconsistent bars either,
raw or adjusted; 104 of its rows have zero volume).
"""

from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from .base import SourceDataError

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
    instrument: np.ndarray,
    date: np.ndarray,
    values: dict[str, np.ndarray],
    *,
    file,
) -> None:
    """Reject rows whose values cannot be stored meaningfully (see the module docstring).

    ``instrument`` and ``date`` are per-row arrays used only to name the first bad row.
    """
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
        if bad.any():
            row = int(np.argmax(bad))
            raise SourceDataError(
                f"{name} is {_show(column[row])}; {name} {what}",
                file=file,
                instrument=instrument[row],
                date=pd.Timestamp(date[row]),
            )


def _show(value: float) -> str:
    return "missing (NaN)" if np.isnan(value) else repr(float(value))


def parse_dates(raw: pd.Series, instrument: np.ndarray, *, file) -> np.ndarray:
    """Turn a date column (datetime, date objects or text) into midnight datetime64[ns].

    Text must be ISO 8601 (``2021-04-21``, a time part is allowed and dropped); any other
    single format pandas can infer is accepted as a fallback. The first value that does
    not parse is named in the error. ``instrument`` (per row) only names the bad row.
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
        row = int(np.argmax(bad))
        text = raw.iloc[row]
        problem = "date is missing" if pd.isna(text) else f"date {str(text)[:40]!r} does not parse"
        raise SourceDataError(problem, file=file, instrument=instrument[row])
    # Bars are daily: a time of day (e.g. 16:00 exchange close) says nothing about the day.
    return values.astype("datetime64[D]").astype("datetime64[ns]")


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


def parse_numbers(raw: pd.Series, name: str, instrument: np.ndarray, date: np.ndarray, *, file) -> np.ndarray:
    """Numeric column as float64; text that is not a number is an error, blanks become NaN."""
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = pd.to_numeric(raw, errors="coerce")
    not_number = numbers.isna().to_numpy() & raw.notna().to_numpy()
    not_number &= raw.astype(str).str.strip().ne("").to_numpy()
    if not_number.any():
        row = int(np.argmax(not_number))
        raise SourceDataError(
            f"{name} {str(raw.iloc[row])[:40]!r} is not a number",
            file=file,
            instrument=instrument[row],
            date=pd.Timestamp(date[row]),
        )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def check_instruments(instrument: pd.Series, date: np.ndarray, *, file) -> pd.Categorical:
    """Instrument codes as a Categorical of str; a blank or missing code is an error.

    Categorical because a panel repeats each code thousands of times: checks, sorting and
    duplicate detection then work on small integer codes. ``date`` names the bad row.
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
        row = int(np.argmax(bad))
        raise SourceDataError("instrument code is missing", file=file, date=pd.Timestamp(date[row]))
    return codes


def finish_raw(parts: list[pd.DataFrame], columns: Iterable[str], *, file) -> pd.DataFrame:
    """One frame from per-file parts: sorted by (instrument, date), no repeated pair.

    ``instrument`` may be Categorical in the parts; it leaves as plain str (object).
    """
    others = [name for name in columns if name not in ("instrument", "date")]
    if not parts:
        parts = [_empty_part(others)]
    instrument = union_categoricals([pd.Categorical(part["instrument"]) for part in parts])
    date = np.concatenate([part["date"].to_numpy(dtype="datetime64[ns]") for part in parts])
    values = {name: np.concatenate([part[name].to_numpy() for part in parts]) for name in others}

    # sort key: each code's rank among the sorted names (categories come in first-seen order)
    rank = np.argsort(np.argsort(np.asarray(instrument.categories, dtype=object)))
    keys = rank[instrument.codes]
    days = date.view(np.int64)
    order = np.lexsort((days, keys))
    if not np.array_equal(order, np.arange(len(order))):
        keys, days, date = keys[order], days[order], date[order]
        codes = instrument.codes[order]
        values = {name: column[order] for name, column in values.items()}
    else:
        codes = instrument.codes
    names = np.asarray(instrument.categories, dtype=object)
    repeated = (keys[1:] == keys[:-1]) & (days[1:] == days[:-1])
    if repeated.any():
        row = int(np.argmax(repeated)) + 1
        raise SourceDataError(
            "more than one row for this instrument and date",
            file=file,
            instrument=names[codes[row]],
            date=pd.Timestamp(date[row]),
        )
    return pd.DataFrame({"instrument": names[codes], "date": date} | values)


def _empty_part(value_columns: list[str]) -> pd.DataFrame:
    empty = {"instrument": pd.Categorical([]), "date": np.array([], dtype="datetime64[ns]")}
    return pd.DataFrame(empty | {name: np.array([], dtype=np.float32) for name in value_columns})
