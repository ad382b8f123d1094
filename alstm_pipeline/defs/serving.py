"""Serving: each day scored by the vintage in force that day, then IC and the backtest."""


import base64
from dataclasses import asdict

import dagster as dg
import pandas as pd
from pydantic import Field

from alstm_pipeline import feature_sets, quality, vintages
from alstm_pipeline.defs.features import alpha158_features, alpha360_features, labels
from alstm_pipeline.defs.ingest import raw_ohlcv
from alstm_pipeline.defs.model import DEFAULT_EXPERIMENT, TEST_START, alstm_model
from alstm_pipeline.defs.partitions import SCORING_DAYS, WINDOW_LOOKBACK, window_dates
from alstm_pipeline.defs.resources import MarketDataResource, WarehouseResource
from alstm_pipeline.evaluation import (
    TopkDropoutConfig,
    backtest_summary,
    benchmark_returns,
    calc_ic,
    ic_summary,
    plot_equity,
    plot_ic,
    raw_change,
    rolling_ic,
    run_topk_dropout,
)
from alstm_pipeline.evaluation.seeds import seed_benchmark_table, seed_table_markdown
from alstm_pipeline.evaluation.sparklines import described
from alstm_pipeline.sources import SourceDataError
from alstm_pipeline.threads import apply_torch_threads
from alstm_pipeline.warehouse import Warehouse, registry, tables

ROLLING_IC_DAYS = 20
# "No benchmark" (the equal-weight universe), spelled the same in every fix text and the docs.
NO_BENCHMARK_SPELLING = 'benchmark: "" in this config; benchmark: null in a Qlib workflow file'


def _png_markdown(png: bytes, title: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _empty_predictions() -> pd.DataFrame:
    return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "instrument": pd.Series(dtype=str),
                         "score": pd.Series(dtype="float32"), "model_version": pd.Series(dtype=str)})


def _vintage_samples(store: Warehouse, calendar: pd.DatetimeIndex, days: pd.DatetimeIndex, version: str,
                     fs: feature_sets.FeatureSet):
    """The samples of ``days`` as a vintage sees them: normalised with its own statistics."""
    stats = registry.read_normalizer(store, version)
    features = tables.read_model_features(store, fs.table, list(fs.columns), fs.history_start(calendar, days[0]), days[-1])
    missing = days.difference(pd.DatetimeIndex(features["date"].unique()))
    if len(missing):
        raise dg.Failure(f"predictions: no {fs.table} rows for {vintages.days_text(missing)}. "
                         f"Fix: materialise {fs.table} for these days first.", allow_retries=False)
    return fs.inference_samples(features, stats, calendar, days[0], days[-1])


def score_days(store: Warehouse, calendar: pd.DatetimeIndex, days: pd.DatetimeIndex, version: str, registered: pd.Series,
               fs: feature_sets.FeatureSet) -> pd.DataFrame:
    """Scores of every universe row of ``days`` by one vintage (the mean of its seeds);
    ``registered`` is its model_registry row (the checkpoint is checked against its sha256)."""
    from alstm_pipeline.model.checkpoint import load_registered  # torch: with the first scoring step, not at load

    model, _ = load_registered(registered)
    samples = _vintage_samples(store, calendar, days, version, fs)
    frame = pd.DataFrame({"date": samples.dates, "instrument": samples.instruments,
                          "score": fs.predict(model, samples), "model_version": version})
    return frame[frame["date"].isin(days)]


def seed_scores(store: Warehouse, first: pd.Timestamp, last: pd.Timestamp, experiment: str = DEFAULT_EXPERIMENT) -> dict[object, pd.DataFrame]:
    """seed → that seed's own scores over [first, last], from the vintages that served it;
    empty unless those vintages were trained with several seeds (Qlib's 20-seed protocol)."""
    from alstm_pipeline.model import predict_per_seed
    from alstm_pipeline.model.checkpoint import load_registered

    calendar = tables.read_calendar(store)
    known = registry.read_registry(store).set_index("version")
    parts: dict[object, list[pd.DataFrame]] = {}
    for row in tables.vintages_used(store, first, last, experiment).itertuples():
        model, card = load_registered(known.loc[row.model_version])
        if len(card.get("seeds", [])) < 2:
            return {}
        days = calendar[(calendar >= row.first_day) & (calendar <= row.last_day)]
        fs = feature_sets.get(str(known.loc[row.model_version, "feature_set"]))
        samples = _vintage_samples(store, calendar, days, row.model_version, fs)
        for seed, scores in predict_per_seed(model, samples).items():
            parts.setdefault(seed, []).append(pd.DataFrame({"date": samples.dates, "instrument": samples.instruments, "score": scores}))
    return {seed: pd.concat(frames, ignore_index=True) for seed, frames in parts.items()}


EXPERIMENT_HELP = ("the experiment (Qlib's experiment_name) whose vintages score and whose rows of predictions, ic_daily and "
                   "backtest_daily are written; other experiments' rows are untouched. Also the MLflow experiment")


class PredictionsConfig(dg.Config):
    feature_set: str = Field(default=feature_sets.DEFAULT_FEATURE_SET,
                             description='which configuration scores: "alpha158_ts" or "alpha360" (only its vintages serve)')
    experiment: str = Field(default=DEFAULT_EXPERIMENT, description=EXPERIMENT_HELP)


@dg.asset(
    group_name="serving",
    kinds={"duckdb"},
    partitions_def=SCORING_DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # Which vintage scores a day is decided from model_registry at run time (the newest
    # promoted one serving from that day or earlier): every vintage is a possible parent.
    deps=[dg.AssetDep(alpha158_features, partition_mapping=WINDOW_LOOKBACK.mapping()),
          dg.AssetDep(alstm_model, partition_mapping=dg.AllPartitionMapping()),
          # Either feature table can feed the scores (config feature_set): Alpha158's 20-day
          # windows read back, an Alpha360 row is the day's own (its lags are columns).
          dg.AssetDep(alpha360_features, partition_mapping=dg.TimeWindowPartitionMapping())],
    metadata={"dagster/table_name": "predictions"},
)
def predictions(context: dg.AssetExecutionContext, config: PredictionsConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Score of every universe instrument on each day from its 20-day window ending that
    day (§6, §7.3), by the newest promoted vintage that serves from that day or earlier
    (so it was trained only on earlier days). Re-running a day reproduces its scores
    whatever was trained since; a day no vintage may score is left unscored and named."""
    try:
        fs = feature_sets.get(config.feature_set)
    except ValueError as error:
        raise dg.Failure(f"predictions: {error}", allow_retries=False) from None
    apply_torch_threads()  # ALSTM_PIPELINE_TORCH_THREADS: scoring shares the machine too
    start, end = window_dates(context)
    store = warehouse.get(context.log.info)
    calendar = tables.read_calendar(store)
    days = calendar[(calendar >= start) & (calendar <= end)]
    known = feature_sets.of_feature_set(registry.read_registry(store, config.experiment), fs.name)
    chosen = vintages.serving_versions(days, known)
    unscored = chosen[chosen.isna()].index
    parts = [_empty_predictions()]
    for version, group in chosen.dropna().groupby(chosen.dropna()):
        registered = known.loc[known["version"] == version].iloc[0]
        parts.append(score_days(store, calendar, pd.DatetimeIndex(group.index), str(version), registered, fs))
    scored = pd.concat(parts, ignore_index=True).sort_values(["date", "instrument"], ignore_index=True)
    scored["score"] = scored["score"].astype("float32")
    rows = tables.write_predictions(store, scored, start, end, config.experiment)
    if len(unscored):
        context.log.warning(f"predictions: no promoted {fs.name} vintage of experiment {config.experiment!r} may score {vintages.days_text(unscored)} "
                            "(every vintage serves from a later day); these days stay unscored")
    used = scored.groupby("model_version")["date"].agg(["min", "max", "nunique"]).reset_index()
    used.columns = ["model_version", "first_day", "last_day", "days"]
    context.log.info(f"predictions {start.date()}..{end.date()}: {rows} scores from {len(used)} vintage(s)")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows,
        "trading_days": len(days),
        "days_without_vintage": len(unscored),
        "feature_set": fs.name,
        "feature_table": fs.table,
        "experiment": config.experiment,
        "vintages": dg.MetadataValue.md(quality.as_markdown(used)),
    })


class ReportConfig(dg.Config):
    start: str = Field(default=TEST_START, description="first day of the evaluation (out-of-sample) period")
    end: str = Field(default="", description="last day (empty: the last day with scores)")
    experiment: str = Field(default=DEFAULT_EXPERIMENT, description=EXPERIMENT_HELP)


def _period(store: Warehouse, config: ReportConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    calendar = tables.read_calendar(store)
    return pd.Timestamp(config.start), pd.Timestamp(config.end) if config.end else calendar[-1]


def vintage_report(store: Warehouse, start: pd.Timestamp, end: pd.Timestamp,
                   experiment: str = DEFAULT_EXPERIMENT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(vintages that scored [start, end] in ``experiment`` with their windows, scored days
    whose vintage was trained through that day or later — must be empty)."""
    used = tables.vintages_used(store, start, end, experiment)
    known = registry.read_registry(store)
    if used.empty or known.empty:
        return used, pd.DataFrame(columns=["model_version", "first_day", "trained_through"])
    table = used.merge(known[["version", "mode", "trained_through", "status"]], left_on="model_version",
                       right_on="version", how="left").drop(columns="version")
    leaking = table[~(table["trained_through"] < table["first_day"])]
    return table, leaking


def _vintage_metadata(context, table: pd.DataFrame, leaking: pd.DataFrame) -> dict[str, object]:
    if len(leaking):
        context.log.error(f"vintages trained on days they scored: {leaking['model_version'].tolist()}")
    return {"vintages_used": len(table), "vintages": dg.MetadataValue.md(quality.as_markdown(table)),
            "vintages_trained_on_scored_days": len(leaking)}


@dg.asset(
    group_name="serving",
    kinds={"duckdb"},
    partitions_def=SCORING_DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[predictions, labels],
    metadata={"dagster/table_name": "ic_daily"},
)
def ic_daily(context: dg.AssetExecutionContext, config: ReportConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per-day IC (Pearson) and Rank IC (Spearman) of score against LABEL0 across
    instruments, for days whose label exists (two trading days later), and the summary
    over the evaluation period as Qlib's SigAnaRecord reports it (semantics §8)."""
    start, end = window_dates(context)
    store = warehouse.get(context.log.info)
    indexed = tables.read_scores_and_labels(store, start, end, config.experiment).set_index(["datetime", "instrument"])
    ic, rank_ic = calc_ic(indexed["score"], indexed["LABEL0"])
    pairs = indexed.dropna().groupby(level="datetime").size()
    daily = pd.DataFrame({"date": ic.index, "ic": ic.values, "rank_ic": rank_ic.values,
                          "n": pairs.reindex(ic.index).fillna(0).astype("int64").values}).dropna(subset=["ic"])
    pending = sorted(set(indexed.index.get_level_values("datetime")) - set(daily["date"]))
    rows = tables.write_ic_daily(store, daily, start, end, config.experiment)
    if pending:
        context.log.info(f"{len(pending)} day(s) without an IC yet (label unknown or too few pairs): {vintages.days_text(pending)}")

    first, last = _period(store, config)
    history = tables.read_ic_daily(store, first, last, config.experiment).set_index("date")
    metadata: dict[str, object] = {"dagster/row_count": rows, "days_pending_label": len(pending),
                                   "evaluation_period": f"{first.date()}..{last.date()}", "experiment": config.experiment}
    if len(history) > 1:
        metadata.update({key: float(value) for key, value in ic_summary(history["ic"], history["rank_ic"]).items()})
        metadata[f"rolling_{ROLLING_IC_DAYS}d_ic_curve"] = described(rolling_ic(history["ic"], ROLLING_IC_DAYS))
        metadata[f"rolling_{ROLLING_IC_DAYS}d_ic_last"] = float(rolling_ic(history["ic"], ROLLING_IC_DAYS).iloc[-1])
    table, leaking = vintage_report(store, first, last, config.experiment)
    metadata.update(_vintage_metadata(context, table, leaking))
    if len(history) > 1:
        _track(context, "log_signal_analysis", ic_summary(history["ic"], history["rank_ic"]), warehouse,
               config.experiment, table, pngs={"ic.png": plot_ic(history["ic"], history["rank_ic"])})
    return dg.MaterializeResult(metadata=metadata)


class BacktestConfig(ReportConfig):
    """The TopkDropoutConfig settings a user edits in the launchpad; defaults are its own
    (US equities: whole shares, no price limit, deals at the close, equal-weight benchmark)."""

    topk: int = TopkDropoutConfig.topk
    n_drop: int = TopkDropoutConfig.n_drop
    open_cost: float = TopkDropoutConfig.open_cost
    close_cost: float = TopkDropoutConfig.close_cost
    min_cost: float = TopkDropoutConfig.min_cost
    account: float = TopkDropoutConfig.account
    risk_degree: float = TopkDropoutConfig.risk_degree
    trade_unit: float = Field(default=TopkDropoutConfig.trade_unit, description="lot size in raw shares (Qlib CN: 100); ≤ 0 = fractional shares")
    limit_threshold: float = Field(default=0.0, description="daily price limit on the raw change (Qlib CN: 0.095); ≤ 0 = no limit")
    forbid_all_trade_at_limit: bool = TopkDropoutConfig.forbid_all_trade_at_limit
    deal_price: str = Field(default=TopkDropoutConfig.deal_price, description='"close" or "open"')
    benchmark: str = Field(default="", description='"" = equal-weight universe; else an instrument code of the source (e.g. ^GSPC), or codes separated by commas (averaged)')

    def topk_dropout(self) -> TopkDropoutConfig:
        names = ("topk", "n_drop", "open_cost", "close_cost", "min_cost", "account", "risk_degree",
                 "forbid_all_trade_at_limit", "deal_price")
        try:
            return TopkDropoutConfig(**{name: getattr(self, name) for name in names},
                                     trade_unit=self.trade_unit if self.trade_unit > 0 else None,
                                     limit_threshold=self.limit_threshold if self.limit_threshold > 0 else None)
        except ValueError as error:
            raise dg.Failure(f"backtest_daily: {error}. Fix: correct the backtest_daily config.", allow_retries=False) from None

    def benchmark_codes(self) -> tuple[str, ...]:
        return tuple(code.strip() for code in self.benchmark.split(",") if code.strip())


def _benchmark_returns(market_data: MarketDataResource, prices: pd.DataFrame, codes: tuple[str, ...]) -> pd.Series | None:
    """The benchmark's daily returns over the prices' days: None (equal-weight universe),
    else the codes' closes from raw_ohlcv, or from the source where raw_ohlcv lacks them
    (raw_ohlcv ingests universe members only, and an index such as ^GSPC is rarely one)."""
    if not codes:
        return None
    days = pd.DatetimeIndex(sorted(prices["date"].unique()))
    stored = prices[prices["instrument"].isin(codes)]
    missing = [code for code in codes if code not in set(stored["instrument"])]
    parts = [stored[["date", "instrument", "close"]]]
    if missing:
        try:
            bars = market_data.open().read(start=days[0], end=days[-1], instruments=missing)
        except (SourceDataError, OSError) as error:
            raise dg.Failure(f"backtest_daily: cannot read benchmark {missing} from the source: {error}", allow_retries=False) from None
        absent = sorted(set(missing) - set(bars["instrument"]))
        if absent:
            raise dg.Failure(f"backtest_daily: benchmark {absent} has no bars in the source for {days[0].date()}..{days[-1].date()}. "
                             f"Fix: set benchmark to an instrument code of the source, or to none for the equal-weight universe "
                             f"({NO_BENCHMARK_SPELLING}).",
                             allow_retries=False)
        parts.append(bars[["date", "instrument", "close"]])
    rows = pd.concat(parts, ignore_index=True)
    rows = rows[pd.to_datetime(rows["date"]).isin(days)]
    try:
        returns = benchmark_returns(rows, list(codes))
    except ValueError as error:
        raise dg.Failure(f"backtest_daily: {error} (Fix: set benchmark to a code of the source, or to none: {NO_BENCHMARK_SPELLING})",
                         allow_retries=False) from None
    return returns.reindex(days).fillna(0.0)


def equity_sparklines(daily: pd.DataFrame) -> dict[str, str]:
    """The equity plot's curves as one-line charts the asset page shows inline: cumulative
    (summed, as the plot and risk_analysis) strategy, benchmark and excess returns."""
    after_cost = daily["return"] - daily["cost"]
    return {"cumulative_return_with_cost": described(after_cost.cumsum()),
            "cumulative_benchmark_return": described(daily["bench"].cumsum()),
            "cumulative_excess_return_with_cost": described((after_cost - daily["bench"]).cumsum())}


def _model_versions(table: pd.DataFrame) -> str | None:
    return ",".join(table["model_version"].astype(str)) if len(table) else None


@dg.asset(group_name="serving", kinds={"duckdb"}, deps=[predictions, ic_daily, raw_ohlcv],
          metadata={"dagster/table_name": "backtest_daily"})
def backtest_daily(context: dg.AssetExecutionContext, config: BacktestConfig, warehouse: WarehouseResource,
                   market_data: MarketDataResource) -> dg.MaterializeResult:
    """Qlib's TopkDropout strategy over the evaluation period against the benchmark (an
    instrument code, or the equal-weight universe), with Qlib's risk_analysis (sum mode,
    238 days a year, §9). Writes backtest_daily, backtest_positions (holdings after each
    close) and backtest_trades (deals) together; also the period's IC plot (images live on
    this unpartitioned asset, once per run)."""
    store = warehouse.get(context.log.info)
    first, last = _period(store, config)
    scores = tables.read_predictions(store, first, last, config.experiment)[["date", "instrument", "score"]]
    if scores.empty:
        raise dg.Failure(f"backtest_daily: no predictions of experiment {config.experiment!r} in {first.date()}..{last.date()}. "
                         "Fix: materialise alstm_model and predictions for this period first.", allow_retries=False)
    trading = config.topk_dropout()
    codes = config.benchmark_codes()
    prices = tables.read_prices(store, first, last, with_open=trading.deal_price == "open", benchmark=codes)
    bench = _benchmark_returns(market_data, prices, codes)
    # A benchmark outside the universe is never traded (it has no scores); a universe member
    # named as benchmark stays tradable.
    untraded = set(codes) - set(scores["instrument"])
    market = prices[~prices["instrument"].isin(untraded)].reset_index(drop=True)
    if trading.limit_threshold is not None:
        market = market.assign(change=raw_change(market))  # raw_ohlcv stores no change field
    try:
        result = run_topk_dropout(scores, market, trading, benchmark=bench)
    except ValueError as error:
        raise dg.Failure(f"backtest_daily: {error}", allow_retries=False) from None
    written = tables.write_backtest(store, result.daily, result.positions, result.trades, config.experiment)
    summary = backtest_summary(result)
    context.log.info(f"backtest {first.date()}..{last.date()}: {summary}")
    flat = {f"{group}.{key}": float(value) for group, values in summary.items() if isinstance(values, dict) for key, value in values.items()}
    flat.update({key: float(value) for key, value in summary.items() if not isinstance(value, dict)})
    equity = plot_equity(result)
    metadata: dict[str, object] = {**equity_sparklines(result.daily), "dagster/row_count": written[tables.BACKTEST_TABLE],
                                   "position_rows": written[tables.POSITIONS_TABLE], "trade_rows": written[tables.TRADES_TABLE],
                                   "benchmark": ",".join(codes) or "equal-weight universe", "experiment": config.experiment, **flat,
                                   "equity_curves": _png_markdown(equity, "equity")}
    pngs = {"equity.png": equity}
    ic = tables.read_ic_daily(store, first, last, config.experiment).set_index("date")
    if len(ic) > 1:
        pngs["ic.png"] = plot_ic(ic["ic"], ic["rank_ic"])
        metadata[f"rolling_{ROLLING_IC_DAYS}d_ic_curve"] = described(rolling_ic(ic["ic"], ROLLING_IC_DAYS))
        metadata["ic_plot"] = _png_markdown(pngs["ic.png"], "IC")
    table, leaking = vintage_report(store, first, last, config.experiment)
    metadata.update(_vintage_metadata(context, table, leaking))
    per_seed = seed_scores(store, first, last, config.experiment)
    if per_seed:
        # Qlib's benchmark table: each seed's own IC and backtest, mean ± std, and the ensemble served.
        label = tables.read_labels(store, first, last)
        seeds_table = seed_benchmark_table(per_seed, label, market, trading, benchmark=bench)
        metadata["seed_table"] = dg.MetadataValue.md(seed_table_markdown(seeds_table))
    _track(context, "log_backtest", summary, warehouse, config.experiment, table, pngs=pngs,
           params={**asdict(trading), "benchmark": ",".join(codes) or "equal-weight", "start": str(first.date()), "end": str(last.date())})
    return dg.MaterializeResult(metadata=metadata)


def _track(context, log: str, summary, warehouse: WarehouseResource, experiment: str, used: pd.DataFrame, **extra) -> None:
    """One MLflow log (``tracking.<log>``) for this materialisation when the mlflow extra is
    installed. A failing tracking server costs the log, not the materialisation, whose
    tables are already written."""
    from alstm_pipeline import tracking  # mlflow's import takes seconds: only when logging

    if not tracking.enabled():
        return
    try:
        run_id = getattr(tracking, log)(summary, dagster_run_id=context.run.run_id, home=warehouse.home, experiment=experiment,
                     model_version=_model_versions(used), **extra)
        context.log.info(f"MLflow run {run_id} in experiment {experiment!r} ({tracking.tracking_uri(warehouse.home)})")
    except Exception as error:  # noqa: BLE001 - any tracking error is reported, never fatal
        context.log.warning(f"MLflow logging failed, the results are stored anyway: {error}")
