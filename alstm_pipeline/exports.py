"""Our results in the shapes Qlib's recorders keep them, written as Parquet or CSV.

Pure (no Dagster, no SQL): frames in, frames or files out. A Qlib user finds

- ``pred.pkl`` (SignalRecord) → ``signal_frame``: index (datetime, instrument), column ``score``;
- ``label.pkl`` (SignalRecord) → ``label_frame``: the same index, column ``LABEL0`` (the raw
  label, §4/§5.2). Qlib names the column after the expression when the YAML lists the
  label explicitly, as the ALSTM file does; ``column=`` gives that name if wanted;
- ``report_normal_1day.pkl`` (PortAnaRecord) → ``report_frame``: index datetime, columns
  account, return, total_turnover, turnover, cost, total_cost, value, cash, bench;
- ``positions_normal_1day.pkl`` → ``positions_frame``: one row per (datetime, instrument) held
  after the close: amount, price, weight (Qlib keeps a dict of Position objects; a flat
  table carries the same numbers);
- the executed deals → ``trades_frame``: datetime, instrument, direction, amount, price, value, cost;
- ``port_analysis_1day.pkl`` → ``port_analysis_frame``: index (excess-return kind, metric), column ``risk``.

No pickle anywhere: ``write_frame`` writes Parquet (keeps dtypes and the index) or CSV (index
as leading columns); ``read_frame`` reads either back (CSV: name the index columns).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from alstm_pipeline.evaluation.backtest import BacktestResult, backtest_summary

__all__ = [
    "FORMATS",
    "filter_dates",
    "label_frame",
    "port_analysis_frame",
    "positions_frame",
    "read_frame",
    "report_frame",
    "signal_frame",
    "trades_frame",
    "write_frame",
]

FORMATS = ("parquet", "csv")
INDEX = ["datetime", "instrument"]


def _keyed(frame: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
    """(date, instrument, *columns) → frame indexed (datetime, instrument), sorted; duplicates are an error."""
    missing = [c for c in ("date", "instrument", *columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs columns date, instrument, {', '.join(columns)}; missing {missing}")
    out = frame[["date", "instrument", *columns]].rename(columns={"date": "datetime"})
    out["datetime"] = pd.to_datetime(out["datetime"])
    duplicated = out.duplicated(INDEX)
    if duplicated.any():
        row = out[duplicated].iloc[0]
        raise ValueError(f"{what} has {int(duplicated.sum())} duplicate row(s), e.g. {row['instrument']} on {row['datetime']:%Y-%m-%d}")
    return out.set_index(INDEX).sort_index()


def signal_frame(predictions: pd.DataFrame) -> pd.DataFrame:
    """SignalRecord's ``pred.pkl``: ``score`` indexed by (datetime, instrument).

    ``predictions`` is the predictions table (date, instrument, score[, model_version]).
    Qlib's frame comes in the sampler's instrument-major order (§6); this one is sorted by
    date then instrument, same rows and values.
    """
    return _keyed(predictions, ["score"], "predictions")


def label_frame(labels: pd.DataFrame, column: str = "LABEL0") -> pd.DataFrame:
    """SignalRecord's ``label.pkl``: the raw label indexed by (datetime, instrument)."""
    frame = _keyed(labels, ["LABEL0"], "labels")
    return frame.rename(columns={"LABEL0": column})


def report_frame(result: BacktestResult) -> pd.DataFrame:
    """PortAnaRecord's daily report, Qlib's column names and meanings.

    return, cost and turnover are fractions of the previous day's account value (§9.4);
    total_turnover and total_cost are running sums in money; value is the stock value
    (account − cash).
    """
    daily = result.daily
    previous = daily["account_value"].shift(1).fillna(result.config.account)
    report = pd.DataFrame(
        {
            "account": daily["account_value"].to_numpy(),
            "return": daily["return"].to_numpy(),
            "total_turnover": (daily["turnover"] * previous).cumsum().to_numpy(),
            "turnover": daily["turnover"].to_numpy(),
            "cost": daily["cost"].to_numpy(),
            "total_cost": (daily["cost"] * previous).cumsum().to_numpy(),
            "value": (daily["account_value"] - daily["cash"]).to_numpy(),
            "cash": daily["cash"].to_numpy(),
            "bench": daily["bench"].to_numpy(),
        },
        index=pd.DatetimeIndex(daily["date"], name="datetime"),
    )
    return report


def positions_frame(result: BacktestResult) -> pd.DataFrame:
    """Holdings after each close: amount (adjusted units), price (close), weight, indexed (datetime, instrument)."""
    return _keyed(result.positions, ["amount", "price", "weight"], "positions")


def trades_frame(result: BacktestResult) -> pd.DataFrame:
    """Executed deals in execution order (sells before buys each day), columns as in ``BacktestResult.trades``."""
    trades = result.trades.rename(columns={"date": "datetime"}).reset_index(drop=True)
    trades["datetime"] = pd.to_datetime(trades["datetime"])
    return trades


def port_analysis_frame(result: BacktestResult) -> pd.DataFrame:
    """risk_analysis of the excess return without and with cost (§9.5), Qlib's layout."""
    summary = backtest_summary(result)
    rows = {
        (kind, metric): value
        for kind in ("excess_return_without_cost", "excess_return_with_cost")
        for metric, value in summary[kind].items()
    }
    index = pd.MultiIndex.from_tuples(list(rows), names=["kind", "metric"])
    return pd.DataFrame({"risk": list(rows.values())}, index=index)


def filter_dates(frame: pd.DataFrame, start=None, end=None) -> pd.DataFrame:
    """Rows whose ``datetime`` (index level or column) lies in [start, end], both inclusive, either open."""
    dates = frame.index.get_level_values("datetime") if "datetime" in (frame.index.names or []) else frame["datetime"]
    keep = pd.Series(True, index=range(len(frame)))
    if start is not None:
        keep &= (pd.DatetimeIndex(dates) >= pd.Timestamp(start))
    if end is not None:
        keep &= (pd.DatetimeIndex(dates) <= pd.Timestamp(end))
    return frame[keep.to_numpy()]


def _format_of(path: Path, fmt: str | None) -> str:
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path}: format must be one of {FORMATS} (or a .parquet / .csv name), got {fmt or 'no suffix'!r}")
    return fmt


def write_frame(frame: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``frame`` as Parquet or CSV (``fmt``, else the file suffix); returns the path.

    Written to a temporary name first and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    fmt = _format_of(path, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    has_index = any(name is not None for name in frame.index.names)
    if fmt == "parquet":
        frame.to_parquet(partial, index=has_index)
    else:
        frame.to_csv(partial, index=has_index, date_format="%Y-%m-%d")
    partial.replace(path)
    return path


def read_frame(path: str | os.PathLike, fmt: str | None = None, index: list[str] | None = None) -> pd.DataFrame:
    """Read a frame written by ``write_frame``.

    Parquet restores the index itself. CSV holds the index as plain leading columns: pass
    ``index`` (e.g. ``["datetime", "instrument"]``) to restore it; a ``datetime`` column is
    parsed as dates either way.
    """
    path = Path(path)
    fmt = _format_of(path, fmt)
    if fmt == "parquet":
        return pd.read_parquet(path)
    frame = pd.read_csv(path)
    if "datetime" in frame.columns:
        frame["datetime"] = pd.to_datetime(frame["datetime"])
    if index:
        frame = frame.set_index(index if len(index) > 1 else index[0])
    return frame
