"""Features: Alpha158 and the label, per weekday, from raw_ohlcv in the warehouse."""

import dagster as dg
import pandas as pd

from alstm_pipeline import quality
from alstm_pipeline.defs.ingest import raw_ohlcv
from alstm_pipeline.defs.partitions import FEATURE_LOOKBACK, LABEL_LOOKAHEAD, WEEKDAYS, window_dates
from alstm_pipeline.defs.resources import WarehouseResource
from alstm_pipeline.features import ALPHA158_NAMES, FEATURE_INPUTS, compute_alpha158, compute_label
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


FEATURE_CHECKS = [
    dg.AssetCheckSpec("no_infinite_values", asset="alpha158_features", description="no ±inf in any feature"),
    dg.AssetCheckSpec(
        "nan_share_within_bounds",
        asset="alpha158_features",
        description=f"each column NaN on at most {MAX_NAN_SHARE:.0%} of rows (VWAP0 exempt when the source has no vwap)",
    ),
    dg.AssetCheckSpec(
        "row_count_matches_raw",
        asset="alpha158_features",
        description="rows = raw rows of the days + NaN rows of instruments inside their span that did not trade",
    ),
]


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
    rows = tables.write_features(store, "alpha158_features", features, start, end)
    context.log.info(f"alpha158_features {start.date()}..{end.date()}: {rows} rows from {len(raw)} raw rows read")

    infinite = quality.infinite_rows(features, ALPHA158_NAMES)
    # VWAP0 is NaN everywhere when the source has no vwap, exactly as in Qlib (§1.3).
    shares = quality.nan_shares(features, ALPHA158_NAMES).drop(["VWAP0"] if raw["vwap"].isna().all() else [])
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
                "worst_column": str(shares.idxmax()),
                "worst_share": float(shares.max()),
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
        metadata["preview"] = dg.MetadataValue.md(quality.as_markdown(features[["instrument", "date", *ALPHA158_NAMES[:8]]], 10))
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


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
