"""Tabular daily bars (Parquet or CSV) -> validated raw_ohlcv rows in Qlib's convention.

Column conventions accepted (names are matched case-insensitively, spaces become ``_``,
``adjclose`` / ``adjusted_close`` mean ``adj_close``):

- ``date, open, high, low, close, volume`` + ``adj_close``: raw traded prices, as in the
  shared panel and Yahoo-style downloads. Adjusted the way Qlib's collector does
  (semantics §1.2, without its division by the first close): ``factor = adj_close /
  close``, prices (and vwap) × factor, volume ÷ factor, in float64, then cast to float32.
- ``... + factor`` (and no ``adj_close``): the fields are already Qlib-adjusted, as in
  the CSVs Qlib's ``normalize`` step writes; they are taken as they are.
- neither: raw prices with no corporate actions known; ``factor = 1.0``.
- both ``adj_close`` and ``factor``: rejected, since it cannot be told whether the prices
  are raw or already adjusted.

``vwap`` is optional; when absent it is NaN (§1.3). Other columns (dividend, split,
symbol, change, ...) are ignored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from .base import PRICE_COLUMNS, RAW_COLUMNS, Problems, SourceDataError
from .validation import (
    check_instruments,
    check_not_future,
    check_values,
    parse_dates,
    parse_numbers,
    require_columns,
)

BAR_COLUMNS = ("date", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("adj_close", "factor", "vwap")
_ALIASES = {"adjclose": "adj_close", "adjusted_close": "adj_close", "adj_close": "adj_close"}


def normalise_column_name(name: object) -> str:
    """``" Adj Close"`` -> ``"adj_close"``: how headers are matched to the conventions."""
    text = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    return _ALIASES.get(text, text)


def wanted_columns(names: list[str]) -> dict[str, str]:
    """Map normalised names to the source's own spelling, for the columns we read."""
    wanted = {}
    for name in names:
        key = normalise_column_name(name)
        if key in ("instrument", *BAR_COLUMNS, *OPTIONAL_COLUMNS) and key not in wanted:
            wanted[key] = name
    return wanted


def arrow_to_bars_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow table -> pandas with normalised column names and dates as datetime64[ns]."""
    table = table.rename_columns([normalise_column_name(name) for name in table.column_names])
    if "date" in table.column_names and pa.types.is_date(table.schema.field("date").type):
        # date32 -> datetime64[ns] in Arrow: far faster than pandas' datetime.date objects.
        table = table.set_column(table.column_names.index("date"), "date", table["date"].cast(pa.timestamp("ns")))
    return table.to_pandas(self_destruct=True)


def bars_to_raw(
    bars: pd.DataFrame,
    *,
    file,
    problems: Problems,
    instrument: str | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Adjusted raw_ohlcv rows (RAW_COLUMNS, not yet sorted) from one table.

    ``bars`` has normalised column names; ``instrument`` names all rows when the table has
    no ``instrument`` column (a per-symbol CSV). Rows outside [start, end] are dropped
    before the value checks, so a read of one month does not trip on another month; a row
    dated after today is reported whatever the range.
    Bad rows are recorded in ``problems`` and the rows still returned: the caller drops
    the file's rows when it recorded anything. A table that cannot be used at all (a
    required column missing, both adj_close and factor) raises ``SourceDataError``.
    """
    required = BAR_COLUMNS if instrument is not None else ("instrument", *BAR_COLUMNS)
    require_columns(bars.columns, required, file=file)
    if instrument is not None:
        codes = pd.Categorical.from_codes(np.zeros(len(bars), dtype=np.int8), categories=[instrument])
        dates = parse_dates(bars["date"], codes, file=file, problems=problems)
    else:
        dates = parse_dates(bars["date"], bars["instrument"].array, file=file, problems=problems)
        codes = check_instruments(bars["instrument"], dates, file=file, problems=problems)

    # Before the range filter: no read's range reaches a future day, so only this sees it.
    check_not_future(dates, codes, file=file, problems=problems)
    keep = np.ones(len(bars), dtype=bool)
    if start is not None:
        keep &= dates >= np.datetime64(start, "ns")
    if end is not None:
        keep &= dates <= np.datetime64(end, "ns")
    if not keep.all():
        bars, codes, dates = bars[keep], codes[keep], dates[keep]

    present = [name for name in (*BAR_COLUMNS[1:], *OPTIONAL_COLUMNS) if name in bars.columns]
    values, not_numbers = {}, {}
    for name in present:
        values[name], not_numbers[name] = parse_numbers(bars[name], name, codes, dates, file=file, problems=problems)
    check_values(codes, dates, values, file=file, problems=problems, reported=not_numbers)
    adjusted = adjust_to_qlib(values, file=file)

    return pd.DataFrame({"instrument": codes, "date": dates} | {name: adjusted[name] for name in RAW_COLUMNS[2:]})


def adjust_to_qlib(values: dict[str, np.ndarray], *, file) -> dict[str, np.ndarray]:
    """Qlib's stored fields from float64 bar columns (see the module docstring), as float32."""
    rows = len(values["close"])
    has_adj_close, has_factor = "adj_close" in values, "factor" in values
    if has_adj_close and has_factor:
        raise SourceDataError(
            "has both adj_close and factor columns: cannot tell raw prices from adjusted ones; keep one",
            file=file,
        )
    out = {name: values[name] for name in (*PRICE_COLUMNS, "volume")}
    out["vwap"] = values.get("vwap", np.full(rows, np.nan))
    if has_adj_close:
        # Bad rows (zero or NaN close) are already recorded and the rows will not be
        # returned; their arithmetic warnings would only add noise.
        with np.errstate(divide="ignore", invalid="ignore"):
            return _adjust_by_adj_close(values, out)
    elif has_factor:
        out["factor"] = values["factor"]
    else:
        out["factor"] = np.ones(rows)
    return {name: np.asarray(column, dtype=np.float32) for name, column in out.items()}


def _adjust_by_adj_close(values: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # §1.2: f = adjclose / close; prices × f, volume ÷ f (float64, then one cast).
    factor = values["adj_close"] / values["close"]
    for name in (*PRICE_COLUMNS, "vwap"):
        out[name] = out[name] * factor
    out["volume"] = out["volume"] / factor
    out["factor"] = factor
    return {name: np.asarray(column, dtype=np.float32) for name, column in out.items()}
