"""What every market-data source hands to the pipeline: columns, dtypes, errors, protocol.

A source yields *raw_ohlcv* rows in Qlib's stored-field convention (semantics §1.1-§1.3):
one row per (instrument, traded day), prices already multiplied by the adjustment
factor, volume divided by it, ``vwap`` NaN when the source has none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol, runtime_checkable

import pandas as pd

RAW_COLUMNS = ("instrument", "date", "open", "high", "low", "close", "volume", "vwap", "factor")
PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "factor")


class SourceDataError(ValueError):
    """Input that cannot be turned into raw_ohlcv rows.

    The message reads ``"<file>: instrument <X>, date <D>: <problem>"``, leaving out the
    parts that are not known, so a user can open the file at the offending row.
    """

    def __init__(self, problem: str, *, file=None, instrument=None, date=None) -> None:
        self.problem = problem
        self.file = None if file is None else str(file)
        self.instrument = None if instrument is None or pd.isna(instrument) else str(instrument)
        self.date = None if date is None or pd.isna(date) else _date_text(date)
        where = ", ".join(
            part
            for part in (
                None if self.instrument is None else f"instrument {self.instrument}",
                None if self.date is None else f"date {self.date}",
            )
            if part
        )
        prefix = ": ".join(part for part in (self.file, where) if part)
        super().__init__(f"{prefix}: {problem}" if prefix else problem)


def _date_text(date) -> str:
    """Show a midnight timestamp as a plain ISO date, anything else as given."""
    if isinstance(date, pd.Timestamp) and date == date.normalize():
        return date.strftime("%Y-%m-%d")
    return str(date)


@runtime_checkable
class Source(Protocol):
    """A place bars are read from; see ``open_source`` for the kinds recognised."""

    path: Path
    kind: str  # "parquet" | "csv" | "qlib"

    def calendar(self) -> pd.DatetimeIndex:
        """All trading dates the source holds (any instrument), sorted, no duplicates."""
        ...

    def instruments(self) -> list[str]:
        """Instrument codes the source holds, sorted."""
        ...

    def date_ranges(self) -> pd.DataFrame:
        """``instrument, start, end``: each instrument's first and last stored date."""
        ...

    def read(
        self,
        start=None,
        end=None,
        instruments: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Validated raw_ohlcv rows with ``start <= date <= end`` (inclusive, None = open).

        Columns RAW_COLUMNS; ``instrument`` str, ``date`` datetime64[ns] at midnight,
        the rest float32; sorted by (instrument, date).
        """
        ...


def normalise_query(start, end, instruments) -> tuple[pd.Timestamp | None, pd.Timestamp | None, list[str] | None]:
    """Shared by all sources: bounds as midnight Timestamps, instruments as a list of str."""
    start = None if start is None else pd.Timestamp(start).normalize()
    end = None if end is None else pd.Timestamp(end).normalize()
    if start is not None and end is not None and start > end:
        raise ValueError(f"start {start.date()} is after end {end.date()}")
    if isinstance(instruments, str):
        raise TypeError("instruments must be a collection of codes, not one string")
    wanted = None if instruments is None else sorted({str(code) for code in instruments})
    return start, end, wanted


def ranges_frame(ranges: pd.DataFrame) -> pd.DataFrame:
    """``instrument, start, end`` from a frame indexed by instrument with min/max columns."""
    frame = ranges.rename(columns={"min": "start", "max": "end"}).rename_axis("instrument").reset_index()
    frame["instrument"] = frame["instrument"].astype(str)
    for column in ("start", "end"):
        frame[column] = frame[column].astype("datetime64[ns]")
    return frame.sort_values("instrument", ignore_index=True)[["instrument", "start", "end"]]
