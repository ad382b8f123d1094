"""Serving: daily scores from the current model, then IC and the TopkDropout backtest."""

import base64

import dagster as dg
import numpy as np
import pandas as pd

from alstm_pipeline import quality
from alstm_pipeline.dataset import apply_normalizer, build_samples, infer_frame
from alstm_pipeline.defs.features import alpha158_features, labels
from alstm_pipeline.defs.ingest import raw_ohlcv
from alstm_pipeline.defs.model import (
    alstm_model,
    feature_normalizer,
    history_start,
    read_alstm_features,
    read_calendar,
    read_normalizer,
    segment_bounds,
    test_segment,
)
from alstm_pipeline.defs.partitions import WEEKDAYS, window_dates
from alstm_pipeline.defs.resources import ModelStoreResource, WarehouseResource
from alstm_pipeline.evaluation import (
    TopkDropoutConfig,
    backtest_summary,
    calc_ic,
    ic_summary,
    plot_equity,
    plot_ic,
    rolling_ic,
    run_topk_dropout,
)
from alstm_pipeline.model import latest_checkpoint, load_checkpoint, predict

# The 20-day window of a day reaches 19 trading days back: at most ~23 weekdays in US
# markets and ~26 across a Chinese Golden Week; 30 leaves room.
WINDOW_WEEKDAYS = 30
ROLLING_IC_DAYS = 20


def _png_markdown(png: bytes, title: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


@dg.asset(
    group_name="serving",
    kinds={"duckdb"},
    partitions_def=WEEKDAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[
        dg.AssetDep(alpha158_features, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-WINDOW_WEEKDAYS)),
        feature_normalizer,
        alstm_model,
    ],
    metadata={"dagster/table_name": "predictions"},
)
def daily_predictions(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, model_store: ModelStoreResource
) -> dg.MaterializeResult:
    """Score of every universe instrument on each day from its 20-day window ending that
    day, with the latest model checkpoint (semantics §6 test windows, §7.3)."""
    start, end = window_dates(context)
    store = warehouse.get()
    checkpoint = latest_checkpoint(model_store.path())
    if checkpoint is None:
        raise dg.Failure(f"no model checkpoint under {model_store.path()}: materialise alstm_model first")
    model, card = load_checkpoint(checkpoint)
    calendar = read_calendar(store)
    days = calendar[(calendar >= start) & (calendar <= end)]
    if days.empty:
        store.replace_date_range("predictions", _empty_predictions(), start, end, key=("date", "instrument"))
        return dg.MaterializeResult(metadata={"rows": 0, "note": "no trading day in this range", "model_version": card["version"]})
    features = apply_normalizer(read_alstm_features(store, history_start(calendar, days[0]), days[-1]), read_normalizer(store))
    # A trading day without features would silently get no scores: fail and name it.
    missing = days.difference(pd.DatetimeIndex(features["date"].unique()))
    if len(missing):
        shown = ", ".join(str(day.date()) for day in missing[:10]) + (" …" if len(missing) > 10 else "")
        raise dg.Failure(f"no alpha158 rows for {shown}: materialise alpha158_features for these days first")
    no_label = features[["instrument", "date"]].assign(LABEL0=np.nan)
    samples = build_samples(infer_frame(features, no_label), days[0], days[-1], calendar)
    scores = predict(model, samples)
    predictions = pd.DataFrame(
        {"date": samples.dates, "instrument": samples.instruments, "score": scores, "model_version": card["version"]}
    ).sort_values(["date", "instrument"], ignore_index=True)
    rows = store.replace_date_range("predictions", predictions, start, end, key=("date", "instrument"))
    context.log.info(f"predictions {days[0].date()}..{days[-1].date()}: {rows} scores with model {card['version']}")
    return dg.MaterializeResult(
        metadata={
            "rows": rows,
            "trading_days": len(days),
            "instruments": int(predictions["instrument"].nunique()),
            "model_version": card["version"],
            "preview": dg.MetadataValue.md(quality.as_markdown(predictions.sort_values("score", ascending=False), 10)),
        }
    )


def _empty_predictions() -> pd.DataFrame:
    return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "instrument": pd.Series(dtype=str),
                         "score": pd.Series(dtype="float32"), "model_version": pd.Series(dtype=str)})


@dg.asset(
    group_name="serving",
    kinds={"duckdb"},
    partitions_def=WEEKDAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[daily_predictions, labels, test_segment],
    metadata={"dagster/table_name": "ic_daily"},
)
def ic_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per-day IC (Pearson) and Rank IC (Spearman) of score against LABEL0 across
    instruments, for days whose label exists (two trading days later), and the summary
    over the test segment as Qlib's SigAnaRecord reports it (semantics §8)."""
    start, end = window_dates(context)
    store = warehouse.get()
    joined = store.query(
        "SELECT p.date AS datetime, p.instrument, p.score, l.LABEL0 FROM predictions p "
        "JOIN labels l USING (instrument, date) WHERE p.date BETWEEN ? AND ?",
        [start.date(), end.date()],
    )
    joined["datetime"] = pd.to_datetime(joined["datetime"])
    indexed = joined.set_index(["datetime", "instrument"])
    ic, rank_ic = calc_ic(indexed["score"], indexed["LABEL0"])
    pairs = indexed.dropna().groupby(level="datetime").size()
    daily = pd.DataFrame({"date": ic.index, "ic": ic.values, "rank_ic": rank_ic.values,
                          "n": pairs.reindex(ic.index).fillna(0).astype("int64").values}).dropna(subset=["ic"])
    pending = sorted(set(joined["datetime"]) - set(daily["date"]))
    rows = store.replace_date_range("ic_daily", daily, start, end, key=("date",))
    if pending:
        context.log.info(f"{len(pending)} day(s) without an IC yet (label unknown or too few pairs): {[str(d.date()) for d in pending[:5]]}")

    history = store.query("SELECT * FROM ic_daily ORDER BY date")
    history["date"] = pd.to_datetime(history["date"])
    test_start, test_end = segment_bounds(store, "test_segment")
    in_test = history[(history["date"] >= test_start) & (history["date"] <= test_end)].set_index("date")
    summary = ic_summary(in_test["ic"], in_test["rank_ic"]) if len(in_test) > 1 else {}
    metadata: dict[str, object] = {"rows": rows, "days_pending_label": len(pending), "test_segment": f"{test_start.date()}..{test_end.date()}"}
    metadata.update({key: float(value) for key, value in summary.items()})
    if len(in_test) > 1:
        metadata[f"rolling_{ROLLING_IC_DAYS}d_ic_last"] = float(rolling_ic(in_test["ic"], ROLLING_IC_DAYS).iloc[-1])
        metadata["ic_plot"] = _png_markdown(plot_ic(in_test["ic"], in_test["rank_ic"]), "IC")
    return dg.MaterializeResult(metadata=metadata)


class BacktestConfig(dg.Config):
    """The TopkDropoutConfig settings a user edits in the launchpad; defaults are its own (Qlib's YAML)."""

    topk: int = TopkDropoutConfig.topk
    n_drop: int = TopkDropoutConfig.n_drop
    open_cost: float = TopkDropoutConfig.open_cost
    close_cost: float = TopkDropoutConfig.close_cost
    min_cost: float = TopkDropoutConfig.min_cost
    account: float = TopkDropoutConfig.account


@dg.asset(group_name="serving", kinds={"duckdb"}, deps=[daily_predictions, raw_ohlcv, test_segment],
          metadata={"dagster/table_name": "backtest_daily"})
def backtest_report(context: dg.AssetExecutionContext, config: BacktestConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Qlib's TopkDropout strategy over the test segment against an equal-weight benchmark
    of the universe, with Qlib's risk_analysis (sum mode, 238 days a year, semantics §9)."""
    store = warehouse.get()
    test_start, test_end = segment_bounds(store, "test_segment")
    scores = store.query(
        "SELECT date, instrument, score FROM predictions WHERE date BETWEEN ? AND ? ORDER BY date, instrument",
        [test_start.date(), test_end.date()],
    )
    if scores.empty:
        raise dg.Failure(f"no predictions in the test segment {test_start.date()}..{test_end.date()}: materialise daily_predictions first")
    # One trading day before the segment too: the benchmark's first daily return (§9.4)
    # is that day's close to the first test day's close.
    prices = store.query(
        "SELECT date, instrument, close, factor FROM raw_ohlcv WHERE date BETWEEN "
        "coalesce((SELECT max(date) FROM trading_calendar WHERE date < ?), ?) AND ? "
        "AND instrument IN (SELECT DISTINCT instrument FROM universe)",
        [test_start.date(), test_start.date(), test_end.date()],
    )
    for frame in (scores, prices):
        frame["date"] = pd.to_datetime(frame["date"])
    result = run_topk_dropout(scores, prices, TopkDropoutConfig(**config.model_dump()))
    store.replace_table("backtest_daily", result.daily)
    summary = backtest_summary(result)
    context.log.info(f"backtest {test_start.date()}..{test_end.date()}: {summary}")
    flat = {f"{group}.{key}": float(value) for group, values in summary.items() if isinstance(values, dict) for key, value in values.items()}
    flat.update({key: float(value) for key, value in summary.items() if not isinstance(value, dict)})
    return dg.MaterializeResult(metadata={**flat, "equity_curves": _png_markdown(plot_equity(result), "equity")})
