"""What every market-data source hands to the pipeline: columns, dtypes, errors, protocol.

A source yields *raw_ohlcv* rows in Qlib's stored-field convention (semantics §1.1-§1.3):
one row per (instrument, traded day), prices already multiplied by the adjustment
factor, volume divided by it, ``vwap`` NaN when the source has none.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, NamedTuple, Protocol, runtime_checkable

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


class Problem(NamedTuple):
    """One thing wrong with the input; the parts not known are None."""

    file: str | None
    instrument: str | None
    date: str | None
    problem: str

    def where(self) -> str:
        """``"instrument X, date D"`` (the known parts), or ``""``."""
        return ", ".join(
            part
            for part in (
                None if self.instrument is None else f"instrument {self.instrument}",
                None if self.date is None else f"date {self.date}",
            )
            if part
        )


#: Problems kept (with their text) per file and instrument; the rest are only counted,
#: so a 1 GB file that is wrong on every row still makes a short message.
PROBLEMS_KEPT_PER_GROUP = 5
#: A Parquet panel holds every instrument in one file: name at most this many of them.
INSTRUMENTS_SHOWN_PER_FILE = 20


class Problems:
    """Collects the problems of one read so that they are all reported at once.

    Problems are grouped by (file, instrument); each group keeps its first
    PROBLEMS_KEPT_PER_GROUP and counts the rest. ``raise_if_any`` turns them into one
    ``SourceReport``. ``files_checked`` counts the files looked at, for "3 of 500 files".
    """

    def __init__(self, root, *, kept_per_group: int = PROBLEMS_KEPT_PER_GROUP) -> None:
        self.root = Path(root)
        self.kept_per_group = kept_per_group
        self.files_checked = 0
        self._kept: dict[tuple[str | None, str | None], list[Problem]] = {}
        self._counts: Counter = Counter()

    def __len__(self) -> int:
        return sum(self._counts.values())

    def add(self, problem: str, *, file=None, instrument=None, date=None, count: int = 1) -> None:
        """Record one problem; ``count`` > 1 says it stands for that many (e.g. bad rows)."""
        record = _problem(problem, file, instrument, date)
        key = (record.file, record.instrument)
        kept = self._kept.setdefault(key, [])
        if len(kept) < self.kept_per_group:
            kept.append(record)
        self._counts[key] += count

    def add_count(self, count: int, *, file=None, instrument=None) -> None:
        """Count ``count`` more problems of a (file, instrument) without keeping their text."""
        record = _problem("", file, instrument, None)
        self._counts[(record.file, record.instrument)] += int(count)

    def add_error(self, error: SourceDataError) -> None:
        """Record a ``SourceDataError`` raised for one file (or every problem of a report)."""
        if isinstance(error, SourceReport):
            for key, count in error._counts.items():
                for record in error._kept.get(key, []):
                    self.add(record.problem, file=record.file, instrument=record.instrument, date=record.date, count=0)
                self._counts[key] += count
            return
        self.add(error.problem, file=error.file, instrument=error.instrument, date=error.date)

    def count(self, file) -> int:
        """Problems recorded so far for ``file`` (any instrument)."""
        name = str(file)
        return sum(count for (key_file, _), count in self._counts.items() if key_file == name)

    def raise_if_any(self) -> None:
        if self._counts:
            raise SourceReport(self.root, self._kept, self._counts, self.files_checked)


def _problem(problem, file, instrument, date) -> Problem:
    return Problem(
        None if file is None else str(file),
        None if instrument is None or pd.isna(instrument) else str(instrument),
        None if date is None or pd.isna(date) else _date_text(date),
        problem,
    )


class SourceReport(SourceDataError):
    """Every problem found while reading a source, raised once instead of the first one.

    Attributes for callers (e.g. run metadata):

    - ``problems``: DataFrame ``file, instrument, date, problem`` -- the problems kept,
      the first few of each (file, instrument); None where a part is not known;
    - ``counts``: DataFrame ``file, instrument, problems`` -- every group, full counts;
    - ``total`` (problems in all), ``bad_files`` (files with problems, as str, in the
      order found), ``files_checked`` (files looked at; 0 when not counted);
    - ``problem``, ``file``, ``instrument``, ``date``: the first problem, as on
      ``SourceDataError``.

    ``str(report)`` lists every bad file, the first problems of each with counts, and
    ends with one line saying what to fix.
    """

    def __init__(self, root, kept, counts, files_checked: int = 0) -> None:
        self.root = str(root)
        self._kept = {key: list(records) for key, records in kept.items()}
        # Files in the order they were checked; within a file, instruments alphabetically
        # (the checks run column by column, which would scatter an instrument's problems).
        file_order = {file: index for index, file in enumerate(dict.fromkeys(file for file, _ in counts))}
        order = sorted(counts, key=lambda key: (file_order[key[0]], key[1] is not None, key[1] or ""))
        self._counts = Counter({key: counts[key] for key in order})
        self.files_checked = files_checked
        self.total = sum(self._counts.values())
        self.bad_files = list(dict.fromkeys(file for file, _ in self._counts))
        records = [record for key in self._counts for record in self._kept.get(key, [])]
        self.problems = pd.DataFrame(records, columns=list(Problem._fields)).astype(object)
        self.counts = pd.DataFrame(
            [(file, instrument, count) for (file, instrument), count in self._counts.items()],
            columns=["file", "instrument", "problems"],
        )
        first = records[0]
        self.problem, self.file, self.instrument, self.date = first.problem, first.file, first.instrument, first.date
        ValueError.__init__(self, self._message())

    def metadata(self) -> dict:
        """Plain JSON-able values: counts, and the problems kept as a list of dicts."""
        return {
            "problems_total": self.total,
            "bad_files": len(self.bad_files),
            "files_checked": self.files_checked,
            "problems": [record._asdict() for record in self.problems.itertuples(index=False, name="Problem")],
        }

    def _message(self) -> str:
        # Problems filed under the source itself (a single-file source, a universe file,
        # a row repeated across two files) are not "bad files" of a folder.
        files = [file for file in self.bad_files if file != self.root]
        total = f"{self.total} problem{'s' if self.total != 1 else ''}"
        if not files:
            instruments = {instrument for _, instrument in self._counts if instrument is not None}
            head = f"{self.root}: {total}{f' in {len(instruments)} instruments' if len(instruments) > 1 else ''}:"
        else:
            verb = "has" if len(files) == 1 else "have"
            if self.files_checked >= len(files):
                which = f"{len(files)} of {self.files_checked} files {verb}"
            else:
                which = f"{len(files)} file{'s' if len(files) != 1 else ''} {verb}"
            head = f"{self.root}: {which} problems ({total}):"
        lines = [head]
        for file in self.bad_files:
            lines.extend(self._file_lines(file))
        lines.append(
            "Fix each problem listed above in the file it names (or remove that file from the source), "
            "then run again; nothing was read."
        )
        return "\n".join(lines)

    def _file_lines(self, file: str | None) -> list[str]:
        groups = [key for key in self._counts if key[0] == file]
        count = sum(self._counts[key] for key in groups)
        instruments = [instrument for _, instrument in groups if instrument is not None]
        spread = f" in {len(instruments)} instruments" if len(instruments) > 1 else ""
        if count == 1 and len(self._kept.get(groups[0], [])) == 1:  # one line, whole: easy to grep
            return [f"  {_line(self._relative(file), self._kept[groups[0]][0])}"]
        if file == self.root and len(self.bad_files) == 1:  # the first line names it already
            lines, indent = [], "  "
        elif file == self.root:  # e.g. a row repeated in two files
            lines, indent = [f"  across files: {count} problem{'s' if count != 1 else ''}{spread}:"], "    "
        else:
            lines, indent = [f"  {self._relative(file)}: {count} problems{spread}:"], "    "
        for key in groups[:INSTRUMENTS_SHOWN_PER_FILE]:
            kept = self._kept.get(key, [])
            lines.extend(f"{indent}{_line(None, record)}" for record in kept)
            hidden = self._counts[key] - len(kept)
            if hidden > 0:
                whose = f"instrument {key[1]}: " if key[1] is not None else ""
                lines.append(f"{indent}{whose}{hidden} more problem{'s' if hidden != 1 else ''} not shown")
        rest = groups[INSTRUMENTS_SHOWN_PER_FILE:]
        if rest:
            names = ", ".join(str(instrument) for _, instrument in rest[:50])
            more = ", ..." if len(rest) > 50 else ""
            lines.append(
                f"{indent}{len(rest)} more instruments with {sum(self._counts[key] for key in rest)} problems: "
                f"{names}{more}"
            )
        return lines

    def _relative(self, file: str | None) -> str | None:
        """A file inside the source as its path below the source; the source itself in full."""
        if file is None:
            return None
        try:
            relative = Path(file).relative_to(self.root)
        except ValueError:
            return file
        return str(relative) if str(relative) != "." else file


def _line(name: str | None, record: Problem) -> str:
    return ": ".join(part for part in (name, record.where(), record.problem) if part)


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
