"""Market-data sources: Parquet panels, per-instrument CSV folders, Qlib provider dirs.

Pure (no Dagster): the raw_ohlcv asset calls ``open_source(path).read(...)`` and
``Universe`` to decide which rows it stores. Every source yields the same frame:
RAW_COLUMNS in Qlib's adjusted convention (semantics §1), validated (see ``validation``).
A read that finds bad input raises one ``SourceReport`` listing every problem.
``peek_date_bounds(path)`` gives a source's first and last date cheaply, never raising;
``peek_source_problem(path)`` says when a source surely cannot be read, as cheaply.
"""

from __future__ import annotations

from .base import PRICE_COLUMNS, RAW_COLUMNS, Problem, Source, SourceDataError, SourceReport
from .bounds import peek_date_bounds, peek_source_problem
from .csv_dir import CsvDirSource
from .detect import open_source
from .parquet import ParquetSource
from .qlib_provider import QlibProviderSource
from .universe import Universe

__all__ = [
    "PRICE_COLUMNS",
    "RAW_COLUMNS",
    "CsvDirSource",
    "ParquetSource",
    "Problem",
    "QlibProviderSource",
    "Source",
    "SourceDataError",
    "SourceReport",
    "Universe",
    "open_source",
    "peek_date_bounds",
    "peek_source_problem",
]
