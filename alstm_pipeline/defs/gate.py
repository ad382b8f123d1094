"""The promotion gate as the UI shows it: a blocking check on each alstm_model vintage.

alstm_model decides the gate while it trains (vintages.promotion_gate) and registers the
vintage as promoted or rejected in model_registry; this check reports that decision for
the vintage's partition. It runs as its own step after the materialization, so the UI
dates it after the model it judged (a check inside the asset's step is dated from the
step's start, before the training).
"""

import json

import dagster as dg
import pandas as pd

from alstm_pipeline.defs.model import alstm_model
from alstm_pipeline.defs.partitions import VINTAGES
from alstm_pipeline.defs.resources import WarehouseResource
from alstm_pipeline.warehouse import registry


def _latest_version(context: dg.AssetCheckExecutionContext) -> str | None:
    """The model version the vintage's latest materialization registered."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=alstm_model.key, asset_partitions=[context.partition_key]), limit=1, ascending=False)
    if not records.records:
        return None
    version = records.records[0].asset_materialization.metadata.get("version")
    return None if version is None else str(version.value)


@dg.asset_check(asset=alstm_model, blocking=True, partitions_def=VINTAGES,
                description="validation loss and IC against the vintage in force: a failing vintage is registered "
                            "as rejected and never serves")
def promotion_gate(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    version = _latest_version(context)
    known = registry.read_registry(warehouse.get(context.log.info))
    row = known[known["version"] == version]
    if version is None or row.empty:
        return dg.AssetCheckResult(passed=False, metadata={
            "reason": f"vintage {context.partition_key} has no registered model: materialise alstm_model for it first"})
    row = row.iloc[-1]
    metrics = json.loads(row["metrics"]) if isinstance(row.get("metrics"), str) else {}
    metadata: dict[str, object] = {"version": version, "status": str(row["status"]), "reason": str(row["gate_reason"]),
                                   "valid_loss": float(row["valid_loss"]), "valid_ic": float(row["valid_ic"]),
                                   "in_force": metrics.get("incumbent") or "none"}
    for name in ("incumbent_valid_loss", "incumbent_valid_ic"):
        if metrics.get(name) is not None and not pd.isna(metrics[name]):
            metadata[name.replace("incumbent", "in_force")] = float(metrics[name])
    return dg.AssetCheckResult(passed=row["status"] == "promoted", metadata=metadata)
