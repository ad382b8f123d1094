"""Ingest: the universe, raw bars per weekday, and the trading calendar."""

import dagster as dg
import pandas as pd

from alstm_pipeline import quality
from alstm_pipeline.defs.partitions import WEEKDAYS, window_dates
from alstm_pipeline.defs.resources import MarketDataResource, WarehouseResource
from alstm_pipeline.sources import RAW_COLUMNS

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
    ALSTM_PIPELINE_UNIVERSE file, or every instrument of the source over its whole history."""
    source = market_data.open()
    spans = market_data.universe(source).spans.sort_values(["instrument", "start"]).reset_index(drop=True)
    unknown = sorted(set(spans["instrument"]) - set(source.instruments()))
    if unknown:
        context.log.warning(f"{len(unknown)} universe instruments are not in the source: {unknown[:10]}")
    warehouse.get().replace_table("universe", spans)
    return dg.MaterializeResult(
        metadata={
            "instruments": spans["instrument"].nunique(),
            "spans": len(spans),
            "source": str(source.path),
            "source_kind": source.kind,
            "missing_from_source": len(unknown),
        }
    )


RAW_CHECKS = [
    dg.AssetCheckSpec("no_duplicate_rows", asset="raw_ohlcv", description="one row per (instrument, date)"),
    dg.AssetCheckSpec("prices_ordered", asset="raw_ohlcv", description="low ≤ open, close ≤ high"),
    dg.AssetCheckSpec("prices_positive", asset="raw_ohlcv", description="open, high, low, close > 0"),
    dg.AssetCheckSpec("volume_non_negative", asset="raw_ohlcv", description="volume ≥ 0"),
    dg.AssetCheckSpec(
        "instrument_count_stable",
        asset="raw_ohlcv",
        description=f"no day keeps fewer than {quality.MIN_INSTRUMENT_RATIO:.0%} of the previous day's instruments",
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
    store = warehouse.get()
    members = store.query("SELECT DISTINCT instrument FROM universe")["instrument"].tolist()
    source = market_data.open()
    bars = source.read(start=start, end=end, instruments=members)[list(RAW_COLUMNS)]
    rows = store.replace_date_range("raw_ohlcv", bars, start, end)

    days = bars["date"].nunique()
    context.log.info(f"raw_ohlcv {start.date()}..{end.date()}: {rows} rows, {days} trading days from {source.path}")
    metadata: dict[str, object] = {
        "rows": rows,
        "instruments": int(bars["instrument"].nunique()),
        "trading_days": int(days),
        "date_range": f"{start.date()}..{end.date()}",
        "source": str(source.path),
    }
    if rows == 0:
        metadata["note"] = "no trading in this range (market holiday or before/after the data): 0 rows"
    else:
        metadata["first_trading_day"] = str(bars["date"].min().date())
        metadata["last_trading_day"] = str(bars["date"].max().date())
        metadata["preview"] = dg.MetadataValue.md(quality.as_markdown(bars, limit=10))
    return dg.MaterializeResult(metadata=metadata, check_results=_raw_checks(store, bars, start))


def _raw_checks(store, bars: pd.DataFrame, start: pd.Timestamp) -> list[dg.AssetCheckResult]:
    previous_day = store.query(
        "SELECT instrument, date FROM raw_ohlcv WHERE date = (SELECT max(date) FROM raw_ohlcv WHERE date < ?)",
        [start.date()],
    )
    counts = pd.concat([previous_day, bars[["instrument", "date"]]]).groupby("date")["instrument"].nunique()
    counts.index = pd.to_datetime(counts.index)
    findings = {
        "no_duplicate_rows": quality.duplicate_rows(bars),
        "prices_ordered": quality.price_order_violations(bars),
        "prices_positive": quality.non_positive_prices(bars),
        "volume_non_negative": quality.negative_volume(bars),
        "instrument_count_stable": quality.instrument_count_collapses(counts.sort_index()),
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
def trading_calendar(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The sorted distinct dates present in raw_ohlcv (all instruments): the market
    calendar every window counts in (semantics §1.1)."""
    store = warehouse.get()
    with store.connect() as con:
        con.execute("CREATE OR REPLACE VIEW trading_calendar AS SELECT DISTINCT date FROM raw_ohlcv ORDER BY date")
        first, last, days = con.execute("SELECT min(date), max(date), count(*) FROM trading_calendar").fetchone()
    return dg.MaterializeResult(
        metadata={"trading_days": int(days), "first_day": str(first), "last_day": str(last)}
    )
