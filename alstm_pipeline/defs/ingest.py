"""Ingest: the universe, raw bars per weekday, and the trading calendar."""

import dagster as dg
import pandas as pd

from alstm_pipeline import quality
from alstm_pipeline.defs.partitions import WEEKDAYS, window_dates
from alstm_pipeline.defs.resources import MarketDataResource, WarehouseResource
from alstm_pipeline.runner import RANGE_END_TAG, RANGE_START_TAG
from alstm_pipeline.sources import RAW_COLUMNS, SourceDataError, SourceReport, peek_date_bounds
from alstm_pipeline.warehouse import WarehouseError, tables

PARTITION_TAG = "dagster/partition"

RAW_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("instrument", "VARCHAR", description="ticker as the source spells it"),
        dg.TableColumn("date", "DATE", description="trading day"),
        dg.TableColumn("open", "REAL", description="open × factor (Qlib's adjusted price)"),
        dg.TableColumn("high", "REAL", description="high × factor"),
        dg.TableColumn("low", "REAL", description="low × factor"),
        dg.TableColumn("close", "REAL", description="close × factor"),
        dg.TableColumn("volume", "REAL", description="shares traded ÷ factor"),
        dg.TableColumn("vwap", "REAL", description="vwap × factor; NaN when the source has none"),
        dg.TableColumn("factor", "REAL", description="adjustment factor = adj_close / close"),
    ]
)

UNIVERSE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("instrument", "VARCHAR"),
        dg.TableColumn("start", "DATE", description="first day of a membership span (inclusive)"),
        dg.TableColumn("end", "DATE", description="last day of a membership span (inclusive)"),
    ]
)


@dg.asset(
    group_name="ingest",
    kinds={"duckdb"},
    metadata={"dagster/column_schema": UNIVERSE_SCHEMA, "dagster/table_name": "universe"},
)
def universe(
    context: dg.AssetExecutionContext, market_data: MarketDataResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Instruments and their membership spans (Qlib's instruments/<market>.txt): the
    ALSTM_PIPELINE_UNIVERSE file, or every instrument of the source over its whole history.
    The source is validated first, over the run's days (its whole history in a run without
    days): when raw_ohlcv would fail on bad input, nothing at all is written."""
    first, last = _run_days(context)
    try:
        source = market_data.open()
        spans = market_data.universe(source).spans.sort_values(["instrument", "start"]).reset_index(drop=True)
        unknown = sorted(set(spans["instrument"]) - set(source.instruments()))
        # The read raw_ohlcv makes, made here first: its report fails this step, before any write.
        source.read(start=first, end=last, instruments=spans["instrument"].unique())
    except (SourceDataError, OSError, ValueError) as error:
        raise _source_failure(error, "universe") from None
    if unknown:
        context.log.warning(f"{len(unknown)} universe instruments are not in the source: {unknown[:10]}")
    tables.write_universe(warehouse.get(context.log.info), spans)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(spans),
            "instruments": spans["instrument"].nunique(),
            "spans": len(spans),
            "source": str(source.path),
            "source_kind": source.kind,
            "missing_from_source": len(unknown),
        }
    )


def _run_days(context: dg.AssetExecutionContext) -> tuple[str | None, str | None]:
    """First and last weekday partition of the run (a range, one partition, or none: None)."""
    tags = context.run.tags
    if RANGE_START_TAG in tags:
        return tags[RANGE_START_TAG], tags.get(RANGE_END_TAG)
    single = tags.get(PARTITION_TAG)  # a weekday (or a vintage's first day: the same shape)
    return (single, single) if single else (None, None)


def _source_failure(error: Exception, asset: str = "raw_ohlcv") -> dg.Failure:
    """A failure whose message is the source's own report (every bad file at once) and whose
    metadata carries the problems as a table, so the UI shows them without a traceback."""
    metadata: dict[str, object] = {}
    if isinstance(error, SourceReport):
        metadata = {
            "problems_total": error.total,
            "bad_files": len(error.bad_files),
            "files_checked": error.files_checked,
            "problems": dg.MetadataValue.md(quality.as_markdown(error.problems, limit=50)),
            "problems_per_file": dg.MetadataValue.md(quality.as_markdown(error.counts, limit=50)),
        }
    return dg.Failure(description=f"{asset}: the source has problems, nothing was written.\n{error}", metadata=metadata,
                      allow_retries=False)


RAW_CHECKS = [
    dg.AssetCheckSpec("prices_ordered", asset="raw_ohlcv", description="low ≤ open, close ≤ high"),
    dg.AssetCheckSpec(
        "instrument_count_stable",
        asset="raw_ohlcv",
        description=f"no day keeps fewer than {quality.MIN_INSTRUMENT_RATIO:.0%} of the previous day's instruments",
    ),
    dg.AssetCheckSpec(
        "no_adjusted_price_jumps",
        asset="raw_ohlcv",
        description=f"no adjusted close moves more than {quality.MAX_DAILY_PRICE_RATIO:g}× in a day (a split missing from the factor)",
    ),
]


@dg.asset(
    group_name="ingest",
    kinds={"duckdb"},
    partitions_def=WEEKDAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[universe],
    check_specs=RAW_CHECKS,
    metadata={"dagster/column_schema": RAW_SCHEMA, "dagster/table_name": "raw_ohlcv"},
)
def raw_ohlcv(
    context: dg.AssetExecutionContext, market_data: MarketDataResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Daily bars of the universe's instruments in Qlib's adjusted convention, one weekday
    per partition (a market holiday is an empty partition). Each instrument keeps its whole
    history, membership spans only cut rows later, because Alpha158 uses history from
    before an instrument joins the index (semantics §1.4)."""
    start, end = window_dates(context)
    store = warehouse.get(context.log.info)
    try:
        members = tables.universe_instruments(store)
    except WarehouseError:
        raise dg.Failure(
            description="raw_ohlcv reads the universe table, which does not exist yet in this home. "
            "Fix: select '+raw_ohlcv' (universe and raw_ohlcv) for the first run.", allow_retries=False
        ) from None
    try:
        source = market_data.open()
        bars = source.read(start=start, end=end, instruments=members)[list(RAW_COLUMNS)]
    except (SourceDataError, OSError) as error:
        raise _source_failure(error) from None
    previous = tables.previous_day_instruments(store, start)
    rows = tables.write_raw(store, bars, start, end)

    days = bars["date"].nunique()
    context.log.info(f"raw_ohlcv {start.date()}..{end.date()}: {rows} rows, {days} trading days from {source.path}")
    metadata: dict[str, object] = {
        "dagster/row_count": rows,
        "instruments": int(bars["instrument"].nunique()),
        "trading_days": int(days),
        "date_range": f"{start.date()}..{end.date()}",
        "source": str(source.path),
    }
    beyond = _bars_after_last_partition(source.path, end)
    if beyond is not None:
        context.log.warning(beyond)
        metadata["not_ingested"] = beyond
    if rows == 0:
        metadata["note"] = "no trading in this range (market holiday or before/after the data): 0 rows"
    else:
        metadata["first_trading_day"] = str(bars["date"].min().date())
        metadata["last_trading_day"] = str(bars["date"].max().date())
    return dg.MaterializeResult(metadata=metadata, check_results=_raw_checks(previous, bars))


def _bars_after_last_partition(path, end: pd.Timestamp) -> str | None:
    """A warning when this run wrote the last partition and the source goes on past it
    (ALSTM_PIPELINE_END set before the source's last day): those bars are not ingested."""
    last_key = WEEKDAYS.get_last_partition_key()
    if last_key is None or end < pd.Timestamp(last_key):
        return None
    last_day = peek_date_bounds(path)[1]
    if last_day is None or pd.Timestamp(last_day) <= end:
        return None
    return (f"the source has bars up to {last_day}, after the last partition {last_key}: they are not ingested "
            "(ALSTM_PIPELINE_END ends the partitions there; unset it to follow the source)")


def _raw_checks(previous: pd.DataFrame, bars: pd.DataFrame) -> list[dg.AssetCheckResult]:
    """The checks of the bars just written; ``previous`` is the last stored day before
    them (instrument, date, close), so the first day of a range has a day to compare with."""
    keys = pd.concat([previous[["instrument", "date"]], bars[["instrument", "date"]]])
    counts = keys.groupby("date")["instrument"].nunique()
    counts.index = pd.to_datetime(counts.index)
    findings = {
        "prices_ordered": quality.price_order_violations(bars),
        "instrument_count_stable": quality.instrument_count_collapses(counts.sort_index()),
        "no_adjusted_price_jumps": quality.adjusted_price_jumps(bars, previous),
    }
    results = []
    for name, offending in findings.items():
        metadata: dict[str, object] = {"offending_rows": len(offending)}
        if len(offending):
            metadata["rows"] = dg.MetadataValue.md(quality.as_markdown(offending))
        results.append(dg.AssetCheckResult(check_name=name, passed=offending.empty, metadata=metadata))
    return results


@dg.asset(
    group_name="ingest",
    kinds={"duckdb"},
    deps=[raw_ohlcv],
    metadata={"dagster/table_name": "trading_calendar"},
)
def trading_calendar(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The sorted distinct dates present in raw_ohlcv (all instruments): the market
    calendar every window counts in (semantics §1.1)."""
    first, last, days = tables.refresh_calendar(warehouse.get(context.log.info))
    return dg.MaterializeResult(metadata={"dagster/row_count": days, "first_day": first, "last_day": last})


@dg.asset_check(asset=trading_calendar, description="the newest ingested day is at most a long weekend behind the last partition")
def raw_data_fresh(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Fails when the source stopped updating: the last ingested day trails the last
    weekday partition (today in live mode) by more than a long weekend."""
    last = tables.last_ingested_day(warehouse.get())
    keys = WEEKDAYS.get_partition_keys()
    expected = pd.Timestamp(keys[-1]) if keys else pd.Timestamp.today().normalize()
    behind = quality.stale_days(last, expected)
    return dg.AssetCheckResult(
        passed=behind == 0, severity=dg.AssetCheckSeverity.WARN,
        metadata={"last_ingested_day": str(last.date()) if last is not None else "none",
                  "last_partition": str(expected.date()), "weekdays_beyond_allowance": behind},
    )
