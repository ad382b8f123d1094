"""Features: Alpha158, Alpha360 and the label, per weekday, from raw_ohlcv in the warehouse."""

import dagster as dg
import pandas as pd

from alstm_pipeline import quality
from alstm_pipeline.defs.ingest import raw_ohlcv
from alstm_pipeline.defs.partitions import ALPHA360_LOOKBACK, FEATURE_LOOKBACK, LABEL_LOOKAHEAD, WEEKDAYS, window_dates
from alstm_pipeline.defs.resources import WarehouseResource
from alstm_pipeline.features import (
    ALPHA158_NAMES,
    ALPHA360_NAMES,
    FEATURE_INPUTS,
    compute_alpha158,
    compute_alpha360,
    compute_label,
)
from alstm_pipeline.warehouse import tables

# A column may be NaN on up to this share of a partition's rows: warm-up rows of new
# listings (ROC60 needs 60 rows) and suspended days are NaN in Qlib too; more than this
# means missing inputs, not warm-up.
MAX_NAN_SHARE = 0.25

ALPHA158_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("instrument", "VARCHAR"),
        dg.TableColumn("date", "DATE"),
        *[
            dg.TableColumn(name, "REAL", description=f"Alpha158 {name}, reads {', '.join(FEATURE_INPUTS[name])}")
            for name in ALPHA158_NAMES
        ],
    ]
)
ALPHA158_LINEAGE = dg.TableColumnLineage(
    deps_by_column={
        name: [dg.TableColumnDep(asset_key=raw_ohlcv.key, column_name=field) for field in FEATURE_INPUTS[name]]
        for name in ALPHA158_NAMES
    }
)
LABEL_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("instrument", "VARCHAR"),
        dg.TableColumn("date", "DATE"),
        dg.TableColumn("LABEL0", "REAL", description="Ref($close,-2)/Ref($close,-1)-1: close-to-close return from D+1 to D+2"),
    ]
)


def _in_range(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return frame[(frame["date"] >= start) & (frame["date"] <= end)].reset_index(drop=True)


def _feature_checks(asset: str, exempt: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("no_infinite_values", asset=asset, description="no ±inf in any feature"),
        dg.AssetCheckSpec(
            "nan_share_within_bounds",
            asset=asset,
            description=f"each column NaN on at most {MAX_NAN_SHARE:.0%} of rows ({exempt} exempt when the source has no vwap)",
        ),
        dg.AssetCheckSpec(
            "row_count_matches_raw",
            asset=asset,
            description="rows = raw rows of the days + NaN rows of instruments inside their span that did not trade",
        ),
    ]


FEATURE_CHECKS = _feature_checks("alpha158_features", "VWAP0")
ALPHA360_CHECKS = _feature_checks("alpha360_features", "VWAP59..VWAP0")
_ALPHA360_FIELDS = {"CLOSE": "close", "OPEN": "open", "HIGH": "high", "LOW": "low", "VWAP": "vwap", "VOLUME": "volume"}


def _alpha360_inputs(name: str) -> list[str]:
    field = _ALPHA360_FIELDS[name.rstrip("0123456789")]
    return [field] if field == "volume" else sorted({field, "close"})


ALPHA360_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("instrument", "VARCHAR"),
        dg.TableColumn("date", "DATE"),
        *[
            dg.TableColumn(name, "REAL", description=f"Alpha360 {name}, reads {', '.join(_alpha360_inputs(name))}")
            for name in ALPHA360_NAMES
        ],
    ]
)
ALPHA360_LINEAGE = dg.TableColumnLineage(
    deps_by_column={
        name: [dg.TableColumnDep(asset_key=raw_ohlcv.key, column_name=field) for field in _alpha360_inputs(name)]
        for name in ALPHA360_NAMES
    }
)


def _feature_result(context, store, table: str, names, features: pd.DataFrame, raw: pd.DataFrame,
                    start: pd.Timestamp, end: pd.Timestamp, vwap_columns: list[str]) -> dg.MaterializeResult:
    """Write a feature table's days and report its checks (shared by Alpha158 and Alpha360)."""
    rows = tables.write_features(store, table, features, start, end)
    context.log.info(f"{table} {start.date()}..{end.date()}: {rows} rows from {len(raw)} raw rows read")

    infinite = quality.infinite_rows(features, names)
    # The VWAP columns are NaN everywhere when the source has no vwap, exactly as in Qlib (§1.3).
    shares = quality.nan_shares(features, names).drop(vwap_columns if raw["vwap"].isna().all() else [])
    too_sparse = shares[shares > MAX_NAN_SHARE]
    traded = _in_range(raw, start, end)
    suspended_rows, missing_rows = quality.feature_row_coverage(features, traded)
    checks = [
        dg.AssetCheckResult(
            check_name="no_infinite_values",
            passed=infinite.empty,
            metadata={"rows_with_inf": len(infinite), "offending_rows": dg.MetadataValue.md(quality.as_markdown(infinite))},
        ),
        dg.AssetCheckResult(
            check_name="nan_share_within_bounds",
            passed=too_sparse.empty,
            metadata={
                "worst_column": str(shares.idxmax()) if shares.notna().any() else "none",
                "worst_share": float(shares.max()) if shares.notna().any() else 0.0,
                "columns_over_bound": ", ".join(too_sparse.index),
            },
        ),
        dg.AssetCheckResult(
            check_name="row_count_matches_raw",
            passed=missing_rows == 0,
            metadata={"feature_rows": rows, "raw_rows": len(traded), "suspended_rows": suspended_rows,
                      "raw_rows_without_features": missing_rows},
        ),
    ]
    metadata: dict[str, object] = {
        "dagster/row_count": rows,
        "instruments": int(features["instrument"].nunique()),
        "date_range": f"{start.date()}..{end.date()}",
        "raw_rows_read": len(raw),
        "suspended_rows": suspended_rows,
    }
    if start == end:
        # A range run stores its metadata once per partition (DESIGN.md, event log): a
        # preview is worth its 1.5 KB on a single day, not on thousands.
        metadata["preview"] = dg.MetadataValue.md(quality.as_markdown(features[["instrument", "date", *names[:8]]], 10))
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


@dg.asset(
    group_name="features",
    kinds={"duckdb"},
    partitions_def=WEEKDAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep(raw_ohlcv, partition_mapping=FEATURE_LOOKBACK.mapping()), "trading_calendar"],
    check_specs=FEATURE_CHECKS,
    metadata={
        "dagster/column_schema": ALPHA158_SCHEMA,
        "dagster/column_lineage": ALPHA158_LINEAGE,
        "dagster/table_name": "alpha158_features",
    },
)
def alpha158_features(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Qlib's 158 Alpha158 features per (instrument, trading day): reads the raw days of the
    range plus the 60 trading days before it (the longest window), never the whole history."""
    start, end = window_dates(context)
    store = warehouse.get(context.log.info)
    raw, spans = tables.read_raw_with_margin(store, start, end, FEATURE_LOOKBACK.trading_days, 0)
    features = _in_range(compute_alpha158(raw, first_dates=spans["first"], last_dates=spans["last"]), start, end)
    return _feature_result(context, store, "alpha158_features", ALPHA158_NAMES, features, raw, start, end, ["VWAP0"])


@dg.asset(
    group_name="features",
    kinds={"duckdb"},
    partitions_def=WEEKDAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep(raw_ohlcv, partition_mapping=ALPHA360_LOOKBACK.mapping()), "trading_calendar"],
    check_specs=ALPHA360_CHECKS,
    metadata={
        "dagster/column_schema": ALPHA360_SCHEMA,
        "dagster/column_lineage": ALPHA360_LINEAGE,
        "dagster/table_name": "alpha360_features",
    },
)
def alpha360_features(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Qlib's 360 Alpha360 features (the last 60 days of each price and the volume, as
    ratios; docs/alpha360.md) per (instrument, trading day): reads the raw days of the
    range plus the 59 trading days before it, never the whole history. Used only by the
    Alpha360 configuration (alstm_model / predictions with feature_set "alpha360")."""
    start, end = window_dates(context)
    store = warehouse.get(context.log.info)
    raw, spans = tables.read_raw_with_margin(store, start, end, ALPHA360_LOOKBACK.trading_days, 0)
    features = _in_range(compute_alpha360(raw, first_dates=spans["first"], last_dates=spans["last"]), start, end)
    vwap = [name for name in ALPHA360_NAMES if name.startswith("VWAP")]
    return _feature_result(context, store, "alpha360_features", ALPHA360_NAMES, features, raw, start, end, vwap)


@dg.asset(
    group_name="features",
    kinds={"duckdb"},
    partitions_def=WEEKDAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep(raw_ohlcv, partition_mapping=LABEL_LOOKAHEAD.mapping()), "trading_calendar"],
    metadata={"dagster/column_schema": LABEL_SCHEMA, "dagster/table_name": "labels"},
)
def labels(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """LABEL0 of each (instrument, day) = the return from the close of D+1 to the close of
    D+2 (semantics §4). Until D+2 is ingested the label of D is NaN, as Qlib gives at the
    end of its data; the daily job re-materialises the day once its look-ahead arrives."""
    start, end = window_dates(context)
    store = warehouse.get(context.log.info)
    raw, spans = tables.read_raw_with_margin(store, start, end, 0, LABEL_LOOKAHEAD.trading_days)
    label = _in_range(compute_label(raw, first_dates=spans["first"], last_dates=spans["last"]), start, end)
    rows = tables.write_labels(store, label, start, end)
    last_ingested = tables.last_ingested_day(store)
    pending = tables.trading_days_after(store, end) < LABEL_LOOKAHEAD.trading_days
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "labelled_rows": int(label["LABEL0"].notna().sum()),
            "date_range": f"{start.date()}..{end.date()}",
            "lookahead_complete": not pending,
            "last_ingested_day": str(last_ingested.date()) if last_ingested is not None else "none",
        }
    )
