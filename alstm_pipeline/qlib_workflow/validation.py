"""Checking a workflow mapping key by key, and building the ``WorkflowSpec`` from it.

Every key is checked. Whatever this pipeline cannot reproduce (another handler or model, a
processor chain other than ALSTM's, a strategy option we do not simulate, an unknown key)
is collected and raised together in one ``WorkflowError`` naming each key path and why,
before anything runs; with ``check_data`` the keys that depend on the data are checked in
the same pass (``data_checks.py``).

Qlib's two ALSTM files are accepted: Alpha158 + TSDatasetH (20-step windows) + the
time-series model ``pytorch_alstm_ts``, and Alpha360 + DatasetH (flat rows) + the flat
model ``pytorch_alstm`` (feature set ``alpha360``, docs/alpha360.md).

Where Qlib reads things: only ``qlib_init`` and ``task`` drive a run (plus ``experiment_name``);
the top-level ``market``, ``benchmark``, ``data_handler_config`` and ``port_analysis_config``
(and any other top-level mapping) are anchor holders that ``task`` refers to. So the handler
settings are read from ``task.dataset.kwargs.handler.kwargs``, as Qlib does. Qlib's
``<a.b.0>`` placeholders inside ``task`` are filled from the task itself (what Qlib's
``fill_placeholder`` does for record and strategy configs); ``<MODEL>``, ``<DATASET>`` and
``<PRED>`` stand for the trained model, the dataset and the predictions, which are ours.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from alstm_pipeline.dataset.processing import ALSTM_FEATURES
from alstm_pipeline.dataset.windows import STEP_LEN
from alstm_pipeline.qlib_workflow.checks import Check
from alstm_pipeline.qlib_workflow.records import records_spec
from alstm_pipeline.qlib_workflow.spec import (
    _PLACEHOLDER,
    ALPHA158_LABEL,
    ALPHA360_STEPS,
    DATASET_MODULES,
    FLAT_MODEL_MODULE,
    HANDLER_MODULES,
    MODEL_MODULE,
    QRUN_EXPERIMENT,
    REGION_DEFAULTS,
    RUNTIME_PLACEHOLDERS,
    SEGMENT_NAMES,
    TOP_LEVEL_KEYS,
    HandlerSpec,
    ModelSpec,
    WorkflowError,
    WorkflowSpec,
    features_of,
    resolve_instruments,
)


def parse_workflow(config: dict, path: str | os.PathLike = "<workflow>", check_data: bool = False) -> WorkflowSpec:
    """The spec of an already-loaded workflow mapping (see ``load_workflow``); with
    ``check_data`` also the keys that depend on the data (``data_checks.py``)."""
    path = Path(path)
    check = Check()
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

    dataset = check.mapping(task.get("dataset"), "task.dataset")
    configuration = _configuration(dataset)
    model = _model_spec(check.mapping(task.get("model"), "task.model"), configuration, check)
    handler, segments, step_len = _dataset_spec(dataset, configuration, provider_uri, check)
    if handler and model:
        expected = len(handler.features) // (ALPHA360_STEPS if handler.feature_set == "alpha360" else 1)
        if model.d_feat != expected:
            what = ("Alpha360's 6 fields per step (360 columns = 6 × 60 lags)" if handler.feature_set == "alpha360"
                    else f"the {len(handler.features)} features FilterCol keeps")
            check.add("task.model.kwargs.d_feat", f"{model.d_feat} does not match {what}")

    records, backtest, long_short = records_spec(task.get("record"), region, check)
    experiment = config.get("experiment_name", QRUN_EXPERIMENT)
    if not isinstance(experiment, str) or not experiment:
        check.add("experiment_name", f"expected a non-empty name, got {experiment!r}")

    if check_data and provider_uri.is_dir():
        # Imported here: reading the source is the one step of the checks that touches data.
        from alstm_pipeline.qlib_workflow.data_checks import check_against_data

        check_against_data(provider_uri, handler, segments, backtest, check)
    if check.problems:
        raise WorkflowError(path, check.problems)
    return WorkflowSpec(
        path=path, provider_uri=provider_uri, region=region, handler=handler, model=model,
        segments=MappingProxyType(dict(segments)), step_len=step_len, backtest=backtest, experiment_name=str(experiment),
        records=records, ic_long_short=long_short, warnings=tuple(check.warnings),
    )


@dataclass(frozen=True)
class _Configuration:
    """What goes with a handler class in Qlib's two ALSTM files."""

    feature_set: str
    model_module: str
    dataset_class: str
    infer_chain: tuple[str, ...]


CONFIGURATIONS = {
    "Alpha158": _Configuration("alpha158_ts", MODEL_MODULE, "TSDatasetH", ("FilterCol", "RobustZScoreNorm", "Fillna")),
    "Alpha360": _Configuration("alpha360", FLAT_MODEL_MODULE, "DatasetH", ("RobustZScoreNorm", "Fillna")),
}


def _configuration(dataset: dict) -> _Configuration | None:
    """The configuration the handler class names (None: unknown, reported by the handler check)."""
    kwargs = dataset.get("kwargs") if isinstance(dataset, dict) else None
    handler = kwargs.get("handler") if isinstance(kwargs, dict) else None
    return CONFIGURATIONS.get(handler.get("class")) if isinstance(handler, dict) else None


def _provider_uri(value: Any, path: Path, check: Check) -> Path:
    if not isinstance(value, str) or not value:
        check.add("qlib_init.provider_uri", f"expected the provider directory, got {value!r}")
        return Path()
    provider = Path(value).expanduser()
    if not provider.is_absolute():
        provider = (Path.cwd() / provider).resolve()  # Qlib resolves it from the working directory
    if not provider.is_dir():
        check.add("qlib_init.provider_uri", f"{provider} is not a directory")
    return provider


def _fill_placeholders(task: dict, check: Check) -> dict:
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


def _model_spec(model: dict, configuration: _Configuration | None, check: Check) -> ModelSpec | None:
    key = "task.model"
    check.unknown(model, key, {"class", "module_path", "kwargs"})
    cls, module = model.get("class"), model.get("module_path")
    if cls != "ALSTM" or module not in (MODEL_MODULE, FLAT_MODEL_MODULE):
        check.add(
            key,
            f"{module}.{cls} is not available: the models are Qlib's ALSTM (class ALSTM, module_path "
            f"{MODEL_MODULE} with Alpha158 windows, or {FLAT_MODEL_MODULE} with Alpha360 rows)",
        )
    elif configuration is not None and module != configuration.model_module:
        check.add(f"{key}.module_path", f"{module} does not go with the {configuration.feature_set} handler: "
                                        f"Qlib's file for that handler uses {configuration.model_module}")
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
    requested = str(kwargs.get("rnn_type", "GRU"))
    if requested.upper() != "GRU":
        # §7.1: Qlib 0.9.7 swallows rnn_type and always builds a GRU, so the file's own results
        # are a GRU's; honouring it would not be Qlib's run. Accepted, said, and recorded.
        check.warn(f"{key}.rnn_type", f"{requested!r} is ignored, as Qlib 0.9.7 ignores it: the model is a GRU "
                                      "(recorded on the run as qlib/rnn_type_requested)")
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
    return ModelSpec(device=device, rnn_type_requested=requested, **values)


def _dataset_spec(dataset: dict, configuration: _Configuration | None, provider: Path, check: Check):
    key = "task.dataset"
    check.unknown(dataset, key, {"class", "module_path", "kwargs"})
    cls, module = dataset.get("class"), dataset.get("module_path")
    if cls not in ("TSDatasetH", "DatasetH") or module not in DATASET_MODULES:
        check.add(key, f"{module}.{cls} is not supported: TSDatasetH (Alpha158 windows) or DatasetH (Alpha360 rows) "
                       "from qlib.data.dataset")
    elif configuration is not None and cls != configuration.dataset_class:
        check.add(f"{key}.class", f"{cls} does not go with the {configuration.feature_set} handler: Qlib's ALSTM file "
                                  f"for it uses {configuration.dataset_class}")
    kwargs = check.mapping(dataset.get("kwargs"), f"{key}.kwargs")
    check.unknown(kwargs, f"{key}.kwargs", {"handler", "segments"} | ({"step_len"} if cls != "DatasetH" else set()))
    step_len = kwargs.get("step_len", STEP_LEN)  # TSDatasetH's own default is 30; ALSTM's YAML sets 20
    if cls == "DatasetH":
        pass  # flat rows, no windows: an Alpha360 row holds its own 60 lags
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

    handler = _handler_spec(check.mapping(kwargs.get("handler"), f"{key}.kwargs.handler"), configuration, provider, check)
    return handler, segments, STEP_LEN


def _handler_spec(handler: dict, configuration: _Configuration | None, provider: Path, check: Check) -> HandlerSpec | None:
    key = "task.dataset.kwargs.handler"
    check.unknown(handler, key, {"class", "module_path", "kwargs"})
    cls, module = handler.get("class"), handler.get("module_path")
    if configuration is None or module not in HANDLER_MODULES:
        check.add(key, f"{module}.{cls} is not supported: Alpha158 or Alpha360 from qlib.contrib.data.handler")
    feature_set = configuration.feature_set if configuration else "alpha158_ts"
    chain = configuration.infer_chain if configuration else CONFIGURATIONS["Alpha158"].infer_chain
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

    _check_infer_processors(kwargs.get("infer_processors"), f"{key}.infer_processors", chain, fit_start, fit_end, check)
    _check_learn_processors(kwargs.get("learn_processors"), f"{key}.learn_processors", check)
    label = kwargs.get("label", [ALPHA158_LABEL])
    labels = label if isinstance(label, (list, tuple)) else [label]
    if len(labels) != 1 or _squash(labels[0]) != _squash(ALPHA158_LABEL):
        check.add(f"{key}.label", f"{label!r}: the only label is {ALPHA158_LABEL!r} (§4)")
    return HandlerSpec(start_time=start, end_time=end, fit_start_time=fit_start, fit_end_time=fit_end,
                       instruments=instruments, features=features_of(feature_set), feature_set=feature_set)


def _squash(expression: Any) -> str:
    return re.sub(r"\s+", "", str(expression))


def _processor(item: Any, key: str, check: Check) -> tuple[str | None, dict]:
    if isinstance(item, str):
        return item, {}
    if not isinstance(item, dict) or "class" not in item:
        check.add(key, f"expected a processor {{class: ..., kwargs: ...}}, got {item!r}")
        return None, {}
    check.unknown(item, key, {"class", "module_path", "kwargs"})
    if item.get("module_path") not in (None, "qlib.data.dataset.processor"):
        check.add(f"{key}.module_path", f"{item['module_path']!r}: only Qlib's built-in processors")
    return item["class"], check.mapping(item.get("kwargs"), f"{key}.kwargs")


def _check_chain(items: Any, key: str, expected: tuple[str, ...], check: Check) -> list[tuple[str | None, dict]]:
    if not isinstance(items, list):
        check.add(key, f"missing or not a list: ALSTM's chain is {' → '.join(expected)} (the handler's default is another)")
        return []
    chain = [_processor(item, f"{key}.{i}", check) for i, item in enumerate(items)]
    names = tuple(name for name, _ in chain)
    if names != expected:
        check.add(key, f"{' → '.join(map(str, names)) or 'empty'}: only ALSTM's chain {' → '.join(expected)} is implemented (§5.1)")
        return []
    return chain


def _check_infer_processors(items: Any, key: str, expected: tuple[str, ...], fit_start: str, fit_end: str,
                            check: Check) -> None:
    chain = _check_chain(items, key, expected, check)
    if not chain:
        return
    if expected[0] == "FilterCol":  # Alpha158: ALSTM keeps 20 columns; Alpha360 keeps all 360
        (_, filter_kwargs), chain = chain[0], chain[1:]
        check.unknown(filter_kwargs, f"{key}.0.kwargs", {"fields_group", "col_list"})
        check.equals(filter_kwargs.get("fields_group", "feature"), f"{key}.0.kwargs.fields_group", {"feature"}, "FilterCol applies to features")
        columns = filter_kwargs.get("col_list", [])
        listed = set(columns) if isinstance(columns, list) else set()
        if listed != set(ALSTM_FEATURES):
            missing = sorted(set(ALSTM_FEATURES) - listed)
            extra = sorted(listed - set(ALSTM_FEATURES))
            check.add(f"{key}.0.kwargs.col_list", f"must be ALSTM's 20 Alpha158 columns (order is free, §3); missing {missing}, extra {extra}")
    first = len(expected) - 2  # RobustZScoreNorm's index in the file
    (_, norm_kwargs), (_, fill_kwargs) = chain
    key_norm, key_fill = f"{key}.{first}.kwargs", f"{key}.{first + 1}.kwargs"

    check.unknown(norm_kwargs, key_norm, {"fields_group", "clip_outlier", "fit_start_time", "fit_end_time"})
    check.equals(norm_kwargs.get("fields_group", "feature"), f"{key_norm}.fields_group", {"feature"}, "the norm applies to features")
    check.equals(norm_kwargs.get("clip_outlier", True), f"{key_norm}.clip_outlier", {True}, "the norm clips at ±3 (§5.1)")
    # The handler passes its fit window to the processor; an explicit, different one is not modelled.
    for name, handler_value in (("fit_start_time", fit_start), ("fit_end_time", fit_end)):
        if name in norm_kwargs and check.date(norm_kwargs[name], f"{key_norm}.{name}") != handler_value:
            check.add(f"{key_norm}.{name}", f"differs from the handler's {name} {handler_value}; one fit window only")

    check.unknown(fill_kwargs, key_fill, {"fields_group", "fill_value"})
    check.equals(fill_kwargs.get("fields_group", "feature"), f"{key_fill}.fields_group", {"feature"}, "Fillna applies to features")
    check.equals(fill_kwargs.get("fill_value", 0), f"{key_fill}.fill_value", {0}, "missing features become 0 (§5.1)")


def _check_learn_processors(items: Any, key: str, check: Check) -> None:
    chain = _check_chain(items, key, ("DropnaLabel", "CSRankNorm"), check)
    if not chain:
        return
    (_, drop_kwargs), (_, rank_kwargs) = chain
    check.unknown(drop_kwargs, f"{key}.0.kwargs", {"fields_group"})
    check.equals(drop_kwargs.get("fields_group", "label"), f"{key}.0.kwargs.fields_group", {"label"}, "rows are dropped by their label")
    check.unknown(rank_kwargs, f"{key}.1.kwargs", {"fields_group"})
    check.equals(rank_kwargs.get("fields_group"), f"{key}.1.kwargs.fields_group", {"label"}, "CSRankNorm ranks the label (§5.1)")


