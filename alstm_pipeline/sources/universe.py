"""Which (instrument, date) rows belong to the study: Qlib's ``instruments`` setting.

A universe is a set of membership spans, ``instrument, start, end`` (inclusive), written
like Qlib's ``instruments/<market>.txt``: one ``CODE<TAB>start<TAB>end`` line per
continuous span, so an instrument that left and re-joined the index has several lines.
Semantics §1.4: features use all history; only the *rows kept* are limited to the spans.
The default universe is everything a source holds, each instrument over its own stored
range (what Qlib's ``all.txt`` says).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .base import Problems, SourceDataError

SPAN_COLUMNS = ("instrument", "start", "end")


@dataclass(frozen=True, eq=False)  # eq=False: identity comparison, no DataFrame truth-value trap
class Universe:
    """Membership spans; ``spans`` has one row per span, sorted by instrument and start."""

    spans: pd.DataFrame

    def __post_init__(self) -> None:
        missing = [name for name in SPAN_COLUMNS if name not in self.spans.columns]
        if missing:
            raise ValueError(f"universe spans need columns {', '.join(SPAN_COLUMNS)}; missing {', '.join(missing)}")
        spans = pd.DataFrame(
            {
                "instrument": self.spans["instrument"].astype(str).to_numpy(dtype=object),
                "start": pd.to_datetime(self.spans["start"]).dt.normalize().to_numpy(dtype="datetime64[ns]"),
                "end": pd.to_datetime(self.spans["end"]).dt.normalize().to_numpy(dtype="datetime64[ns]"),
            }
        )
        undated = spans["start"].isna() | spans["end"].isna()
        if undated.any():
            raise ValueError(f"universe span of {spans['instrument'][undated].iloc[0]} lacks a start or end date")
        backwards = spans["start"] > spans["end"]
        if backwards.any():
            row = spans[backwards].iloc[0]
            raise ValueError(
                f"universe span of {row.instrument} starts {row.start.date()} after it ends {row.end.date()}"
            )
        object.__setattr__(self, "spans", spans.sort_values(["instrument", "start", "end"], ignore_index=True))

    @classmethod
    def from_file(cls, path: str | Path) -> Universe:
        """Read a Qlib instruments file (``CODE<TAB>start<TAB>end`` per line)."""
        return cls(read_spans(Path(path)))

    @classmethod
    def everything(cls, source) -> Universe:
        """Every instrument of ``source`` over its own first..last stored date."""
        return cls(source.date_ranges())

    @property
    def instruments(self) -> list[str]:
        """Codes with at least one span, sorted."""
        return sorted(self.spans["instrument"].unique())

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Boolean per row of ``frame`` (columns instrument, date): inside one of its spans?"""
        names = np.asarray(sorted(self.spans["instrument"].unique()), dtype=object)
        span_codes = np.searchsorted(names, self.spans["instrument"].to_numpy(dtype=object))
        span_keys = _keys(span_codes, _days(self.spans["start"]))
        # Spans may overlap: a row is covered when the furthest end among its instrument's
        # spans that start on or before its day reaches the day.
        reach = pd.Series(_days(self.spans["end"])).groupby(span_codes).cummax().to_numpy()

        row_codes = pd.Categorical(frame["instrument"], categories=names).codes.astype(np.int64)
        row_days = _days(frame["date"])
        if not len(span_keys):
            return np.zeros(len(frame), dtype=bool)
        latest = np.searchsorted(span_keys, _keys(row_codes, row_days), side="right") - 1
        safe = np.maximum(latest, 0)
        return (row_codes >= 0) & (latest >= 0) & (span_codes[safe] == row_codes) & (row_days <= reach[safe])


def _days(dates) -> np.ndarray:
    return pd.to_datetime(pd.Series(dates)).to_numpy(dtype="datetime64[D]").astype(np.int64)


def _keys(codes: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One sortable int64 per (instrument code, day): code in the high bits."""
    return np.asarray(codes, dtype=np.int64) * (1 << 32) + (np.asarray(days, dtype=np.int64) + (1 << 31))


def read_spans(path: Path) -> pd.DataFrame:
    """Spans of a Qlib instruments file; every malformed line is reported at once.

    Each problem names the file, the line number, the line itself and what is wrong
    with it, in one ``SourceReport`` (not a traceback from deep inside pandas).
    """
    if not path.is_file():
        raise SourceDataError("no such instruments file", file=path)
    # A universe file is small and every bad line is worth showing: keep (nearly) all.
    problems = Problems(path, kept_per_group=1000)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        shown = repr(line[:80])
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) != 3:
            problems.add(
                f"line {number}: {shown}: expected CODE<TAB>start<TAB>end, found {len(fields)} field(s)", file=path
            )
            continue
        code, start, end = (field.strip() for field in fields)
        if not code:
            problems.add(f"line {number}: {shown}: the instrument code is empty", file=path)
            continue
        start_day, end_day = _parse_day(start), _parse_day(end)
        if start_day is None or end_day is None:
            bad = " and ".join(repr(text) for text, day in ((start, start_day), (end, end_day)) if day is None)
            problems.add(f"line {number}: {shown}: date {bad} does not parse", file=path)
        elif start_day > end_day:
            problems.add(f"line {number}: {shown}: span starts {start} after it ends {end}", file=path)
        else:
            rows.append((code, start_day, end_day))
    problems.raise_if_any()
    if not rows:
        raise SourceDataError("lists no instruments", file=path)
    return pd.DataFrame(rows, columns=list(SPAN_COLUMNS))


def _parse_day(text: str) -> pd.Timestamp | None:
    try:
        day = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):  # e.g. "2021-13-45", "99999-01-01"
        return None
    return None if pd.isna(day) else day.normalize()
