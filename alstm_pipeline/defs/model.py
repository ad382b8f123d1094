"""Model: one ALSTM vintage per partition, registered in model_registry behind a promotion gate.

A vintage partition is keyed by the first day the model may score (vintages.py). Its
windows are Qlib's fixed split (the benchmark default) or RollingGen's sliding windows;
its normaliser is fitted on its own fit window and stored with it; its checkpoint
becomes visible only when its registry row commits.
"""


import base64
import json

import dagster as dg
import pandas as pd
from pydantic import Field

from alstm_pipeline import feature_sets, quality, vintage_pool, vintages
from alstm_pipeline.defs.executor import training_op_tags
from alstm_pipeline.evaluation.sparklines import described
from alstm_pipeline.defs.features import alpha158_features, alpha360_features, labels
from alstm_pipeline.defs.partitions import VINTAGES
from alstm_pipeline.defs.resources import ModelStoreResource, WarehouseResource
from alstm_pipeline.settings import load_settings
from alstm_pipeline.warehouse import registry, tables

# Qlib's benchmark split (workflow_config_alstm_Alpha158.yaml adapted to the sample's years).
TEST_START = "2017-01-01"
# The experiment of runs that name none: the main job's namespace in the warehouse (its own
# vintages, scores, IC and backtest) and its MLflow experiment (registry.py).
DEFAULT_EXPERIMENT = registry.DEFAULT_EXPERIMENT
_SETTINGS = load_settings()


class AlstmModelConfig(dg.Config):
    """Windows, hyper-parameters and promotion gate of one vintage (launchpad form)."""

    feature_set: str = Field(default=feature_sets.DEFAULT_FEATURE_SET, description='"alpha158_ts" (Alpha158, 20-day windows) or "alpha360" (Alpha360 flat rows, pytorch_alstm.py)')
    mode: str = Field(default="fixed", description='"fixed": the split below (Qlib benchmark); "rolling": RollingGen windows ending before the vintage')
    train_start: str = Field(default="2008-01-01", description="fixed: first train day")
    train_end: str = Field(default="2014-12-31", description="fixed: last train day")
    valid_start: str = Field(default="2015-01-01", description="fixed: first valid day")
    valid_end: str = Field(default="2016-12-31", description="fixed: last valid day (the vintage's trained_through)")
    fit_start: str = Field(default="2008-01-01", description="fixed: first day of the RobustZScoreNorm fit window")
    fit_end: str = Field(default="2014-12-31", description="fixed: last day of the fit window")
    handler_start: str = Field(default="2008-01-01", description="fixed: first day any window may read (Qlib's handler start_time, §6)")
    train_days: int = Field(default=_SETTINGS.train_days, description="rolling: train window in trading days")
    valid_days: int = Field(default=_SETTINGS.valid_days, description="rolling: valid window in trading days")
    trunc_days: int = Field(default=_SETTINGS.trunc_days, description="rolling: trading days between the last sample and the first scored day")
    profile: str = Field(default="quick", description='"quick" (≤ 20 epochs, for a CPU) or "benchmark" (Qlib: 200 epochs, early stop 10)')
    n_epochs: int = Field(default=0, description="override the profile's epoch cap (0 = profile's)")
    early_stop: int = Field(default=0, description="override the profile's patience (0 = profile's)")
    lr: float = 1e-3
    batch_size: int = 800
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    rnn_type: str = "GRU"
    seed: int = Field(default=0, description="seed for init and shuffling; -1 = unseeded (ignored when seeds is set)")
    seeds: list[int] = Field(default=[], description="Qlib's benchmark protocol: one model per seed (up to 20), trained together; "
                                                      "the served score is their mean. Empty = the single seed above")
    device: str = Field(default="auto", description='"auto" (CUDA when present), "cpu" or "cuda"')
    warm_start: bool = Field(default=False, description="start from the weights of the vintage in force (never a later one)")
    gate_max_loss_increase: float = Field(default=0.05, description="gate: reject if validation loss > in-force loss × (1 + this)")
    gate_max_ic_drop: float = Field(default=0.02, description="gate: reject if validation IC < in-force IC − this")
    experiment: str = Field(default=DEFAULT_EXPERIMENT, description="the experiment this vintage belongs to (Qlib's experiment_name): "
                                                                     "it serves only that experiment's days; also the MLflow experiment")
    replace_vintage: bool = Field(default=False, description="retrain this vintage although the experiment's promoted one has scored "
                                                             "days with another configuration; those days are named and re-scored")
    candidates: str = Field(default="", description="folder of candidates trained in parallel (vintage_pool): register this vintage's "
                                                    "candidate instead of training; earlier candidates of the folder must be registered first")

    def recorded(self) -> str:
        """The configuration as stored in model_registry.config: same text, same vintage.
        (Where the vintage serves, where a parallel candidate was trained and the gate's
        thresholds do not change the model.)"""
        skipped = {"experiment", "replace_vintage", "candidates", "gate_max_loss_increase", "gate_max_ic_drop"}
        return json.dumps({k: v for k, v in self.model_dump().items() if k not in skipped}, sort_keys=True)

    def train_config(self):
        """The pure training config: the named profile with this run's overrides."""
        overrides = {
            "lr": self.lr, "batch_size": self.batch_size, "hidden_size": self.hidden_size,
            "num_layers": self.num_layers, "dropout": self.dropout, "rnn_type": self.rnn_type,
            "seed": None if self.seed < 0 else self.seed, "device": self.device,
        }
        if self.seeds:
            overrides.update({"seeds": tuple(self.seeds), "seed": self.seeds[0]})
        if self.n_epochs:
            overrides["n_epochs"] = self.n_epochs
        if self.early_stop:
            overrides["early_stop"] = self.early_stop
        return feature_sets.get(self.feature_set).train_config(self.profile, **overrides)

    def plan(self, key: str, calendar: pd.DatetimeIndex) -> vintages.VintagePlan:
        if self.mode == "rolling":
            return vintages.rolling_plan(key, calendar, self.train_days, self.valid_days, self.trunc_days)
        if self.mode != "fixed":
            raise dg.Failure(f'alstm_model: mode must be "fixed" or "rolling", not {self.mode!r}')
        return vintages.fixed_plan(key, calendar, (self.train_start, self.train_end), (self.valid_start, self.valid_end),
                                   (self.fit_start, self.fit_end), self.handler_start)


def _gpu_name(device: str) -> str:
    if not device.startswith("cuda"):
        return "none"
    import torch

    return torch.cuda.get_device_name(torch.device(device))


def loss_sparklines(card: dict) -> dict[str, str]:
    """Train and valid loss per epoch as one-line charts (the first seed's when several)."""
    run = card["per_seed"][0]
    curves = {"train_loss_by_epoch": run.get("train_losses"), "valid_loss_by_epoch": run.get("valid_losses")}
    return {name: described(values, digits=5) for name, values in curves.items() if values}


def _png_markdown(png: bytes, title: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


@dg.asset(
    group_name="model",
    kinds={"pytorch"},
    partitions_def=VINTAGES,
    # A vintage reads the days of its own windows, which only its plan knows: the mapping
    # from vintages to days is "all" in the graph, and the windows are in its metadata.
    deps=[dg.AssetDep(alpha158_features, partition_mapping=dg.AllPartitionMapping()),
          dg.AssetDep(labels, partition_mapping=dg.AllPartitionMapping()),
          # Either feature table can feed a vintage (config feature_set; its metadata says which).
          dg.AssetDep(alpha360_features, partition_mapping=dg.AllPartitionMapping()), "trading_calendar", "universe"],
    # The check is partitioned like the asset, so the UI shows which vintage it judged.
    check_specs=[dg.AssetCheckSpec(
        "promotion_gate", asset="alstm_model", blocking=True, partitions_def=VINTAGES,
        description="validation loss and IC against the vintage in force: a failing vintage is registered as rejected and never serves",
    )],
    metadata={"dagster/table_name": "model_registry"},
    op_tags=training_op_tags(),  # a GPU node under the k8s executor when asked (defs/executor.py)
)
def alstm_model(
    context: dg.AssetExecutionContext, config: AlstmModelConfig, warehouse: WarehouseResource, model_store: ModelStoreResource
) -> dg.MaterializeResult:
    """Qlib's ALSTM trained for one vintage (semantics §7.2): windows from the vintage's
    plan, early stopping on its valid window, saved as a safetensors checkpoint and
    registered in model_registry with its normaliser; the promotion gate decides whether
    it serves."""
    # torch loads with the first model step, not with the definitions (they load in < 3 s).
    from alstm_pipeline.model import plot_losses
    from alstm_pipeline.model.checkpoint import load_registered
    from alstm_pipeline.model.publishing import publish_checkpoint, remove_orphaned_checkpoints
    from alstm_pipeline.model.ensemble import members_of
    from alstm_pipeline.threads import apply_torch_threads

    context.log.info(f"torch uses {apply_torch_threads()} CPU thread(s) (ALSTM_PIPELINE_TORCH_THREADS)")

    key = context.partition_key
    try:
        fs = feature_sets.get(config.feature_set)
    except ValueError as error:
        raise dg.Failure(f"alstm_model {key}: {error}", allow_retries=False) from None
    store = warehouse.get(context.log.info)
    calendar = tables.read_calendar(store)
    try:
        plan = config.plan(key, calendar)
    except vintages.VintageError as error:
        raise dg.Failure(f"alstm_model {key}: {error}") from None
    every_vintage = registry.read_registry(store)
    # Folders a killed run published but never registered (model/publishing.py): this run
    # holds the writer lock, so none is another run's work in progress.
    for orphan in remove_orphaned_checkpoints(model_store.path(), every_vintage["checkpoint"]):
        context.log.warning(f"removed {orphan}: a checkpoint folder no model_registry row names (left by a killed run)")
    mine = every_vintage[every_vintage["experiment"] == config.experiment].reset_index(drop=True)
    others = sorted(set(mine.loc[mine["status"] == "promoted", "feature_set"]) - {fs.name})
    if others:
        # One configuration per experiment: predictions of the experiment are keyed by day,
        # so two configurations there would overwrite each other's served scores.
        raise dg.Failure(f"alstm_model {key}: experiment {config.experiment!r} serves the {', '.join(others)} configuration; "
                         f"Fix: train {fs.name} in its own experiment (e.g. {registry.main_experiment(fs.name)!r}).",
                         allow_retries=False)
    known = feature_sets.of_feature_set(mine, fs.name)
    existing = _promoted_vintage(known, key)
    replaced_days = pd.DatetimeIndex([])
    if existing is not None:
        served = tables.served_days(store, str(existing["version"]), config.experiment)
        unknown = not isinstance(existing["config"], str)  # registered before configurations were recorded
        if not config.replace_vintage and (existing["config"] == config.recorded() or (unknown and len(served))):
            return _kept(context, existing, served, config.experiment)
        if len(served) and not config.replace_vintage:
            raise dg.Failure(_served_message(key, existing, served, config), allow_retries=False)
        replaced_days = served
    features, label, stats, train, valid = vintage_pool.vintage_samples(store, fs, calendar, plan)
    context.log.info(f"alstm_model {key} ({fs.name} from {fs.table}): train {plan.train_start}..{plan.train_end} ({len(train)} samples), "
                     f"valid {plan.valid_start}..{plan.valid_end} ({len(valid)}), trained through {plan.trained_through}")

    incumbent = vintages.in_force(known, key)
    # The vintage in force is read once: warm start and the gate both use it.
    incumbent_model = load_registered(incumbent)[0] if incumbent is not None else None
    settings = config.train_config()
    initials, warm_from = None, None
    if config.warm_start and incumbent is not None:
        if pd.Timestamp(incumbent["trained_through"]) <= pd.Timestamp(plan.trained_through):
            members = [model for _, model in members_of(incumbent_model)]
            # Seed k starts from the incumbent's k-th member (its first when it had fewer).
            initials = [members[k] if k < len(members) else members[0] for k in range(len(settings.seed_list))]
            warm_from = str(incumbent["version"])
            context.log.info(f"warm start from {warm_from}")
        else:
            context.log.warning(f"warm start skipped: the vintage in force {incumbent['version']} saw data after {plan.trained_through}")
    if config.candidates:
        predictor, card = _candidate(config, known, fs, plan, settings)
    else:
        result = fs.train(train, valid, settings, log=context.log.info, initial_models=initials)
        predictor, card = result.predictor, result.card(data_ranges=vintage_pool.card_ranges(fs, plan))

    candidate_loss, candidate_ic = fs.validation_figures(fs.predict(predictor, valid), valid)
    incumbent_loss = incumbent_ic = None
    if incumbent is not None:
        old_valid = fs.validation_samples(features, label, calendar, registry.read_normalizer(store, incumbent["version"]),
                                          plan.valid_start, plan.valid_end)
        incumbent_loss, incumbent_ic = fs.validation_figures(fs.predict(incumbent_model, old_valid), old_valid)
    decision = vintages.promotion_gate(candidate_loss, candidate_ic, incumbent_loss, incumbent_ic,
                                       config.gate_max_loss_increase, config.gate_max_ic_drop)

    # The folder is written under a staging name and renamed; the registry row makes it a
    # model. A crash before the commit leaves an unregistered folder that nothing reads.
    final = publish_checkpoint(predictor, model_store.path(), card)
    per_seed = pd.DataFrame(card["per_seed"])
    png = plot_losses(card)
    (final / "losses.png").write_bytes(png)
    saved_card = json.loads((final / "card.json").read_text())
    registry.register_vintage(store, {
        "version": card["version"], "vintage": key, "feature_set": fs.name, "experiment": config.experiment,
        "config": config.recorded(), **plan.to_dict(),
        "created_at": pd.Timestamp(card["created_utc"]).tz_convert(None),
        "status": "promoted" if decision.passed else "rejected", "gate_reason": decision.reason,
        "checkpoint": str(final), "sha256": saved_card["weights_sha256"],
        "valid_loss": candidate_loss, "valid_ic": candidate_ic, "best_epoch": per_seed["best_epoch"].iloc[0],
        "epochs_run": int(per_seed["epochs_run"].max()), "device": card["device"], "seeds": json.dumps(card["seeds"]),
        "warm_start_from": warm_from, "metrics": {"best_valid_loss": per_seed["best_valid_loss"].tolist(),
                                                   "incumbent": None if incumbent is None else str(incumbent["version"]),
                                                   "incumbent_valid_loss": incumbent_loss, "incumbent_valid_ic": incumbent_ic},
    }, stats)
    context.log.info(f"alstm_model {key}: {card['version']} {'promoted' if decision.passed else 'REJECTED'}: {decision.reason}")
    replaced: dict[str, object] = {}
    if decision.passed and len(replaced_days):
        context.log.warning(f"alstm_model {key}: replaced {existing['version']} in experiment {config.experiment!r} "
                            f"(replace_vintage): its {len(replaced_days)} scored day(s) change when re-scored: "
                            f"{vintages.days_text(replaced_days)}")
        replaced = {"replaced_version": str(existing["version"]), "replaced_days": len(replaced_days),
                    "replaced_day_list": vintages.days_text(replaced_days, limit=len(replaced_days))}
    _track_training(context, card, png, plan, decision, warehouse, config.experiment)
    gate_metadata = {"version": card["version"], "reason": decision.reason, "valid_loss": candidate_loss, "valid_ic": candidate_ic,
                     "in_force": "none" if incumbent is None else str(incumbent["version"])}
    if incumbent_loss is not None:
        gate_metadata.update({"in_force_valid_loss": incumbent_loss, "in_force_valid_ic": incumbent_ic})
    return dg.MaterializeResult(
        metadata={
            "version": card["version"],
            # Sparklines first: the asset page shows text inline, the PNG behind a link.
            **loss_sparklines(card),
            "feature_set": fs.name,
            "feature_table": fs.table,
            "status": "promoted" if decision.passed else "rejected",
            "trained_through": plan.trained_through,
            "windows": dg.MetadataValue.json(plan.to_dict()),
            "checkpoint": dg.MetadataValue.path(str(final)),
            "device": card["device"],
            "gpu": _gpu_name(card["device"]),
            "engine": card["engine"],
            "seeds": str(card["seeds"]),
            "per_seed_training": dg.MetadataValue.md(quality.as_markdown(
                per_seed[["seed", "best_epoch", "best_valid_loss", "epochs_run", "stopped_early"]], limit=25)),
            "best_valid_loss": float(per_seed["best_valid_loss"].mean()),
            "epochs_run": int(per_seed["epochs_run"].max()),
            "wall_seconds": card["wall_seconds"],
            "warm_start_from": warm_from or "none",
            "card": dg.MetadataValue.json(json.loads(json.dumps(card, default=str))),
            "loss_curves": _png_markdown(png, "losses"),
            "experiment": config.experiment,
            **replaced,
        },
        check_results=[dg.AssetCheckResult(check_name="promotion_gate", passed=decision.passed, metadata=gate_metadata)],
        data_version=dg.DataVersion(card["version"]),
    )


def _candidate(config: AlstmModelConfig, known: pd.DataFrame, fs, plan, settings):
    """The vintage's candidate trained in parallel (vintage_pool), checked, and only when
    every earlier candidate of its folder is registered: the gate must see what the
    sequential run would have seen."""
    if config.warm_start:
        raise dg.Failure("alstm_model: candidates are trained from scratch; warm_start needs the vintage registered "
                         "just before and cannot be combined with candidates", allow_retries=False)
    waiting = vintage_pool.unregistered_before(config.candidates, plan.serves_from, set(known["version"].astype(str)))
    if waiting:
        raise dg.Failure(f"alstm_model {plan.serves_from}: register the earlier candidates {waiting} first "
                         "(vintages register in order, so each gate compares with the vintage in force the sequential run would)")
    try:
        return vintage_pool.load_candidate(config.candidates, fs, plan, settings)
    except vintage_pool.CandidateError as error:
        raise dg.Failure(str(error), allow_retries=False) from None


def _promoted_vintage(known: pd.DataFrame, key: str) -> pd.Series | None:
    """The experiment's promoted vintage ``key`` of this configuration, or None."""
    rows = known[(known["vintage"] == key) & (known["status"] == "promoted")]
    return None if rows.empty else rows.sort_values("created_at").iloc[-1]


def _served_message(key: str, existing: pd.Series, served: pd.DatetimeIndex, config: AlstmModelConfig) -> str:
    before = json.loads(existing["config"]) if isinstance(existing["config"], str) else {}
    now = json.loads(config.recorded())
    changed = [f"{name} {before.get(name)!r} → {now.get(name)!r}" for name in sorted(now) if before.get(name) != now.get(name)]
    what = ("configuration changes: " + "; ".join(changed)) if before else "its configuration was not recorded"
    return (f"alstm_model {key}: experiment {config.experiment!r} already serves vintage {key} ({existing['version']}), "
            f"which scored {len(served)} day(s) ({vintages.days_text(served)}); {what}. A vintage that has served is "
            "immutable: retraining it would change those days' scores. Fix: run this configuration in its own experiment "
            "(config experiment; experiment_name in a Qlib workflow file), or set replace_vintage: true "
            "(alstm-pipeline run --replace-vintage) to retrain it and re-score those days.")


def _kept(context: dg.AssetExecutionContext, existing: pd.Series, served: pd.DatetimeIndex, experiment: str) -> dg.MaterializeResult:
    """The experiment already has this vintage with this configuration (or one that has served
    under an unrecorded one): it is kept, not retrained, so its days keep their scores."""
    reason = (f"kept {existing['version']}: experiment {experiment!r} already has vintage {context.partition_key} with this "
              f"configuration ({len(served)} day(s) scored); set replace_vintage: true to retrain it"
              if isinstance(existing["config"], str) else
              f"kept {existing['version']}: it has scored {len(served)} day(s) in experiment {experiment!r} and its configuration "
              "was not recorded; set replace_vintage: true to retrain it")
    context.log.info(f"alstm_model {context.partition_key}: {reason}")
    return dg.MaterializeResult(
        metadata={"version": str(existing["version"]), "status": "kept", "experiment": experiment, "reason": reason,
                  "feature_set": str(existing["feature_set"]), "trained_through": str(pd.Timestamp(existing["trained_through"]).date()),
                  "checkpoint": dg.MetadataValue.path(str(existing["checkpoint"]))},
        check_results=[dg.AssetCheckResult(check_name="promotion_gate", passed=True,
                                           metadata={"reason": reason, "in_force": str(existing["version"])})],
        data_version=dg.DataVersion(str(existing["version"])),
    )


def _track_training(context, card, png: bytes, plan, decision, warehouse: WarehouseResource, experiment: str) -> None:
    """The vintage's MLflow run (mlflow extra): hyper-parameters, windows, gate, losses,
    card and loss plot. After registration, so a tracking failure never loses a model."""
    # Imported here: mlflow's import takes seconds, and loading the definitions (dg dev,
    # every CLI command) should not pay it.
    from alstm_pipeline import tracking

    if not tracking.enabled():
        return
    params = {f"window.{name}": value for name, value in plan.to_dict().items()}
    params.update({"vintage": context.partition_key, "gate.status": "promoted" if decision.passed else "rejected"})
    try:
        run_id = tracking.log_training(json.loads(json.dumps(card, default=str)), dagster_run_id=context.run.run_id,
                                       home=warehouse.home, experiment=experiment, pngs={"losses.png": png}, params=params)
        context.log.info(f"MLflow run {run_id} in experiment {experiment!r} ({tracking.tracking_uri(warehouse.home)})")
    except Exception as error:  # noqa: BLE001 - any tracking error is reported, never fatal
        context.log.warning(f"MLflow logging failed, the vintage is registered anyway: {error}")


class RollingPlanConfig(dg.Config):
    test_start: str = Field(default=TEST_START, description="first day of the rolling evaluation")
    test_end: str = Field(default="", description="last day (empty: the last trading day of the data)")
    step: int = Field(default=_SETTINGS.retrain_step, description="trading days between vintages (RollingGen step)")


@dg.op
def add_rolling_vintages(context: dg.OpExecutionContext, config: RollingPlanConfig, warehouse: WarehouseResource) -> list[str]:
    """Add the vintage partitions of a rolling evaluation (one per ``step`` trading days of
    the test period); then backfill alstm_model over them with mode "rolling"."""
    calendar = tables.read_calendar(warehouse.get(context.log.info))
    keys = vintages.rolling_keys(calendar, config.test_start, config.test_end or calendar[-1], config.step)
    context.instance.add_dynamic_partitions(VINTAGES.name, keys)
    context.log.info(f"{len(keys)} rolling vintages: {keys[0]} … {keys[-1]}")
    return keys


@dg.job(description="add the vintage partitions of a rolling evaluation over the test period (then backfill alstm_model)")
def plan_rolling_vintages():
    add_rolling_vintages()
