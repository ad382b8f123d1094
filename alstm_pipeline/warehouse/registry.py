"""The model registry: every trained vintage, its windows, its normaliser, its status.

A checkpoint folder becomes a model only when its row here commits: the folder is
written under a staging name and renamed first, so a crash before the commit leaves an
unregistered folder that nothing reads (serving looks models up here, never on disk).
The normaliser statistics a vintage was trained with are stored beside it in the same
transaction: a model is always applied with its own statistics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pandas as pd

from alstm_pipeline.warehouse.store import Warehouse

REGISTRY_TABLE = "model_registry"
DEFAULT_FEATURE_SET = "alpha158_ts"
NORMALIZER_TABLE = "model_normalizer"

_REGISTRY_DDL = f"""
CREATE TABLE IF NOT EXISTS {REGISTRY_TABLE} (
    version VARCHAR PRIMARY KEY,
    vintage VARCHAR NOT NULL,          -- partition key of alstm_model = serves_from
    feature_set VARCHAR NOT NULL DEFAULT 'alpha158_ts',  -- alpha158_ts | alpha360 (feature_sets.py)
    mode VARCHAR NOT NULL,             -- fixed | rolling
    serves_from DATE NOT NULL,
    trained_through DATE NOT NULL,
    train_start DATE, train_end DATE,
    valid_start DATE, valid_end DATE,
    fit_start DATE, fit_end DATE,
    handler_start DATE,
    created_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,           -- promoted | rejected | superseded
    gate_reason VARCHAR,
    checkpoint VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    valid_loss DOUBLE,
    valid_ic DOUBLE,
    best_epoch INTEGER,
    epochs_run INTEGER,
    device VARCHAR,
    seeds VARCHAR,
    warm_start_from VARCHAR,
    metrics VARCHAR                    -- JSON: anything else worth keeping
)
"""

DATE_COLUMNS = ("serves_from", "trained_through", "train_start", "train_end", "valid_start", "valid_end",
                "fit_start", "fit_end", "handler_start")


# Registries written before Alpha360 was wired hold only Alpha158 vintages: the added
# column's default labels their rows correctly.
_ADD_FEATURE_SET = (f"ALTER TABLE {REGISTRY_TABLE} ADD COLUMN IF NOT EXISTS feature_set VARCHAR "
                    f"DEFAULT '{DEFAULT_FEATURE_SET}'")


def _ensure(con) -> None:
    con.execute(_REGISTRY_DDL)
    con.execute(_ADD_FEATURE_SET)
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {NORMALIZER_TABLE} (version VARCHAR, feature VARCHAR, "
        "median DOUBLE, scale DOUBLE, PRIMARY KEY (version, feature))"
    )


def register_vintage(store: Warehouse, row: Mapping[str, object], normalizer: pd.DataFrame) -> None:
    """Insert a trained vintage and its normaliser statistics in one transaction.

    A promoted row supersedes earlier promoted rows of the same vintage and feature set (a
    re-trained vintage replaces itself; older vintages keep serving their own days; the
    other configuration's vintage of the same day keeps serving that configuration)."""
    record = dict(row)
    record.setdefault("feature_set", DEFAULT_FEATURE_SET)
    record["metrics"] = json.dumps(record.get("metrics") or {}, default=str)
    frame = pd.DataFrame([record])
    for column in DATE_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).dt.date
    stats = normalizer.assign(version=record["version"])[["version", "feature", "median", "scale"]]
    with store.transaction() as con:
        _ensure(con)
        if record["status"] == "promoted":
            con.execute(
                f"UPDATE {REGISTRY_TABLE} SET status = 'superseded' "
                "WHERE vintage = ? AND feature_set = ? AND status = 'promoted'",
                [record["vintage"], record["feature_set"]],
            )
        con.execute(f"DELETE FROM {REGISTRY_TABLE} WHERE version = ?", [record["version"]])
        con.execute(f"DELETE FROM {NORMALIZER_TABLE} WHERE version = ?", [record["version"]])
        con.register("incoming_row", frame)
        names = ", ".join(frame.columns)
        con.execute(f"INSERT INTO {REGISTRY_TABLE} ({names}) SELECT {names} FROM incoming_row")
        con.unregister("incoming_row")
        con.register("incoming_stats", stats)
        con.execute(f"INSERT INTO {NORMALIZER_TABLE} SELECT version, feature, median, scale FROM incoming_stats")
        con.unregister("incoming_stats")


def read_registry(store: Warehouse) -> pd.DataFrame:
    """Every registered vintage, oldest first (empty with the columns when none)."""
    if not store.table_exists(REGISTRY_TABLE):
        return pd.DataFrame(columns=["version", "vintage", "feature_set", "mode", "serves_from", "trained_through", "created_at",
                                     "status", "checkpoint", "valid_loss", "valid_ic", "gate_reason"])
    frame = store.query(f"SELECT * FROM {REGISTRY_TABLE} ORDER BY serves_from, created_at")
    if "feature_set" not in frame:  # a registry not written since the column was added (read-only here)
        frame.insert(2, "feature_set", DEFAULT_FEATURE_SET)
    for column in DATE_COLUMNS:
        frame[column] = pd.to_datetime(frame[column])
    return frame


def read_normalizer(store: Warehouse, version: str) -> pd.DataFrame:
    """The normaliser statistics a vintage was trained with (feature, median, scale)."""
    return store.query(
        f"SELECT feature, median, scale FROM {NORMALIZER_TABLE} WHERE version = ? ORDER BY rowid", [version]
    )
