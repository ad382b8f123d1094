"""Read a Qlib workflow YAML of the ALSTM family into a typed, frozen ``WorkflowSpec``.

Pure: no Dagster. ``load_workflow(path)`` does what ``qrun`` does before it builds anything:

1. render the file as a Jinja2 template whose variables come from the environment
   (Qlib's ``qrun`` does this so a YAML can say ``provider_uri: "{{ DATA_DIR }}"``);
2. parse it with ruamel's safe, pure-Python loader (YAML 1.2: ``1e-3`` is a float, anchors,
   aliases and ``<<`` merge keys resolve in the parser);
3. merge it over ``BASE_CONFIG_PATH`` when given (dicts merge key by key, any other value
   replaces, the string ``__DROP__`` deletes the base's key);
4. fill Qlib's ``<a.b.0>`` placeholders inside ``task`` from the task itself (what Qlib's
   ``fill_placeholder`` does for record and strategy configs); ``<MODEL>``, ``<DATASET>`` and
   ``<PRED>`` stand for the trained model, the dataset and the predictions, which are ours.

Then every key is checked. Whatever this pipeline cannot reproduce (another handler or
model, a processor chain other than ALSTM's, a strategy option we do not simulate, an
unknown key) is collected and raised together in one ``WorkflowError`` naming each key
path and why, before anything runs.

Where Qlib reads things: only ``qlib_init`` and ``task`` drive a run (plus ``experiment_name``);
the top-level ``market``, ``benchmark``, ``data_handler_config`` and ``port_analysis_config``
(and any other top-level mapping) are anchor holders that ``task`` refers to. So the handler settings are read from
``task.dataset.kwargs.handler.kwargs`` and the backtest from the PortAnaRecord's
``kwargs.config``, as Qlib does; a YAML without a PortAnaRecord has no backtest.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd

from alstm_pipeline.dataset.processing import ALSTM_FEATURES
from alstm_pipeline.dataset.windows import STEP_LEN
from alstm_pipeline.evaluation.topk_dropout import TopkDropoutConfig

__all__ = [
    "BacktestSpec",
    "HandlerSpec",
    "ModelSpec",
    "WorkflowError",
    "WorkflowSpec",
    "load_workflow",
    "parse_workflow",
]

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
MODEL_MODULE = "qlib.contrib.model.pytorch_alstm_ts"
DATASET_MODULES = {None, "qlib.data.dataset"}
RECORD_MODULES = {None, "qlib.workflow.record_temp"}
STRATEGY_MODULES = {None, "qlib.contrib.strategy", "qlib.contrib.strategy.signal_strategy"}
SEGMENT_NAMES = ("train", "valid", "test")


class WorkflowError(ValueError):
    """Everything in a workflow file that this pipeline cannot honour, one line per key."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.path}: {len(self.problems)} setting(s) cannot be honoured:\n{lines}")


@dataclass(frozen=True)
class HandlerSpec:
    """``task.dataset.kwargs.handler``: Alpha158 with the ALSTM processor chain (§5)."""

    start_time: str
    end_time: str  # "" = to the last day of the data
    fit_start_time: str
    fit_end_time: str
    instruments: str  # a market name (instruments/<name>.txt), "all", or a file path
    label: str = ALPHA158_LABEL
    features: tuple[str, ...] = ALSTM_FEATURES  # FilterCol's columns, Alpha158 order (§3)


@dataclass(frozen=True)
class ModelSpec:
    """``task.model``: Qlib's time-series ALSTM and the kwargs we honour."""

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
    experiment_name: str = "workflow"
    records: tuple[str, ...] = ()  # the record classes, in file order
    ic_long_short: bool = False  # SigAnaRecord's ana_long_short (always False when accepted)

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


# --- loading ------------------------------------------------------------------------------


def load_workflow(path: str | os.PathLike, environ: Mapping[str, str] | None = None) -> WorkflowSpec:
    """Read the workflow YAML at ``path`` (environment for its ``{{ VAR }}`` templates: ``environ``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WorkflowError(path, ["the workflow file does not exist"])
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    text = _render_template(path.read_text(encoding="utf-8"), environ, problems)
    config = _parse_yaml(text, path, problems)
    if problems:
        raise WorkflowError(path, problems)
    base_path = config.get("BASE_CONFIG_PATH")
    if base_path:
        base_file = _find_base_config(Path(str(base_path)), path)
        if base_file is None:
            raise WorkflowError(path, [f"BASE_CONFIG_PATH: {base_path} found neither from the working directory nor beside the file"])
        # Qlib parses the base file as plain YAML (no template rendering), then merges.
        base = _parse_yaml(base_file.read_text(encoding="utf-8"), base_file, problems)
        if problems:
            raise WorkflowError(path, problems)
        config = merge_config(base, config)
    return parse_workflow(config, path)


def _render_template(text: str, environ: Mapping[str, str], problems: list[str]) -> str:
    """Jinja2-render the file with environment variables, as qrun does.

    Qlib renders a variable that is not set as empty text; here it is an error instead, since
    an empty provider path or date only fails later and less clearly.
    """
    if not any(mark in text for mark in ("{{", "{%", "{#")):
        return text  # nothing Jinja2 would change
    import jinja2
    from jinja2 import meta

    environment = jinja2.Environment()
    try:
        names = meta.find_undeclared_variables(environment.parse(text))
    except jinja2.TemplateSyntaxError as error:
        problems.append(f"template syntax (line {error.lineno}): {error.message}")
        return text
    for name in sorted(n for n in names if n not in environ):
        problems.append(f"template variable {{{{ {name} }}}} is not set in the environment (Qlib would insert empty text)")
    return environment.from_string(text).render({n: environ[n] for n in names if n in environ})


def _parse_yaml(text: str, path: Path, problems: list[str]) -> dict:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        loaded = YAML(typ="safe", pure=True).load(io.StringIO(text))
    except YAMLError as error:
        problems.append(f"not valid YAML: {error}")
        return {}
    if not isinstance(loaded, dict):
        problems.append(f"the top level must be a mapping of settings, got {type(loaded).__name__}")
        return {}
    return loaded


def _find_base_config(base: Path, workflow: Path) -> Path | None:
    # Qlib's order: as given (absolute, or relative to the working directory), then beside the workflow file.
    for candidate in (base.expanduser(), workflow.parent / base):
        if candidate.is_file():
            return candidate
    return None


def merge_config(base: dict, extension: dict) -> dict:
    """``extension`` over ``base``: nested dicts merge, other values replace, "__DROP__" removes."""
    merged = dict(base)
    for key, value in extension.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = merge_config(merged[key], value)
        elif isinstance(value, str) and value == DROP:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


# --- checking -----------------------------------------------------------------------------


class _Check:
    """Collects problems with their key paths while the spec is read."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, key: str, why: str) -> None:
        self.problems.append(f"{key}: {why}")

    def mapping(self, value: Any, key: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(key, f"expected a mapping, got {type(value).__name__} {value!r}")
            return {}
        return value

    def unknown(self, mapping: dict, key: str, known: set[str]) -> None:
        for name in mapping:
            if name not in known:
                self.add(f"{key}.{name}" if key else str(name), "unknown or unsupported key")

    def date(self, value: Any, key: str, allow_empty: bool = False) -> str:
        if value is None and allow_empty:
            return ""
        try:
            day = pd.Timestamp(value)
        except (TypeError, ValueError):
            day = pd.NaT
        if pd.isna(day):
            self.add(key, f"not a date: {value!r}")
            return ""
        if day != day.normalize():
            self.add(key, f"daily data only: {value!r} has a time of day")
        return str(day.date())

    def number(self, value: Any, key: str, kind: type, minimum: float | None = None) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(key, f"expected a number, got {value!r}")
            return None
        if kind is int and float(value) != int(value):
            self.add(key, f"expected a whole number, got {value!r}")
            return None
        if minimum is not None and value < minimum:
            self.add(key, f"must be at least {minimum}, got {value!r}")
            return None
        return kind(value)

    def equals(self, value: Any, key: str, allowed: set, why: str) -> None:
        if value not in allowed:
            self.add(key, f"{value!r} is not supported: {why}")


def parse_workflow(config: dict, path: str | os.PathLike = "<workflow>") -> WorkflowSpec:
    """The spec of an already-loaded workflow mapping (see ``load_workflow``)."""
    path = Path(path)
    check = _Check()
    for name, value in config.items():
        # Qlib reads only qlib_init, task and experiment_name. A mapping under another name is
        # an anchor holder (its content reaches the run through aliases); anything else is
        # most likely a misplaced or misspelt setting that Qlib would silently ignore.
        if name not in TOP_LEVEL_KEYS and not isinstance(value, dict):
            check.add(str(name), "unknown top-level setting (Qlib ignores it; settings belong under qlib_init or task)")
    if config.get("sys"):
        check.add("sys", "adds Python paths for custom Qlib classes; only the built-in ALSTM workflow is supported")

    init = check.mapping(config.get("qlib_init"), "qlib_init")
    check.unknown(init, "qlib_init", {"provider_uri", "region"})
    provider_uri = _provider_uri(init.get("provider_uri"), path, check)
    region = str(init.get("region", "cn"))
    check.equals(region, "qlib_init.region", set(REGION_DEFAULTS), "regions with known lot sizes and price limits are cn and us")

    task = check.mapping(config.get("task"), "task")
    if not task:
        check.add("task", "missing: a workflow needs task.model and task.dataset")
    task = _fill_placeholders(task, check)
    check.unknown(task, "task", {"model", "dataset", "record"})

    model = _model_spec(check.mapping(task.get("model"), "task.model"), check)
    dataset = check.mapping(task.get("dataset"), "task.dataset")
    handler, segments, step_len = _dataset_spec(dataset, provider_uri, check)
    if handler and model and model.d_feat != len(handler.features):
        check.add("task.model.kwargs.d_feat", f"{model.d_feat} does not match the {len(handler.features)} features FilterCol keeps")

    records, backtest, long_short = _records(task.get("record"), region, check)
    experiment = config.get("experiment_name", "workflow")
    if not isinstance(experiment, str) or not experiment:
        check.add("experiment_name", f"expected a non-empty name, got {experiment!r}")

    if check.problems:
        raise WorkflowError(path, check.problems)
    return WorkflowSpec(
        path=path, provider_uri=provider_uri, region=region, handler=handler, model=model,
        segments=MappingProxyType(dict(segments)), step_len=step_len, backtest=backtest, experiment_name=str(experiment),
        records=records, ic_long_short=long_short,
    )


def _provider_uri(value: Any, path: Path, check: _Check) -> Path:
    if not isinstance(value, str) or not value:
        check.add("qlib_init.provider_uri", f"expected the provider directory, got {value!r}")
        return Path()
    provider = Path(value).expanduser()
    if not provider.is_absolute():
        provider = (Path.cwd() / provider).resolve()  # Qlib resolves it from the working directory
    if not provider.is_dir():
        check.add("qlib_init.provider_uri", f"{provider} is not a directory")
    return provider


def resolve_instruments(instruments: str, provider: Path) -> Path | None:
    """A market name → ``<provider>/instruments/<name>.txt``; "all" → None; else a file path."""
    if instruments == "all":
        return None
    candidate = Path(instruments).expanduser()
    if candidate.suffix or os.sep in instruments or "/" in instruments:
        return candidate
    return provider / "instruments" / f"{instruments.lower()}.txt"


def _fill_placeholders(task: dict, check: _Check) -> dict:
    """Qlib's ``<a.b.0>`` placeholders in ``task``, filled from ``task`` itself (one level deep)."""

    def lookup(name_path: str) -> Any:
        item: Any = task
        for part in name_path.split("."):
            item = item[int(part)] if isinstance(item, list) else item[part]
        return item

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{key}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(value)]
        if isinstance(value, str) and value not in RUNTIME_PLACEHOLDERS:
            match = _PLACEHOLDER.match(value)
            if match:
                try:
                    return lookup(match.group(1))
                except (KeyError, IndexError, ValueError, TypeError):
                    check.add(key, f"placeholder {value} names nothing in task")
        return value

    return walk(task, "task")


def _model_spec(model: dict, check: _Check) -> ModelSpec | None:
    key = "task.model"
    check.unknown(model, key, {"class", "module_path", "kwargs"})
    cls, module = model.get("class"), model.get("module_path")
    if cls != "ALSTM" or module != MODEL_MODULE:
        check.add(
            key,
            f"{module}.{cls} is not available: the only model is Qlib's time-series ALSTM "
            f"(class ALSTM, module_path {MODEL_MODULE})",
        )
    kwargs = check.mapping(model.get("kwargs"), f"{key}.kwargs")
    key = f"{key}.kwargs"
    known = {"d_feat", "hidden_size", "num_layers", "dropout", "n_epochs", "lr", "early_stop", "batch_size",
             "metric", "loss", "optimizer", "GPU", "seed", "n_jobs", "rnn_type"}
    check.unknown(kwargs, key, known)
    values: dict[str, Any] = {}
    for name, kind, minimum in (("d_feat", int, 1), ("hidden_size", int, 1), ("num_layers", int, 1),
                                ("n_epochs", int, 1), ("early_stop", int, 1), ("batch_size", int, 1),
                                ("lr", float, None), ("dropout", float, 0)):
        if name in kwargs:
            value = check.number(kwargs[name], f"{key}.{name}", kind, minimum)
            if value is not None:
                values[name] = value
    if "lr" in values and not values["lr"] > 0:
        check.add(f"{key}.lr", f"must be positive, got {values['lr']}")
    if "dropout" in values and not values["dropout"] < 1:
        check.add(f"{key}.dropout", f"must be below 1, got {values['dropout']}")
    if "loss" in kwargs:
        check.equals(kwargs["loss"], f"{key}.loss", {"mse"}, "Qlib's ALSTM trains on MSE only")
    if "metric" in kwargs:
        check.equals(kwargs["metric"], f"{key}.metric", {"", "loss"}, "early stopping uses the validation loss (§7.2)")
    if "optimizer" in kwargs:
        check.equals(str(kwargs["optimizer"]).lower(), f"{key}.optimizer", {"adam"}, "training uses Adam (§7.2)")
    if "rnn_type" in kwargs:
        # §7.1: Qlib swallows rnn_type and always builds a GRU; honouring "LSTM" would not be Qlib's run.
        check.equals(str(kwargs["rnn_type"]).upper(), f"{key}.rnn_type", {"GRU"},
                     "Qlib's ALSTM ignores rnn_type and always builds a GRU, so its results are a GRU's")
    if "seed" in kwargs and kwargs["seed"] is not None:
        seed = check.number(kwargs["seed"], f"{key}.seed", int)
        values["seed"] = seed
    gpu = kwargs.get("GPU", 0)
    device = "auto"
    if check.number(gpu, f"{key}.GPU", int) is not None:
        if gpu < 0:
            device = "cpu"
        elif gpu > 0:
            check.add(f"{key}.GPU", f"GPU {gpu}: only the first CUDA device (GPU 0) can be chosen")
    # n_jobs only sets DataLoader workers; 0 or more workers give the same batches (§7.2).
    return ModelSpec(device=device, **values)


def _dataset_spec(dataset: dict, provider: Path, check: _Check):
    key = "task.dataset"
    check.unknown(dataset, key, {"class", "module_path", "kwargs"})
    cls, module = dataset.get("class"), dataset.get("module_path")
    if cls == "DatasetH":
        check.add(f"{key}.class", "DatasetH feeds Qlib's non-time-series models (e.g. ALSTM on Alpha360); "
                                  "only TSDatasetH with 20-step windows is implemented")
    elif cls != "TSDatasetH" or module not in DATASET_MODULES:
        check.add(key, f"{module}.{cls} is not supported: use TSDatasetH from qlib.data.dataset")
    kwargs = check.mapping(dataset.get("kwargs"), f"{key}.kwargs")
    check.unknown(kwargs, f"{key}.kwargs", {"handler", "segments", "step_len"})
    step_len = kwargs.get("step_len", STEP_LEN)  # TSDatasetH's own default is 30; ALSTM's YAML sets 20
    if cls == "DatasetH":
        pass  # no windows at all; the class error above says it
    elif "step_len" not in kwargs:
        check.add(f"{key}.kwargs.step_len", "missing: TSDatasetH would use 30 steps; the pipeline's windows are 20 (set step_len: 20)")
    elif step_len != STEP_LEN:
        check.add(f"{key}.kwargs.step_len", f"{step_len!r}: the pipeline's windows are fixed at {STEP_LEN} steps (§6)")

    segments_in = check.mapping(kwargs.get("segments"), f"{key}.kwargs.segments")
    segments: dict[str, tuple[str, str]] = {}
    check.unknown(segments_in, f"{key}.kwargs.segments", set(SEGMENT_NAMES))
    for name in SEGMENT_NAMES:
        span = segments_in.get(name)
        if not isinstance(span, (list, tuple)) or len(span) != 2:
            check.add(f"{key}.kwargs.segments.{name}", f"expected [start, end], got {span!r}")
            continue
        start = check.date(span[0], f"{key}.kwargs.segments.{name}.0")
        end = check.date(span[1], f"{key}.kwargs.segments.{name}.1", allow_empty=name == "test")
        segments[name] = (start, end)

    handler = _handler_spec(check.mapping(kwargs.get("handler"), f"{key}.kwargs.handler"), provider, check)
    return handler, segments, STEP_LEN


def _handler_spec(handler: dict, provider: Path, check: _Check) -> HandlerSpec | None:
    key = "task.dataset.kwargs.handler"
    check.unknown(handler, key, {"class", "module_path", "kwargs"})
    cls, module = handler.get("class"), handler.get("module_path")
    if cls == "Alpha360":
        check.add(f"{key}.class", "Alpha360 features are not implemented; only Alpha158 (with ALSTM's 20 columns)")
    elif cls != "Alpha158" or module not in HANDLER_MODULES:
        check.add(key, f"{module}.{cls} is not supported: use Alpha158 from qlib.contrib.data.handler")
    kwargs = check.mapping(handler.get("kwargs"), f"{key}.kwargs")
    key = f"{key}.kwargs"
    check.unknown(kwargs, key, {"start_time", "end_time", "fit_start_time", "fit_end_time", "instruments",
                                "infer_processors", "learn_processors", "label", "freq", "process_type"})
    if kwargs.get("freq", "day") != "day":
        check.add(f"{key}.freq", f"{kwargs['freq']!r}: daily data only")
    if kwargs.get("process_type", "append") != "append":
        check.add(f"{key}.process_type", "only 'append' (learn processors run on the infer output, §5.1)")

    start = check.date(kwargs.get("start_time"), f"{key}.start_time")
    end = check.date(kwargs.get("end_time"), f"{key}.end_time", allow_empty=True)
    fit_start = check.date(kwargs.get("fit_start_time"), f"{key}.fit_start_time")
    fit_end = check.date(kwargs.get("fit_end_time"), f"{key}.fit_end_time")

    instruments = kwargs.get("instruments", "all")
    if not isinstance(instruments, str) or not instruments:
        check.add(f"{key}.instruments", f"expected a market name or an instruments file, got {instruments!r}")
        instruments = "all"
    else:
        universe = resolve_instruments(instruments, provider)
        if universe is not None and not universe.is_file():
            check.add(f"{key}.instruments", f"{instruments!r}: no instruments file at {universe}")

    _check_infer_processors(kwargs.get("infer_processors"), f"{key}.infer_processors", fit_start, fit_end, check)
    _check_learn_processors(kwargs.get("learn_processors"), f"{key}.learn_processors", check)
    label = kwargs.get("label", [ALPHA158_LABEL])
    labels = label if isinstance(label, (list, tuple)) else [label]
    if len(labels) != 1 or _squash(labels[0]) != _squash(ALPHA158_LABEL):
        check.add(f"{key}.label", f"{label!r}: the only label is {ALPHA158_LABEL!r} (§4)")
    return HandlerSpec(start_time=start, end_time=end, fit_start_time=fit_start, fit_end_time=fit_end,
                       instruments=instruments)


def _squash(expression: Any) -> str:
    return re.sub(r"\s+", "", str(expression))


def _processor(item: Any, key: str, check: _Check) -> tuple[str | None, dict]:
    if isinstance(item, str):
        return item, {}
    if not isinstance(item, dict) or "class" not in item:
        check.add(key, f"expected a processor {{class: ..., kwargs: ...}}, got {item!r}")
        return None, {}
    check.unknown(item, key, {"class", "module_path", "kwargs"})
    if item.get("module_path") not in (None, "qlib.data.dataset.processor"):
        check.add(f"{key}.module_path", f"{item['module_path']!r}: only Qlib's built-in processors")
    return item["class"], check.mapping(item.get("kwargs"), f"{key}.kwargs")


def _check_chain(items: Any, key: str, expected: tuple[str, ...], check: _Check) -> list[tuple[str | None, dict]]:
    if not isinstance(items, list):
        check.add(key, f"missing or not a list: ALSTM's chain is {' → '.join(expected)} (Alpha158's default is another)")
        return []
    chain = [_processor(item, f"{key}.{i}", check) for i, item in enumerate(items)]
    names = tuple(name for name, _ in chain)
    if names != expected:
        check.add(key, f"{' → '.join(map(str, names)) or 'empty'}: only ALSTM's chain {' → '.join(expected)} is implemented (§5.1)")
        return []
    return chain


def _check_infer_processors(items: Any, key: str, fit_start: str, fit_end: str, check: _Check) -> None:
    chain = _check_chain(items, key, ("FilterCol", "RobustZScoreNorm", "Fillna"), check)
    if not chain:
        return
    (_, filter_kwargs), (_, norm_kwargs), (_, fill_kwargs) = chain
    check.unknown(filter_kwargs, f"{key}.0.kwargs", {"fields_group", "col_list"})
    check.equals(filter_kwargs.get("fields_group", "feature"), f"{key}.0.kwargs.fields_group", {"feature"}, "FilterCol applies to features")
    columns = filter_kwargs.get("col_list", [])
    listed = set(columns) if isinstance(columns, list) else set()
    if listed != set(ALSTM_FEATURES):
        missing = sorted(set(ALSTM_FEATURES) - listed)
        extra = sorted(listed - set(ALSTM_FEATURES))
        check.add(f"{key}.0.kwargs.col_list", f"must be ALSTM's 20 Alpha158 columns (order is free, §3); missing {missing}, extra {extra}")

    check.unknown(norm_kwargs, f"{key}.1.kwargs", {"fields_group", "clip_outlier", "fit_start_time", "fit_end_time"})
    check.equals(norm_kwargs.get("fields_group", "feature"), f"{key}.1.kwargs.fields_group", {"feature"}, "the norm applies to features")
    check.equals(norm_kwargs.get("clip_outlier", True), f"{key}.1.kwargs.clip_outlier", {True}, "the norm clips at ±3 (§5.1)")
    # The handler passes its fit window to the processor; an explicit, different one is not modelled.
    for name, handler_value in (("fit_start_time", fit_start), ("fit_end_time", fit_end)):
        if name in norm_kwargs and check.date(norm_kwargs[name], f"{key}.1.kwargs.{name}") != handler_value:
            check.add(f"{key}.1.kwargs.{name}", f"differs from the handler's {name} {handler_value}; one fit window only")

    check.unknown(fill_kwargs, f"{key}.2.kwargs", {"fields_group", "fill_value"})
    check.equals(fill_kwargs.get("fields_group", "feature"), f"{key}.2.kwargs.fields_group", {"feature"}, "Fillna applies to features")
    check.equals(fill_kwargs.get("fill_value", 0), f"{key}.2.kwargs.fill_value", {0}, "missing features become 0 (§5.1)")


def _check_learn_processors(items: Any, key: str, check: _Check) -> None:
    chain = _check_chain(items, key, ("DropnaLabel", "CSRankNorm"), check)
    if not chain:
        return
    (_, drop_kwargs), (_, rank_kwargs) = chain
    check.unknown(drop_kwargs, f"{key}.0.kwargs", {"fields_group"})
    check.equals(drop_kwargs.get("fields_group", "label"), f"{key}.0.kwargs.fields_group", {"label"}, "rows are dropped by their label")
    check.unknown(rank_kwargs, f"{key}.1.kwargs", {"fields_group"})
    check.equals(rank_kwargs.get("fields_group"), f"{key}.1.kwargs.fields_group", {"label"}, "CSRankNorm ranks the label (§5.1)")


def _records(records: Any, region: str, check: _Check):
    key = "task.record"
    if records is None:
        return (), None, False
    if isinstance(records, dict):  # Qlib accepts one record given as a mapping
        records = [records]
    if not isinstance(records, list):
        check.add(key, f"expected a list of records, got {records!r}")
        return (), None, False
    names, backtest, long_short = [], None, False
    for i, record in enumerate(records):
        rkey = f"{key}.{i}"
        record = check.mapping(record, rkey)
        check.unknown(record, rkey, {"class", "module_path", "kwargs"})
        cls = record.get("class")
        if record.get("module_path") not in RECORD_MODULES:
            check.add(f"{rkey}.module_path", f"{record['module_path']!r}: only Qlib's record_temp records")
        kwargs = check.mapping(record.get("kwargs"), f"{rkey}.kwargs")
        if cls == "SignalRecord":
            check.unknown(kwargs, f"{rkey}.kwargs", {"model", "dataset"})
        elif cls == "SigAnaRecord":
            check.unknown(kwargs, f"{rkey}.kwargs", {"model", "dataset", "ana_long_short", "ann_scaler", "label_col"})
            if kwargs.get("ana_long_short", False):
                check.add(f"{rkey}.kwargs.ana_long_short", "the long-short analysis is not implemented (§8); set False")
            if kwargs.get("label_col", 0) != 0:
                check.add(f"{rkey}.kwargs.label_col", "there is one label column")
            # ann_scaler only scales the long-short figures, which are off.
        elif cls == "PortAnaRecord":
            check.unknown(kwargs, f"{rkey}.kwargs", {"config", "model", "dataset", "risk_analysis_freq", "indicator_analysis_freq"})
            for name in ("risk_analysis_freq", "indicator_analysis_freq"):
                if name in kwargs and kwargs[name] not in ("day", "1day", ["day"], ["1day"]):
                    check.add(f"{rkey}.kwargs.{name}", f"{kwargs[name]!r}: daily only")
            if backtest is not None:
                check.add(rkey, "a second PortAnaRecord: one backtest per workflow")
            else:
                backtest = _backtest_spec(check.mapping(kwargs.get("config"), f"{rkey}.kwargs.config"), f"{rkey}.kwargs.config", region, check)
        else:
            check.add(f"{rkey}.class", f"{cls!r}: records are SignalRecord, SigAnaRecord and PortAnaRecord")
        names.append(str(cls))
    return tuple(names), backtest, long_short


def _backtest_spec(config: dict, key: str, region: str, check: _Check) -> BacktestSpec | None:
    if not config:
        check.add(key, "missing: PortAnaRecord without a config uses Qlib's built-in one; write it out")
        return None
    check.unknown(config, key, {"strategy", "backtest", "executor"})
    executor = config.get("executor")
    if executor is not None:
        ex = check.mapping(executor, f"{key}.executor")
        ex_kwargs = check.mapping(ex.get("kwargs"), f"{key}.executor.kwargs")
        if ex.get("class") != "SimulatorExecutor" or ex_kwargs.get("time_per_step", "day") != "day" or any(
            k not in ("time_per_step", "generate_portfolio_metrics", "verbose", "indicator_config") for k in ex_kwargs
        ):
            check.add(f"{key}.executor", "only the daily SimulatorExecutor (Qlib's default) is simulated")

    strategy = check.mapping(config.get("strategy"), f"{key}.strategy")
    skey = f"{key}.strategy"
    check.unknown(strategy, skey, {"class", "module_path", "kwargs"})
    if strategy.get("class") != "TopkDropoutStrategy" or strategy.get("module_path") not in STRATEGY_MODULES:
        check.add(skey, f"{strategy.get('module_path')}.{strategy.get('class')}: the only strategy is TopkDropoutStrategy")
    s = check.mapping(strategy.get("kwargs"), f"{skey}.kwargs")
    skey = f"{skey}.kwargs"
    check.unknown(s, skey, {"signal", "model", "dataset", "topk", "n_drop", "method_sell", "method_buy",
                            "hold_thresh", "only_tradable", "forbid_all_trade_at_limit", "risk_degree"})
    for name, placeholder in (("signal", "<PRED>"), ("model", "<MODEL>"), ("dataset", "<DATASET>")):
        if name in s and s[name] != placeholder:
            check.add(f"{skey}.{name}", f"{s[name]!r}: the strategy trades this workflow's predictions ({placeholder})")
    topk = check.number(s.get("topk"), f"{skey}.topk", int, 1)
    n_drop = check.number(s.get("n_drop"), f"{skey}.n_drop", int, 0)
    check.equals(s.get("method_sell", "bottom"), f"{skey}.method_sell", {"bottom"}, "drops the lowest-scored holdings (§9.3)")
    check.equals(s.get("method_buy", "top"), f"{skey}.method_buy", {"top"}, "buys the best-scored candidates (§9.3)")
    check.equals(s.get("hold_thresh", 1), f"{skey}.hold_thresh", {1}, "holdings can be sold the day after purchase")
    check.equals(s.get("only_tradable", False), f"{skey}.only_tradable", {False}, "candidates are ranked regardless of tradability")
    forbid_all = s.get("forbid_all_trade_at_limit", True)
    if not isinstance(forbid_all, bool):
        check.add(f"{skey}.forbid_all_trade_at_limit", f"expected true or false, got {forbid_all!r}")
        forbid_all = True
    risk_degree = check.number(s.get("risk_degree", 0.95), f"{skey}.risk_degree", float)
    if risk_degree is not None and not 0 < risk_degree <= 1:
        check.add(f"{skey}.risk_degree", f"must be in (0, 1], got {risk_degree}")

    bt = check.mapping(config.get("backtest"), f"{key}.backtest")
    bkey = f"{key}.backtest"
    check.unknown(bt, bkey, {"start_time", "end_time", "account", "benchmark", "exchange_kwargs", "pos_type"})
    if bt.get("pos_type", "Position") != "Position":
        check.add(f"{bkey}.pos_type", "only the ordinary Position book")
    start = check.date(bt.get("start_time"), f"{bkey}.start_time", allow_empty=True)
    end = check.date(bt.get("end_time"), f"{bkey}.end_time", allow_empty=True)
    account = check.number(bt.get("account", BACKTEST_DEFAULTS["account"]), f"{bkey}.account", float)
    if account is not None and not account > 0:
        check.add(f"{bkey}.account", f"must be positive cash, got {account}")
    benchmark = bt.get("benchmark", BACKTEST_DEFAULTS["benchmark"])
    if isinstance(benchmark, list) and all(isinstance(code, str) for code in benchmark) and benchmark:
        benchmark = tuple(benchmark)
    elif benchmark is not None and not isinstance(benchmark, str):
        check.add(f"{bkey}.benchmark", f"expected an instrument code or a list of codes, got {benchmark!r}")
        benchmark = None

    ex = check.mapping(bt.get("exchange_kwargs"), f"{bkey}.exchange_kwargs")
    ekey = f"{bkey}.exchange_kwargs"
    check.unknown(ex, ekey, {"limit_threshold", "deal_price", "open_cost", "close_cost", "min_cost", "trade_unit",
                             "impact_cost", "volume_threshold", "codes", "freq"})
    defaults = REGION_DEFAULTS.get(region, REGION_DEFAULTS["cn"])
    limit = ex.get("limit_threshold", defaults["limit_threshold"])
    if limit is None:
        limit = defaults["limit_threshold"]  # Qlib: None means "the region's default"
    elif isinstance(limit, (list, tuple)):
        check.add(f"{ekey}.limit_threshold", "limit expressions are not supported; give a number like 0.095")
        limit = None
    else:
        limit = check.number(limit, f"{ekey}.limit_threshold", float)
        if limit is not None and not limit > 0:
            check.add(f"{ekey}.limit_threshold", f"must be positive, got {limit}")
    deal = ex.get("deal_price", "close")
    if isinstance(deal, (list, tuple)) and len(deal) == 2 and len({str(d).lstrip("$") for d in deal}) == 1:
        deal = deal[0]  # the same price for buys and sells
    deal = str(deal).lstrip("$") if isinstance(deal, str) else deal
    check.equals(deal, f"{ekey}.deal_price", {"close", "open"}, "deals are at the close or the open of the day (one price for both sides)")
    costs = {}
    for name in ("open_cost", "close_cost", "min_cost"):
        costs[name] = check.number(ex.get(name, EXCHANGE_DEFAULTS[name]), f"{ekey}.{name}", float, 0)
    trade_unit = ex.get("trade_unit", defaults["trade_unit"])
    if trade_unit is not None:
        trade_unit = check.number(trade_unit, f"{ekey}.trade_unit", float)
        if trade_unit is not None and not trade_unit > 0:
            check.add(f"{ekey}.trade_unit", f"must be positive (or null for no lots), got {trade_unit}")
    if ex.get("impact_cost", 0) not in (0, 0.0):
        check.add(f"{ekey}.impact_cost", "market impact is not simulated; set 0")
    if ex.get("volume_threshold") is not None:
        check.add(f"{ekey}.volume_threshold", "volume limits are not simulated")
    check.equals(ex.get("codes", "all"), f"{ekey}.codes", {"all"}, "every instrument with prices can trade (Qlib's default)")
    check.equals(ex.get("freq", "day"), f"{ekey}.freq", {"day"}, "daily data only")

    if topk is None or n_drop is None or account is None or None in costs.values() or risk_degree is None:
        return None
    return BacktestSpec(
        start_time=start, end_time=end, account=account, benchmark=benchmark, topk=topk, n_drop=n_drop,
        risk_degree=risk_degree, forbid_all_trade_at_limit=forbid_all, limit_threshold=limit,
        deal_price=deal if deal in ("close", "open") else "close", trade_unit=trade_unit, **costs,
    )
