"""The model registry: every trained vintage, its windows, its normaliser, its status.

A checkpoint folder becomes a model only when its row here commits: the folder is
written under a staging name and renamed first, so a crash before the commit leaves an
unregistered folder that nothing reads (serving looks models up here, never on disk).
The normaliser statistics a vintage was trained with are stored beside it in the same
transaction: a model is always applied with its own statistics.

Every vintage belongs to an *experiment* (Qlib's experiment name): the main job's is
``main`` (``main_alpha360`` for the Alpha360 configuration), a workflow file's is its
``experiment_name``. A vintage serves, and is superseded, only inside its experiment, so a
run with another configuration never changes the scores another experiment has served.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pandas as pd

from alstm_pipeline.warehouse.store import Warehouse

REGISTRY_TABLE = "model_registry"
DEFAULT_FEATURE_SET = "alpha158_ts"
DEFAULT_EXPERIMENT = "main"  # the main job's experiment; rows written before experiments existed are its
NORMALIZER_TABLE = "model_normalizer"


def main_experiment(feature_set: str) -> str:
    """The experiment the main job (``alstm-pipeline run``) uses for a configuration."""
    return DEFAULT_EXPERIMENT if feature_set == DEFAULT_FEATURE_SET else f"{DEFAULT_EXPERIMENT}_{feature_set}"

_REGISTRY_DDL = f"""
CREATE TABLE IF NOT EXISTS {REGISTRY_TABLE} (
    version VARCHAR PRIMARY KEY,
    vintage VARCHAR NOT NULL,          -- partition key of alstm_model = serves_from
    feature_set VARCHAR NOT NULL DEFAULT 'alpha158_ts',  -- alpha158_ts | alpha360 (feature_sets.py)
    experiment VARCHAR NOT NULL DEFAULT 'main',           -- the namespace it serves in (module doc)
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
    metrics VARCHAR,                   -- JSON: anything else worth keeping
    config VARCHAR                     -- JSON: the training configuration (same config = same vintage)
)
"""

DATE_COLUMNS = ("serves_from", "trained_through", "train_start", "train_end", "valid_start", "valid_end",
                "fit_start", "fit_end", "handler_start")


# Registries written before Alpha360 was wired hold only Alpha158 vintages: the added
# column's default labels their rows correctly.
_ADD_FEATURE_SET = (f"ALTER TABLE {REGISTRY_TABLE} ADD COLUMN IF NOT EXISTS feature_set VARCHAR "
                    f"DEFAULT '{DEFAULT_FEATURE_SET}'")
# Registries written before experiments: each row belongs to the main experiment of its
# configuration (``main_experiment``); labelled right after the column is added.
_ADD_EXPERIMENT = f"ALTER TABLE {REGISTRY_TABLE} ADD COLUMN IF NOT EXISTS experiment VARCHAR"
_LABEL_EXPERIMENT = (f"UPDATE {REGISTRY_TABLE} SET experiment = CASE WHEN feature_set = ? THEN ? ELSE ? || '_' || feature_set END "
                     "WHERE experiment IS NULL")
_ADD_CONFIG = f"ALTER TABLE {REGISTRY_TABLE} ADD COLUMN IF NOT EXISTS config VARCHAR"


def _ensure(store: Warehouse) -> None:
    """Create or migrate the registry's tables, one transaction per statement: DuckDB
    refuses to change rows of a table that the same transaction altered. Idempotent, and
    a crash between the statements leaves rows that the next call (and read_registry)
    labels the same way."""
    statements = [
        (_REGISTRY_DDL, []),
        (_ADD_FEATURE_SET, []),
        (_ADD_EXPERIMENT, []),
        (_LABEL_EXPERIMENT, [DEFAULT_FEATURE_SET, DEFAULT_EXPERIMENT, DEFAULT_EXPERIMENT]),
        (_ADD_CONFIG, []),
        (f"CREATE TABLE IF NOT EXISTS {NORMALIZER_TABLE} (version VARCHAR, feature VARCHAR, "
         "median DOUBLE, scale DOUBLE, PRIMARY KEY (version, feature))", []),
    ]
    for sql, params in statements:
        with store.transaction() as con:
            con.execute(sql, params)


def register_vintage(store: Warehouse, row: Mapping[str, object], normalizer: pd.DataFrame) -> None:
    """Insert a trained vintage and its normaliser statistics in one transaction.

    A promoted row supersedes earlier promoted rows of the same vintage, feature set and
    experiment (a re-trained vintage replaces itself — the asset allows that only for a
    vintage that never served, or when asked to replace; older vintages keep serving their
    own days; other experiments and configurations are untouched)."""
    record = dict(row)
    record.setdefault("feature_set", DEFAULT_FEATURE_SET)
    record.setdefault("experiment", DEFAULT_EXPERIMENT)
    record["metrics"] = json.dumps(record.get("metrics") or {}, default=str)
    frame = pd.DataFrame([record])
    for column in DATE_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).dt.date
    stats = normalizer.assign(version=record["version"])[["version", "feature", "median", "scale"]]
    _ensure(store)
    with store.transaction() as con:
        if record["status"] == "promoted":
            con.execute(
                f"UPDATE {REGISTRY_TABLE} SET status = 'superseded' "
                "WHERE vintage = ? AND feature_set = ? AND experiment = ? AND status = 'promoted'",
                [record["vintage"], record["feature_set"], record["experiment"]],
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


def read_registry(store: Warehouse, experiment: str | None = None) -> pd.DataFrame:
    """Every registered vintage (of ``experiment`` when given), oldest first (empty with the
    columns when none)."""
    if not store.table_exists(REGISTRY_TABLE):
        return pd.DataFrame(columns=["version", "vintage", "feature_set", "experiment", "mode", "serves_from", "trained_through",
                                     "created_at", "status", "checkpoint", "valid_loss", "valid_ic", "gate_reason", "config"])
    frame = store.query(f"SELECT * FROM {REGISTRY_TABLE} ORDER BY serves_from, created_at")
    # A registry not written since a column was added (read-only here): the column's default.
    if "feature_set" not in frame:
        frame.insert(2, "feature_set", DEFAULT_FEATURE_SET)
    if "experiment" not in frame:  # as _ensure will label them
        frame.insert(3, "experiment", frame["feature_set"].map(main_experiment))
    frame["experiment"] = frame["experiment"].fillna(frame["feature_set"].map(main_experiment))
    if "config" not in frame:
        frame["config"] = None
    for column in DATE_COLUMNS:
        frame[column] = pd.to_datetime(frame[column])
    if experiment is not None:
        frame = frame[frame["experiment"] == experiment].reset_index(drop=True)
    return frame


def read_normalizer(store: Warehouse, version: str) -> pd.DataFrame:
    """The normaliser statistics a vintage was trained with (feature, median, scale)."""
    return store.query(
        f"SELECT feature, median, scale FROM {NORMALIZER_TABLE} WHERE version = ? ORDER BY rowid", [version]
    )
