"""Model: the fitted normaliser, the train/valid/test segments and the ALSTM model."""

import base64
import json

import dagster as dg
from pydantic import Field
import pandas as pd

from alstm_pipeline import quality
from alstm_pipeline.dataset import (
    ALSTM_FEATURES,
    STEP_LEN,
    apply_normalizer,
    build_samples,
    fit_normalizer,
    infer_frame,
    learn_frame,
    process_label,
)
from alstm_pipeline.defs.features import alpha158_features, labels
from alstm_pipeline.defs.ingest import trading_calendar, universe
from alstm_pipeline.defs.resources import ModelStoreResource, WarehouseResource
from alstm_pipeline.model import TrainConfig, plot_losses, save_checkpoint, train_alstm
from alstm_pipeline.sources import Universe
from alstm_pipeline.warehouse import Warehouse

FEATURE_COLUMNS = ", ".join(f'"{name}"' for name in ALSTM_FEATURES)


def read_calendar(store: Warehouse) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(store.query("SELECT date FROM trading_calendar ORDER BY date")["date"]))


def read_universe(store: Warehouse) -> Universe:
    spans = store.query('SELECT instrument, start, "end" FROM universe')
    spans["start"], spans["end"] = pd.to_datetime(spans["start"]), pd.to_datetime(spans["end"])
    return Universe(spans=spans)


def read_alstm_features(store: Warehouse, start, end) -> pd.DataFrame:
    """The 20 ALSTM columns of alpha158 for [start, end], cut to universe spans (§1.4)."""
    frame = store.read_dates("alpha158", start, end, columns=f"instrument, date, {FEATURE_COLUMNS}")
    return frame[read_universe(store).mask(frame)].reset_index(drop=True)


def history_start(calendar: pd.DatetimeIndex, start) -> pd.Timestamp:
    """The trading day ``STEP_LEN`` days before ``start``: windows reach that far back (§6)."""
    position = int(calendar.searchsorted(pd.Timestamp(start)))
    return calendar[max(0, position - STEP_LEN)]


def _data_range(calendar: pd.DatetimeIndex) -> str:
    return f"{calendar[0].date()}..{calendar[-1].date()}" if len(calendar) else "no data"


class NormalizerConfig(dg.Config):
    fit_start: str = Field(default="2008-01-01", description="first day of the RobustZScoreNorm fit window")
    fit_end: str = Field(default="2014-12-31", description="last day of the fit window (inclusive)")


@dg.asset(group_name="model", kinds={"duckdb"}, deps=[alpha158_features, universe, trading_calendar],
          metadata={"dagster/table_name": "feature_normalizer"})
def feature_normalizer(
    context: dg.AssetExecutionContext, config: NormalizerConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """RobustZScoreNorm statistics (median, 1.4826·MAD) of the 20 ALSTM features, fitted on
    every universe row of the fit window, NaN labels included (semantics §5.1). Stored as a
    table so training and daily inference apply the same numbers."""
    store = warehouse.get()
    features = read_alstm_features(store, config.fit_start, config.fit_end)
    stats = fit_normalizer(features, config.fit_start, config.fit_end)
    store.replace_table("feature_normalizer", stats)
    context.log.info(f"feature_normalizer fitted on {len(features)} rows {config.fit_start}..{config.fit_end}")
    return dg.MaterializeResult(
        metadata={
            "fit_window": f"{config.fit_start}..{config.fit_end}",
            "fit_rows": len(features),
            "statistics": dg.MetadataValue.md(quality.as_markdown(stats, limit=len(stats))),
        }
    )


def read_normalizer(store: Warehouse) -> pd.DataFrame:
    return store.query("SELECT * FROM feature_normalizer")


HANDLER_START_HELP = (
    "first day any window may read (Qlib's handler start_time): windows of the first samples "
    "after it are front-padded instead of reaching further back (semantics §6)"
)


class SegmentConfig(dg.Config):
    start: str = Field(description="first day of the segment")
    end: str = Field(default="", description="last day (inclusive); empty = the last day of the data")
    handler_start: str = Field(default="2008-01-01", description=HANDLER_START_HELP)


def build_segment(
    store: Warehouse, name: str, start: str, end: str, handler_start: str, learn: bool
) -> tuple[pd.DataFrame, dict]:
    """The data-key frame of a segment from STEP_LEN days before ``start`` (not before the
    handler start) to ``end``: processed features with the CSRankNorm'd label on labelled
    rows only (learn: train and valid) or with the raw label on every row (infer: test),
    semantics §5.2 and §6."""
    calendar = read_calendar(store)
    start_day = pd.Timestamp(start)
    end_day = pd.Timestamp(end) if end else calendar[-1]
    inside = calendar[(calendar >= start_day) & (calendar <= end_day)]
    if inside.empty:
        raise ValueError(f"{name}: segment {start_day.date()}..{end_day.date()} holds no trading day; the data covers {_data_range(calendar)}")
    first = max(history_start(calendar, start_day), pd.Timestamp(handler_start))
    features = apply_normalizer(read_alstm_features(store, first, end_day), read_normalizer(store))
    label = store.read_dates("labels", first, end_day, columns="instrument, date, LABEL0")
    # CSRankNorm ranks a day's labels across the universe's rows of that day (§5.1).
    label = label[read_universe(store).mask(label)].reset_index(drop=True)
    frame = learn_frame(features, process_label(label)) if learn else infer_frame(features, label)
    in_segment = frame["date"] >= start_day
    if not in_segment.any():
        raise ValueError(f"{name}: segment {start_day.date()}..{end_day.date()} has no rows with features and labels")
    segment_label = frame.loc[in_segment, "LABEL0"]
    metadata = {
        "segment": f"{start_day.date()}..{end_day.date()}",
        "rows": int(in_segment.sum()),
        "history_rows": int((~in_segment).sum()),
        "instruments": int(frame.loc[in_segment, "instrument"].nunique()),
        "trading_days": int(frame.loc[in_segment, "date"].nunique()),
        "label": "CSRankNorm(LABEL0), labelled rows only" if learn else "raw LABEL0, every row",
        "label_mean": float(segment_label.mean()),
        "label_std": float(segment_label.std()),
        "label_nan_share": float(segment_label.isna().mean()),
    }
    return frame, {**metadata, "start": str(start_day.date()), "end": str(end_day.date())}


def segment_asset(name: str, default_start: str, default_end: str, learn: bool, description: str) -> dg.AssetsDefinition:
    """A segment asset: the same build, its own date range and table."""

    class _Config(SegmentConfig):
        start: str = Field(default=default_start, description="first day of the segment")
        end: str = Field(default=default_end, description="last day (inclusive); empty = the last day of the data")
        handler_start: str = Field(default="2008-01-01", description=HANDLER_START_HELP)

    _Config.__name__ = f"{name.title().replace('_', '')}Config"

    @dg.asset(name=name, group_name="model", kinds={"duckdb"}, deps=[feature_normalizer, labels, alpha158_features],
              metadata={"dagster/table_name": name}, description=description)
    def _segment(context: dg.AssetExecutionContext, config: _Config, warehouse: WarehouseResource) -> dg.MaterializeResult:
        store = warehouse.get()
        frame, metadata = build_segment(store, name, config.start, config.end, config.handler_start, learn)
        store.replace_table(name, frame)
        store.replace_table(f"{name}_range", pd.DataFrame({"start": [pd.Timestamp(metadata["start"])], "end": [pd.Timestamp(metadata["end"])]}))
        context.log.info(f"{name}: {metadata['rows']} rows, {metadata['segment']}")
        return dg.MaterializeResult(metadata=metadata)

    return _segment


train_segment = segment_asset("train_segment", "2008-01-01", "2014-12-31", learn=True,
                              description="Training rows (DK_L): processed features, CSRankNorm'd label, labelled rows only.")
valid_segment = segment_asset("valid_segment", "2015-01-01", "2016-12-31", learn=True,
                              description="Validation rows (DK_L), scored after every epoch for early stopping.")
test_segment = segment_asset("test_segment", "2017-01-01", "", learn=False,
                             description="Test rows (DK_I): processed features and raw label of every row; the IC and backtest period.")


def segment_bounds(store: Warehouse, name: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last day of a stored segment."""
    bounds = store.query(f'SELECT start, "end" FROM "{name}_range"').iloc[0]
    return pd.Timestamp(bounds["start"]), pd.Timestamp(bounds["end"])


def read_segment(store: Warehouse, name: str):
    """The samples of a stored segment, windows as Qlib cuts them (§6)."""
    frame = store.query(f'SELECT * FROM "{name}" ORDER BY instrument, date')
    frame["date"] = pd.to_datetime(frame["date"])
    return build_samples(frame, *segment_bounds(store, name), read_calendar(store))


class TrainingConfig(dg.Config):
    profile: str = Field(default="quick", description='"quick" (few epochs, for a CPU) or "benchmark" (Qlib: 200 epochs, early stop 10)')
    n_epochs: int = Field(default=0, description="override the profile's epoch cap (0 = profile's)")
    early_stop: int = Field(default=0, description="override the profile's patience (0 = profile's)")
    lr: float = 1e-3
    batch_size: int = 800
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    rnn_type: str = "GRU"
    seed: int = Field(default=0, description="seed for init and shuffling; -1 = unseeded")
    device: str = Field(default="auto", description='"auto" (CUDA when present), "cpu" or "cuda"')
    warm_start: bool = Field(default=False, description="start from the latest checkpoint's weights")


def train_config(config: TrainingConfig) -> TrainConfig:
    """The pure training config: the named profile with this run's overrides."""
    overrides = {
        "lr": config.lr,
        "batch_size": config.batch_size,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_layers,
        "dropout": config.dropout,
        "rnn_type": config.rnn_type,
        "seed": None if config.seed < 0 else config.seed,
        "device": config.device,
    }
    if config.n_epochs:
        overrides["n_epochs"] = config.n_epochs
    if config.early_stop:
        overrides["early_stop"] = config.early_stop
    return TrainConfig.profile(config.profile, **overrides)


@dg.asset(group_name="model", kinds={"pytorch"}, deps=[train_segment, valid_segment])
def alstm_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, warehouse: WarehouseResource, model_store: ModelStoreResource
) -> dg.MaterializeResult:
    """Qlib's ALSTM trained on train_segment with early stopping on valid_segment (semantics
    §7.2), saved as a versioned safetensors checkpoint with a JSON model card."""
    from alstm_pipeline.model import latest_checkpoint, load_checkpoint

    store = warehouse.get()
    train, valid = read_segment(store, "train_segment"), read_segment(store, "valid_segment")
    settings = train_config(config)
    initial = None
    if config.warm_start:
        previous = latest_checkpoint(model_store.path())
        if previous is None:
            context.log.warning("warm_start asked for, but no checkpoint exists yet: training from scratch")
        else:
            initial = load_checkpoint(previous)[0]
            context.log.info(f"warm start from {previous}")
    result = train_alstm(train, valid, settings, log=context.log.info, initial_model=initial)
    ranges = {name.removesuffix("_segment"): [str(day.date()) for day in segment_bounds(store, name)]
              for name in ("train_segment", "valid_segment")}
    card = result.card(data_ranges=ranges)
    directory = save_checkpoint(result.model, model_store.path(), card)
    png = plot_losses(card)
    (directory / "losses.png").write_bytes(png)
    context.log.info(f"alstm_model {card['version']} saved to {directory}")
    return dg.MaterializeResult(
        metadata={
            "version": card["version"],
            "checkpoint": dg.MetadataValue.path(str(directory)),
            "device": card["device"],
            "best_epoch": card["best_epoch"],
            "best_valid_loss": card["best_valid_loss"],
            "epochs_run": card["epochs_run"],
            "stopped_early": card["stopped_early"],
            "wall_seconds": card["wall_seconds"],
            "card": dg.MetadataValue.json(json.loads(json.dumps(card, default=str))),
            "loss_curves": dg.MetadataValue.md(f"![losses](data:image/png;base64,{base64.b64encode(png).decode()})"),
        },
        data_version=dg.DataVersion(card["version"]),
    )
