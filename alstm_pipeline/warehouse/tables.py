"""Typed readers and writers of the pipeline's tables: the only SQL besides ``store.py``.

One table per asset, named as the asset (raw_ohlcv, alpha158_features, labels,
predictions, ic_daily, backtest_daily with backtest_positions and backtest_trades), plus universe, the trading_calendar view and the
model registry (``registry.py``). Assets, schedules, the sensor and the CLI's report call
these functions and never write SQL themselves.

The scoring tables (predictions, ic_daily, backtest_daily, backtest_positions,
backtest_trades) are keyed by ``experiment`` (registry.py): each experiment has its own
rows, a write replaces only its own experiment's rows, and tables written before the
column existed are migrated in the next write (their rows become the main job's).
"""

from __future__ import annotations

import pandas as pd

from alstm_pipeline.sources import Universe
from alstm_pipeline.warehouse.registry import DEFAULT_EXPERIMENT
from alstm_pipeline.warehouse.store import Warehouse, WarehouseError, date_condition, duckdb_type

RAW_TABLE = "raw_ohlcv"
UNIVERSE_TABLE = "universe"
CALENDAR_VIEW = "trading_calendar"
LABELS_TABLE = "labels"
PREDICTIONS_TABLE = "predictions"
IC_TABLE = "ic_daily"
BACKTEST_TABLE = "backtest_daily"
POSITIONS_TABLE = "backtest_positions"
TRADES_TABLE = "backtest_trades"
# The table shapes; value of a holding is amount × price, so it is not stored twice.
POSITION_COLUMNS = ("date", "instrument", "amount", "price", "weight")
TRADE_COLUMNS = ("date", "instrument", "direction", "amount", "price", "value", "cost")


def _dates(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    return frame


def _require(store: Warehouse, table: str, fix: str) -> None:
    if not store.table_exists(table):
        raise WarehouseError(f"{store.location}: table {table} does not exist yet. Fix: {fix}")


# --- universe ----------------------------------------------------------------------------

def write_universe(store: Warehouse, spans: pd.DataFrame) -> int:
    return store.replace_table(UNIVERSE_TABLE, spans)


def read_universe(store: Warehouse) -> Universe:
    _require(store, UNIVERSE_TABLE, "materialise universe first (select '+raw_ohlcv' to include it)")
    return Universe(spans=_dates(store.query(f'SELECT instrument, start, "end" FROM {UNIVERSE_TABLE}'), "start", "end"))


def universe_instruments(store: Warehouse) -> list[str]:
    _require(store, UNIVERSE_TABLE, "materialise universe first (select '+raw_ohlcv' to include it)")
    return store.query(f"SELECT DISTINCT instrument FROM {UNIVERSE_TABLE} ORDER BY instrument")["instrument"].tolist()


# --- raw bars and the calendar -------------------------------------------------------------

def write_raw(store: Warehouse, bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> int:
    return store.replace_date_range(RAW_TABLE, bars, start, end)


def refresh_calendar(store: Warehouse) -> tuple[str, str, int]:
    """(Re)define the trading calendar as the distinct dates of raw_ohlcv (semantics §1.1);
    returns its first day, last day and length."""
    with store.transaction() as con:
        con.execute(f"CREATE OR REPLACE VIEW {CALENDAR_VIEW} AS SELECT DISTINCT date FROM {RAW_TABLE} ORDER BY date")
    # Read after the commit: a DuckLake commit that conflicts is replayed, and a read inside
    # the transaction would describe the first try.
    first, last, days = store.query(
        f"SELECT strftime(min(date), '%Y-%m-%d'), strftime(max(date), '%Y-%m-%d'), count(*) FROM {CALENDAR_VIEW}").iloc[0]
    return str(first), str(last), int(days)


def read_calendar(store: Warehouse) -> pd.DatetimeIndex:
    _require(store, CALENDAR_VIEW, "materialise raw_ohlcv and trading_calendar first")
    return pd.DatetimeIndex(pd.to_datetime(store.query(f"SELECT date FROM {CALENDAR_VIEW} ORDER BY date")["date"]))


def previous_day_instruments(store: Warehouse, before: pd.Timestamp) -> pd.DataFrame:
    """(instrument, date, close) rows of the last stored trading day before ``before``."""
    if not store.table_exists(RAW_TABLE):
        return pd.DataFrame({"instrument": pd.Series(dtype=str), "date": pd.Series(dtype="datetime64[ns]"),
                             "close": pd.Series(dtype="float32")})
    return _dates(store.query(
        f"SELECT instrument, date, close FROM {RAW_TABLE} WHERE date = (SELECT max(date) FROM {RAW_TABLE} WHERE date < ?)",
        [pd.Timestamp(before).date()],
    ), "date")


def read_raw_with_margin(
    store: Warehouse, start: pd.Timestamp, end: pd.Timestamp, rows_before: int, rows_after: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw bars from ``rows_before`` trading days before ``start`` to ``rows_after`` trading
    days after ``end``, and each instrument's first and last date in the whole table.

    Qlib's series run from an instrument's first to its last date (semantics §1.1): the
    span lets a slice tell "suspended on this day" (a NaN row) from "not listed yet" (no
    row), so a day computed from the slice equals the full-history computation.
    """
    first = store.query(
        f"SELECT coalesce(min(date), ?) FROM (SELECT date FROM {CALENDAR_VIEW} WHERE date < ? "
        "ORDER BY date DESC LIMIT ?)",
        [start.date(), start.date(), rows_before],
    ).iloc[0, 0]
    last = store.query(
        f"SELECT coalesce(max(date), ?) FROM (SELECT date FROM {CALENDAR_VIEW} WHERE date > ? ORDER BY date LIMIT ?)",
        [end.date(), end.date(), rows_after],
    ).iloc[0, 0]
    raw = store.read_dates(RAW_TABLE, pd.Timestamp(first), pd.Timestamp(last))
    spans = store.query(f"SELECT instrument, min(date) AS first, max(date) AS last FROM {RAW_TABLE} GROUP BY instrument")
    return raw, spans.set_index("instrument").apply(pd.to_datetime)


def last_ingested_day(store: Warehouse) -> pd.Timestamp | None:
    if not store.table_exists(RAW_TABLE):
        return None
    found = store.query(f"SELECT max(date) FROM {RAW_TABLE}").iloc[0, 0]
    return None if pd.isna(found) else pd.Timestamp(found)


def trading_days_after(store: Warehouse, day: pd.Timestamp) -> int:
    return int(store.query(f"SELECT count(*) FROM {CALENDAR_VIEW} WHERE date > ?", [pd.Timestamp(day).date()]).iloc[0, 0])


def read_prices(
    store: Warehouse, start: pd.Timestamp, end: pd.Timestamp, with_open: bool = False, benchmark: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Close and factor (and open with ``with_open``) of universe instruments, plus the
    ``benchmark`` codes' rows where raw_ohlcv holds them, from the trading day before
    ``start`` to ``end``: the backtest's first benchmark return starts at that day's close
    (§9.4), and so does the first day's raw change for the price limit."""
    columns = "date, instrument, close, factor" + (", open" if with_open else "")
    codes = list(benchmark)
    extra = f" OR instrument IN ({', '.join('?' for _ in codes)})" if codes else ""
    return _dates(store.query(
        f"SELECT {columns} FROM {RAW_TABLE} WHERE date BETWEEN "
        f"coalesce((SELECT max(date) FROM {CALENDAR_VIEW} WHERE date < ?), ?) AND ? "
        f"AND (instrument IN (SELECT DISTINCT instrument FROM {UNIVERSE_TABLE}){extra}) ORDER BY date, instrument",
        [start.date(), start.date(), end.date(), *codes],
    ), "date")


# --- features and labels -----------------------------------------------------------------

def write_features(store: Warehouse, table: str, frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> int:
    return store.replace_date_range(table, frame, start, end)


def read_model_features(store: Warehouse, table: str, columns: list[str], start, end) -> pd.DataFrame:
    """``columns`` of a feature table for [start, end], cut to universe spans (§1.4)."""
    quoted = ", ".join(f'"{name}"' for name in columns)
    frame = store.read_dates(table, start, end, columns=f"instrument, date, {quoted}")
    return frame[read_universe(store).mask(frame)].reset_index(drop=True)


def write_labels(store: Warehouse, frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> int:
    return store.replace_date_range(LABELS_TABLE, frame, start, end)


def read_labels(store: Warehouse, start, end) -> pd.DataFrame:
    """LABEL0 of universe rows in [start, end]: CSRankNorm ranks across these (§5.1)."""
    label = store.read_dates(LABELS_TABLE, start, end, columns="instrument, date, LABEL0")
    return label[read_universe(store).mask(label)].reset_index(drop=True)


def last_labelled_day(store: Warehouse) -> pd.Timestamp | None:
    """The latest day whose label is known: two trading days before the last ingested day."""
    if not store.table_exists(LABELS_TABLE):
        return None
    found = store.query(f"SELECT max(date) FROM {LABELS_TABLE} WHERE LABEL0 IS NOT NULL").iloc[0, 0]
    return None if pd.isna(found) else pd.Timestamp(found)


# --- predictions, IC, backtest: one set of rows per experiment ----------------------------------

EXPERIMENT_KEYS = {PREDICTIONS_TABLE: ("date", "instrument"), IC_TABLE: ("date",),
                   BACKTEST_TABLE: (), POSITIONS_TABLE: (), TRADES_TABLE: ()}


def _columns(con, table: str) -> list[str]:
    return [row[0] for row in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()]


def _migrate_experiment(con, table: str) -> None:
    """A scoring table written before experiments: rebuilt in this transaction with an
    ``experiment`` column (its rows the main job's) and the key (experiment, …)."""
    columns = _columns(con, table)
    if not columns or "experiment" in columns:
        return
    types = dict(con.execute('SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?',
                             [table]).fetchall())
    key = EXPERIMENT_KEYS[table]
    definition = ", ".join(f'"{name}" {types[name]}' for name in columns)
    primary = f", PRIMARY KEY (experiment, {', '.join(key)})" if key else ""
    names = ", ".join(f'"{name}"' for name in columns)
    con.execute(f'CREATE TABLE "{table}__migrating" ({definition}, experiment VARCHAR NOT NULL{primary})')
    con.execute(f'INSERT INTO "{table}__migrating" ({names}, experiment) SELECT {names}, ? FROM "{table}"', [DEFAULT_EXPERIMENT])
    con.execute(f'DROP TABLE "{table}"')
    con.execute(f'ALTER TABLE "{table}__migrating" RENAME TO "{table}"')


def _replace_experiment_rows(con, table: str, frame: pd.DataFrame, experiment: str, start=None, end=None) -> int:
    """Replace ``experiment``'s rows of ``table`` (those dated ``start..end`` when given) by
    ``frame``, inside the open transaction ``con``; creates the table on first use."""
    _migrate_experiment(con, table)
    key = EXPERIMENT_KEYS[table]
    columns = ", ".join(f'"{name}" {duckdb_type(frame[name])}' for name in frame.columns)
    primary = f", PRIMARY KEY (experiment, {', '.join(key)})" if key else ""
    con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({columns}, experiment VARCHAR NOT NULL{primary})')
    where, params = date_condition(start, end) if start is not None else ("TRUE", [])
    con.execute(f'DELETE FROM "{table}" WHERE experiment = ? AND {where}', [experiment, *params])
    if len(frame):
        con.register("incoming_rows", frame)
        names = ", ".join(f'"{name}"' for name in frame.columns)
        con.execute(f'INSERT INTO "{table}" ({names}, experiment) SELECT {names}, ? FROM incoming_rows', [experiment])
        con.unregister("incoming_rows")
    return len(frame)


def _experiment_rows(store: Warehouse, table: str, experiment: str) -> tuple[str, list]:
    """SQL condition selecting ``experiment``'s rows (a table not yet migrated holds the main job's)."""
    with store.connect(read_only=True) as con:
        migrated = "experiment" in _columns(con, table)
    if migrated:
        return "experiment = ?", [experiment]
    return ("TRUE" if experiment == DEFAULT_EXPERIMENT else "FALSE"), []


def _check_range(table: str, frame: pd.DataFrame, start, end) -> None:
    if len(frame):
        dates = pd.to_datetime(frame["date"])
        if dates.min() < pd.Timestamp(start) or dates.max() > pd.Timestamp(end):
            raise WarehouseError(f"{table}: rows dated {dates.min().date()}..{dates.max().date()} fall outside the "
                                 f"partition range {pd.Timestamp(start).date()}..{pd.Timestamp(end).date()} being written")


def write_predictions(store: Warehouse, frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                      experiment: str = DEFAULT_EXPERIMENT) -> int:
    _check_range(PREDICTIONS_TABLE, frame, start, end)
    with store.transaction() as con:
        return _replace_experiment_rows(con, PREDICTIONS_TABLE, frame, experiment, start, end)


def read_predictions(store: Warehouse, start=None, end=None, experiment: str = DEFAULT_EXPERIMENT,
                     versions: list[str] | None = None) -> pd.DataFrame:
    """Stored scores of ``experiment`` in [start, end] (either end open when None), by date
    then instrument; only those of ``versions`` when given."""
    if not store.table_exists(PREDICTIONS_TABLE):
        return pd.DataFrame(columns=["date", "instrument", "score", "model_version"])
    where, params = date_condition(start, end)
    scope, scope_params = _experiment_rows(store, PREDICTIONS_TABLE, experiment)
    chosen = ""
    if versions is not None:
        chosen = f" AND model_version IN ({', '.join('?' for _ in versions) or 'NULL'})"
    return _dates(store.query(
        f"SELECT date, instrument, score, model_version FROM {PREDICTIONS_TABLE} WHERE {where} AND {scope}{chosen} "
        "ORDER BY date, instrument", [*params, *scope_params, *(versions or [])],
    ), "date")


def served_days(store: Warehouse, version: str, experiment: str) -> pd.DatetimeIndex:
    """The days ``version`` has scored in ``experiment`` (what replacing it would change)."""
    if not store.table_exists(PREDICTIONS_TABLE):
        return pd.DatetimeIndex([])
    scope, params = _experiment_rows(store, PREDICTIONS_TABLE, experiment)
    found = store.query(f"SELECT DISTINCT date FROM {PREDICTIONS_TABLE} WHERE model_version = ? AND {scope} ORDER BY date",
                        [version, *params])
    return pd.DatetimeIndex(pd.to_datetime(found["date"]))


def read_scores_and_labels(store: Warehouse, start, end, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    """(datetime, instrument, score, LABEL0) of ``experiment``'s scored rows in [start, end]."""
    scope, params = _experiment_rows(store, PREDICTIONS_TABLE, experiment)
    return _dates(store.query(
        f"SELECT p.date AS datetime, p.instrument, p.score, l.LABEL0 FROM {PREDICTIONS_TABLE} p "
        # Ordered, so a day's IC sums its pairs in the same order whatever range is read:
        # a re-run of part of a period gives the same bits as the first run of all of it.
        f"JOIN {LABELS_TABLE} l USING (instrument, date) WHERE p.date BETWEEN ? AND ? AND {scope.replace('experiment', 'p.experiment')} "
        "ORDER BY p.date, p.instrument",
        [pd.Timestamp(start).date(), pd.Timestamp(end).date(), *params],
    ), "datetime")


def vintages_used(store: Warehouse, start, end, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    """Which model version scored which days of [start, end] in ``experiment``: version, first, last, days."""
    if not store.table_exists(PREDICTIONS_TABLE):
        return pd.DataFrame(columns=["model_version", "first_day", "last_day", "days"])
    scope, params = _experiment_rows(store, PREDICTIONS_TABLE, experiment)
    return _dates(store.query(
        f"SELECT model_version, min(date) AS first_day, max(date) AS last_day, count(DISTINCT date) AS days "
        f"FROM {PREDICTIONS_TABLE} WHERE date BETWEEN ? AND ? AND {scope} GROUP BY model_version ORDER BY first_day",
        [pd.Timestamp(start).date(), pd.Timestamp(end).date(), *params],
    ), "first_day", "last_day")


def experiments(store: Warehouse) -> list[str]:
    """The experiments with scores stored, sorted."""
    if not store.table_exists(PREDICTIONS_TABLE):
        return []
    with store.connect(read_only=True) as con:
        if "experiment" not in _columns(con, PREDICTIONS_TABLE):
            return [DEFAULT_EXPERIMENT]
        return [row[0] for row in con.execute(f"SELECT DISTINCT experiment FROM {PREDICTIONS_TABLE} ORDER BY 1").fetchall()]


def write_ic_daily(store: Warehouse, frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                   experiment: str = DEFAULT_EXPERIMENT) -> int:
    _check_range(IC_TABLE, frame, start, end)
    with store.transaction() as con:
        return _replace_experiment_rows(con, IC_TABLE, frame, experiment, start, end)


def read_ic_daily(store: Warehouse, start=None, end=None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    if not store.table_exists(IC_TABLE):
        return pd.DataFrame(columns=["date", "ic", "rank_ic", "n"])
    return _select_experiment(store, IC_TABLE, "*", start, end, experiment, "date")


def write_backtest(store: Warehouse, daily: pd.DataFrame, positions: pd.DataFrame, trades: pd.DataFrame,
                   experiment: str = DEFAULT_EXPERIMENT) -> dict[str, int]:
    """The backtest's daily report, holdings and deals of ``experiment``, replaced together
    in one transaction: a reader never sees positions of one backtest beside another's report."""
    frames = {BACKTEST_TABLE: daily, POSITIONS_TABLE: positions[list(POSITION_COLUMNS)],
              TRADES_TABLE: trades[list(TRADE_COLUMNS)]}
    with store.transaction() as con:
        return {name: _replace_experiment_rows(con, name, frame, experiment) for name, frame in frames.items()}


def _select_experiment(store: Warehouse, table: str, columns: str, start, end, experiment: str, order: str) -> pd.DataFrame:
    where, params = date_condition(start, end)
    scope, scope_params = _experiment_rows(store, table, experiment)
    if columns == "*" and scope.startswith("experiment"):
        columns = "* EXCLUDE (experiment)"
    return _dates(store.query(f"SELECT {columns} FROM {table} WHERE {where} AND {scope} ORDER BY {order}",
                              [*params, *scope_params]), "date")


def read_backtest(store: Warehouse, start=None, end=None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    if not store.table_exists(BACKTEST_TABLE):
        return pd.DataFrame()
    return _select_experiment(store, BACKTEST_TABLE, "*", start, end, experiment, "date")


def read_backtest_positions(store: Warehouse, start=None, end=None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    """Holdings after each close (date, instrument, amount, price, weight)."""
    _require(store, POSITIONS_TABLE, "materialise backtest_daily first")
    return _select_experiment(store, POSITIONS_TABLE, ", ".join(POSITION_COLUMNS), start, end, experiment, "date, instrument")


def read_backtest_trades(store: Warehouse, start=None, end=None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    """Executed deals (date, instrument, direction, amount, price, value, cost) in execution order."""
    _require(store, TRADES_TABLE, "materialise backtest_daily first")
    # rowid keeps the insertion order: sells before buys within a day, as they were executed.
    return _select_experiment(store, TRADES_TABLE, ", ".join(TRADE_COLUMNS), start, end, experiment, "date, rowid")


def table_summary(store: Warehouse, table: str) -> tuple[int, str, str] | None:
    """Rows, first and last date of a dated table, or None when it does not exist."""
    if not store.table_exists(table):
        return None
    rows, first, last = store.query(
        f"SELECT count(*), strftime(min(date), '%Y-%m-%d'), strftime(max(date), '%Y-%m-%d') FROM \"{table}\""
    ).iloc[0]
    return int(rows), first, last
