"""``open_source``: recognise which kind of bar source a path holds."""

from __future__ import annotations

import os
from pathlib import Path

from .base import Source, SourceDataError
from .csv_dir import CsvDirSource
from .parquet import PARQUET_SUFFIXES, ParquetSource
from .qlib_provider import QlibProviderSource

EXPECTED = (
    "expected a Parquet file, a folder of Parquet files, a folder of <CODE>.csv files, "
    "or a Qlib provider directory (calendars/day.txt, instruments/all.txt, features/)"
)


def open_source(path: str | os.PathLike) -> Source:
    """The source at ``path``, its kind recognised from what is there.

    A folder with ``calendars/`` or ``features/`` is a Qlib provider directory; otherwise
    a folder of ``.parquet`` files is a Parquet panel and a folder of ``.csv`` files a CSV
    source (both at once is ambiguous, an error). A file must be Parquet.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise SourceDataError(f"does not exist; {EXPECTED}", file=path)
    if path.is_file():
        if path.suffix.lower() in PARQUET_SUFFIXES:
            return ParquetSource(path)
        raise SourceDataError(f"is not a Parquet file; {EXPECTED}", file=path)
    if (path / "calendars").is_dir() or (path / "features").is_dir():
        return QlibProviderSource(path)
    has_parquet = any(p.suffix.lower() in PARQUET_SUFFIXES for p in path.rglob("*") if p.is_file())
    has_csv = any(path.glob("*.csv"))
    if has_parquet and has_csv:
        raise SourceDataError("holds both .parquet and .csv files; point at one kind", file=path)
    if has_parquet:
        return ParquetSource(path)
    if has_csv:
        return CsvDirSource(path)
    raise SourceDataError(f"holds no bar data; {EXPECTED}", file=path)
