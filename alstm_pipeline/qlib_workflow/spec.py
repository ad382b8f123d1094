"""The typed result of reading a Qlib workflow file, and the constants Qlib's defaults give.

Pure: no Dagster, no I/O. ``WorkflowSpec`` is frozen; the loader (``loading.py``) and the
checks (``validation.py``) build it, ``run_config.py`` maps it onto the assets' config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alstm_pipeline.dataset.processing import ALSTM_FEATURES
from alstm_pipeline.dataset.windows import STEP_LEN
from alstm_pipeline.evaluation.topk_dropout import TopkDropoutConfig
from alstm_pipeline.features import ALPHA360_NAMES

# Qlib's region defaults (qlib/config.py): lot size and daily price limit per market.
REGION_DEFAULTS: dict[str, dict[str, Any]] = {
    "cn": {"trade_unit": 100, "limit_threshold": 0.095},
    "us": {"trade_unit": 1, "limit_threshold": None},
}
# Qlib's Exchange defaults when a backtest gives no exchange_kwargs (they differ from
# PortAnaRecord's built-in config, which is only used when the record has no config at all).
EXCHANGE_DEFAULTS = {"open_cost": 0.0015, "close_cost": 0.0025, "min_cost": 5.0}
# Qlib's backtest() defaults.
BACKTEST_DEFAULTS = {"account": 1e9, "benchmark": "SH000300"}

ALPHA158_LABEL = "Ref($close, -2) / Ref($close, -1) - 1"
DROP = "__DROP__"  # Qlib's marker that removes a key of the base config
RUNTIME_PLACEHOLDERS = {"<MODEL>", "<DATASET>", "<PRED>"}
_PLACEHOLDER = re.compile(r"^<([^<>]+)>$")

TOP_LEVEL_KEYS = {
    "qlib_init", "task", "experiment_name", "sys", "BASE_CONFIG_PATH",
    # anchor holders of Qlib's example files; read through task's aliases
    "market", "benchmark", "data_handler_config", "port_analysis_config",
}
HANDLER_MODULES = {None, "qlib.contrib.data.handler"}
# Qlib's two ALSTM files: the time-series model on Alpha158 windows, the flat one on Alpha360 rows.
MODEL_MODULE = "qlib.contrib.model.pytorch_alstm_ts"
FLAT_MODEL_MODULE = "qlib.contrib.model.pytorch_alstm"
ALPHA360_STEPS = 60  # Alpha360's 60 lags of 6 fields: d_feat 6 × 60 = 360 columns
DATASET_MODULES = {None, "qlib.data.dataset"}
RECORD_MODULES = {None, "qlib.workflow.record_temp"}
STRATEGY_MODULES = {None, "qlib.contrib.strategy", "qlib.contrib.strategy.signal_strategy"}
SEGMENT_NAMES = ("train", "valid", "test")
# qrun's experiment when the file names none; the main job's is another (warehouse.registry).
QRUN_EXPERIMENT = "workflow"


class WorkflowError(ValueError):
    """Everything in a workflow file that this pipeline cannot honour, one line per key."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.path}: {len(self.problems)} setting(s) cannot be honoured:\n{lines}")


@dataclass(frozen=True)
class HandlerSpec:
    """``task.dataset.kwargs.handler``: Alpha158 with ALSTM's processor chain (§5), or
    Alpha360 with its own (no FilterCol: all 360 columns, docs/alpha360.md)."""

    start_time: str
    end_time: str  # "" = to the last day of the data
    fit_start_time: str
    fit_end_time: str
    instruments: str  # a market name (instruments/<name>.txt), "all", or a file path
    label: str = ALPHA158_LABEL
    features: tuple[str, ...] = ALSTM_FEATURES  # the model's columns: FilterCol's in Alpha158 order (§3), or Alpha360's
    feature_set: str = "alpha158_ts"  # feature_sets.py: "alpha158_ts" or "alpha360"


@dataclass(frozen=True)
class ModelSpec:
    """``task.model``: one of Qlib's two ALSTM models and the kwargs we honour."""

    # Defaults are Qlib's ALSTM constructor's, used when the YAML leaves a kwarg out.
    d_feat: int = 6
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    n_epochs: int = 200
    lr: float = 1e-3
    early_stop: int = 20
    batch_size: int = 2000
    loss: str = "mse"
    seed: int | None = None
    device: str = "auto"  # GPU >= 0 → CUDA when available (Qlib's rule), GPU < 0 → "cpu"
    # What the file asked for; Qlib 0.9.7 swallows rnn_type and builds a GRU (§7.1), and so do we.
    rnn_type_requested: str = "GRU"


@dataclass(frozen=True)
class BacktestSpec:
    """A PortAnaRecord's ``config``: TopkDropout strategy, backtest range, exchange."""

    start_time: str  # "" = first day of the test predictions
    end_time: str  # "" = last day of the test predictions
    account: float
    benchmark: str | tuple[str, ...] | None  # a code, codes averaged, or None = equal-weight universe
    topk: int
    n_drop: int
    risk_degree: float = 0.95
    forbid_all_trade_at_limit: bool = True
    limit_threshold: float | None = 0.095
    deal_price: str = "close"
    open_cost: float = 0.0005
    close_cost: float = 0.0015
    min_cost: float = 5.0
    trade_unit: float | None = 100


@dataclass(frozen=True)
class WorkflowSpec:
    """Everything of a Qlib workflow file this pipeline runs, typed."""

    path: Path
    provider_uri: Path
    region: str
    handler: HandlerSpec
    model: ModelSpec
    segments: Mapping[str, tuple[str, str]]  # train / valid / test → (start, end), ISO dates
    step_len: int = STEP_LEN
    backtest: BacktestSpec | None = None
    experiment_name: str = QRUN_EXPERIMENT
    records: tuple[str, ...] = ()  # the record classes, in file order
    ic_long_short: bool = False  # SigAnaRecord's ana_long_short (always False when accepted)
    warnings: tuple[str, ...] = ()  # accepted, but worth saying (e.g. rnn_type LSTM runs as a GRU)

    @property
    def feature_set(self) -> str:
        return self.handler.feature_set

    # --- what our code takes ---------------------------------------------------------

    def train_config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``TrainConfig`` (rnn_type is GRU: Qlib's ALSTM always is, §7.2)."""
        m = self.model
        return {
            "d_feat": m.d_feat, "hidden_size": m.hidden_size, "num_layers": m.num_layers,
            "dropout": m.dropout, "n_epochs": m.n_epochs, "lr": m.lr, "batch_size": m.batch_size,
            "early_stop": m.early_stop, "loss": m.loss, "rnn_type": "GRU", "seed": m.seed,
            "device": m.device,
        }

    def train_config(self, **overrides):
        """A ``TrainConfig`` with the YAML's settings (``overrides`` win, e.g. score_train=False)."""
        from alstm_pipeline.model.config import TrainConfig  # torch import only when asked

        return TrainConfig(**{**self.train_config_kwargs(), **overrides})

    def segment_dates(self) -> dict[str, tuple[str, str]]:
        """train / valid / test → (start, end) ISO dates; the test end may be "" (= last day)."""
        return dict(self.segments)

    def normalizer_fit_window(self) -> tuple[str, str]:
        """RobustZScoreNorm's fit window (handler fit_start_time, fit_end_time; §5.1)."""
        return self.handler.fit_start_time, self.handler.fit_end_time

    def handler_start(self) -> str:
        """The first day any window may read (handler start_time; §6)."""
        return self.handler.start_time

    def topk_dropout_config(self) -> TopkDropoutConfig:
        """The backtest settings as ``TopkDropoutConfig`` (ValueError when the file has no PortAnaRecord)."""
        b = self.backtest
        if b is None:
            raise ValueError(f"{self.path}: the workflow has no PortAnaRecord, so no backtest settings")
        return TopkDropoutConfig(
            topk=b.topk, n_drop=b.n_drop, open_cost=b.open_cost, close_cost=b.close_cost,
            min_cost=b.min_cost, account=b.account, risk_degree=b.risk_degree, trade_unit=b.trade_unit,
            limit_threshold=b.limit_threshold, deal_price=b.deal_price,
            forbid_all_trade_at_limit=b.forbid_all_trade_at_limit,
        )

    def backtest_range(self) -> tuple[str, str]:
        """Backtest (start, end); "" where the YAML leaves it to the predictions."""
        if self.backtest is None:
            raise ValueError(f"{self.path}: the workflow has no PortAnaRecord, so no backtest range")
        return self.backtest.start_time, self.backtest.end_time

    def source_path(self) -> Path:
        """The provider directory: what ``alstm_pipeline.sources.open_source`` reads."""
        return self.provider_uri

    def universe_path(self) -> Path | None:
        """The instruments file for ``Universe.from_file``; None = every stored instrument ("all")."""
        return resolve_instruments(self.handler.instruments, self.provider_uri)


def resolve_instruments(instruments: str, provider: Path) -> Path | None:
    """A market name → ``<provider>/instruments/<name>.txt``; "all" → None; else a file path."""
    if instruments == "all":
        return None
    candidate = Path(instruments).expanduser()
    if candidate.suffix or os.sep in instruments or "/" in instruments:
        return candidate
    return provider / "instruments" / f"{instruments.lower()}.txt"


def features_of(feature_set: str) -> tuple[str, ...]:
    """The model's input columns of a configuration (the d_feat check compares with them)."""
    return tuple(ALPHA360_NAMES) if feature_set == "alpha360" else tuple(ALSTM_FEATURES)

