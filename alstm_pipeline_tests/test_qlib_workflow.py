"""Reading Qlib workflow YAMLs: what maps onto our settings, and one error naming every key we cannot honour.

The fixtures under ``fixtures/`` are our own files in Qlib's format; the provider directory
is a temporary folder passed through the ``{{ PROVIDER_DIR }}`` template variable, as qrun
renders environment variables.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alstm_pipeline.dataset import ALSTM_FEATURES
from alstm_pipeline.evaluation import TopkDropoutConfig
from alstm_pipeline.model import TrainConfig
from alstm_pipeline.features import ALPHA360_NAMES
from alstm_pipeline.defs.partitions import FEATURE_LOOKBACK
from alstm_pipeline.qlib_workflow import WorkflowError, load_workflow, merge_config, workflow_plan
from alstm_pipeline.sources import Universe

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def provider(tmp_path) -> Path:
    root = tmp_path / "provider"
    (root / "calendars").mkdir(parents=True)
    (root / "instruments").mkdir()
    (root / "calendars" / "day.txt").write_text("2010-01-04\n2010-01-05\n")
    (root / "instruments" / "csi300.txt").write_text("SH600000\t2010-01-04\t2013-06-28\nSZ000001\t2011-03-01\t2012-05-31\n")
    (root / "instruments" / "my_universe.txt").write_text("AAPL\t2012-01-03\t2016-12-30\n")
    return root


@pytest.fixture
def env(provider) -> dict[str, str]:
    return {"PROVIDER_DIR": str(provider)}


def test_alpha158_ts_workflow_maps_onto_our_settings(env, provider):
    spec = load_workflow(FIXTURES / "qlib_alstm_alpha158.yaml", env)

    assert spec.source_path() == provider and spec.region == "cn" and spec.experiment_name == "alstm_small"
    assert spec.handler_start() == "2010-01-04"
    assert spec.normalizer_fit_window() == ("2010-01-04", "2011-12-30")
    assert spec.segment_dates() == {
        "train": ("2010-01-04", "2011-12-30"),
        "valid": ("2012-01-04", "2012-12-31"),
        "test": ("2013-01-04", "2013-06-28"),
    }
    # FilterCol's list order does not matter: the model sees Alpha158's order (§3).
    assert spec.handler.features == ALSTM_FEATURES
    # lr: 1e-3 is a float under YAML 1.2 (qrun's ruamel loader), not the string PyYAML would give.
    assert spec.train_config() == TrainConfig(
        d_feat=20, hidden_size=64, num_layers=2, dropout=0.0, n_epochs=40, lr=1e-3, early_stop=8,
        batch_size=800, loss="mse", rnn_type="GRU", seed=7, device="auto",
    )
    assert spec.train_config(score_train=False).score_train is False
    assert spec.topk_dropout_config() == TopkDropoutConfig(
        topk=30, n_drop=3, open_cost=0.0005, close_cost=0.0015, min_cost=5.0, account=5e7,
        risk_degree=0.95, trade_unit=100, limit_threshold=0.095, deal_price="close",
    )
    assert spec.backtest.benchmark == "SH000300"
    assert spec.backtest_range() == ("2013-01-04", "2013-06-28")
    assert spec.records == ("SignalRecord", "SigAnaRecord", "PortAnaRecord")
    # market csi300 → the provider's instruments/csi300.txt, readable as our Universe.
    assert spec.universe_path() == provider / "instruments" / "csi300.txt"
    assert Universe.from_file(spec.universe_path()).instruments == ["SH600000", "SZ000001"]


def test_anchors_merge_keys_and_task_placeholders_resolve_as_qrun_resolves_them(env, provider):
    spec = load_workflow(FIXTURES / "qlib_anchors_references.yaml", env)

    # << merge: the anchor's keys, overridden by the ones written beside it.
    assert (spec.model.hidden_size, spec.model.batch_size, spec.model.lr, spec.model.n_epochs) == (64, 800, 2e-4, 25)
    assert spec.model.device == "cpu"  # GPU: -1
    # <dataset.kwargs.segments.train.0> etc. are read from the task itself.
    assert spec.normalizer_fit_window() == ("2012-01-03", "2014-12-31")
    assert spec.segment_dates()["test"] == ("2016-01-04", "")  # null end = to the last day
    assert spec.backtest_range() == ("2016-01-04", "")
    # Region us: whole shares, no price limit; the merged exchange anchor deals at the open.
    config = spec.topk_dropout_config()
    assert (config.trade_unit, config.limit_threshold, config.deal_price, config.min_cost) == (1, None, "open", 1.0)
    assert (config.topk, config.n_drop, config.risk_degree, config.forbid_all_trade_at_limit) == (5, 1, 0.9, False)
    assert spec.backtest.benchmark == "^GSPC"
    assert spec.universe_path() == provider / "instruments" / "my_universe.txt"


def test_alpha360_flat_workflow_maps_onto_the_alpha360_configuration(env):
    spec = load_workflow(FIXTURES / "qlib_alstm_alpha360.yaml", env)
    assert spec.feature_set == "alpha360" and spec.handler.features == tuple(ALPHA360_NAMES)
    assert spec.model.d_feat == 6 and spec.train_config().early_stop == 20
    first, last, vintage, config = workflow_plan(spec, FEATURE_LOOKBACK.weekdays)
    assert vintage == "2013-01-04"
    for asset in ("alstm_model", "predictions"):
        assert config["ops"][asset]["config"]["feature_set"] == "alpha360"


def test_a_handler_and_model_of_different_configurations_are_refused(env, tmp_path):
    text = (FIXTURES / "qlib_alstm_alpha360.yaml").read_text()
    path = tmp_path / "mixed.yaml"
    path.write_text(text.replace("module_path: qlib.contrib.model.pytorch_alstm\n",
                                 "module_path: qlib.contrib.model.pytorch_alstm_ts\n"))
    with pytest.raises(WorkflowError, match="task.model.module_path: qlib.contrib.model.pytorch_alstm_ts does not go with"):
        load_workflow(path, env)


def test_every_unsupported_key_is_named_in_one_error(env):
    with pytest.raises(WorkflowError) as caught:
        load_workflow(FIXTURES / "qlib_unsupported_keys.yaml", env)
    keys = [problem.split(":")[0] for problem in caught.value.problems]
    assert keys == [
        "notes",
        "qlib_init.redis_port",
        "task.model.kwargs.weight_decay",
        "task.model.kwargs.loss",
        "task.model.kwargs.GPU",
        "task.dataset.kwargs.step_len",
        "task.dataset.kwargs.handler.kwargs.instruments",
        "task.dataset.kwargs.handler.kwargs.infer_processors.0.kwargs.col_list",
        "task.dataset.kwargs.handler.kwargs.learn_processors",
        "task.dataset.kwargs.handler.kwargs.label",
        "task.record.0.kwargs.ana_long_short",
        "task.record.1.kwargs.config.strategy.kwargs.method_sell",
        "task.record.1.kwargs.config.backtest.exchange_kwargs.deal_price",
        "task.record.1.kwargs.config.backtest.exchange_kwargs.volume_threshold",
        "task.record.2.class",
    ]
    assert "15 setting(s) cannot be honoured" in str(caught.value)


def test_unset_template_variable_is_an_error_not_empty_text(tmp_path):
    with pytest.raises(WorkflowError, match=r"\{\{ PROVIDER_DIR \}\} is not set"):
        load_workflow(FIXTURES / "qlib_alstm_alpha158.yaml", environ={})
    with pytest.raises(WorkflowError, match="does not exist"):
        load_workflow(tmp_path / "missing.yaml", environ={})


def test_backtest_without_exchange_kwargs_takes_qlibs_exchange_defaults(env, tmp_path):
    text = (FIXTURES / "qlib_alstm_alpha158.yaml").read_text()
    start = text.index("        exchange_kwargs:")
    end = text.index("task:")
    path = tmp_path / "no_exchange.yaml"
    path.write_text(text[:start] + text[end:])

    config = load_workflow(path, env).topk_dropout_config()
    # Exchange() defaults (not PortAnaRecord's built-in config): 15 bp / 25 bp; cn region: lots, limit.
    assert (config.open_cost, config.close_cost, config.min_cost) == (0.0015, 0.0025, 5.0)
    assert (config.trade_unit, config.limit_threshold) == (100, 0.095)


def test_base_config_path_merges_under_the_file_as_qrun_does(env, tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(
        f"BASE_CONFIG_PATH: {FIXTURES / 'qlib_alstm_alpha158.yaml'}\n"
        "qlib_init:\n    provider_uri: \"{{ PROVIDER_DIR }}\"\n"
        "market: csi500\n"  # top-level: changes nothing, the base's aliases were resolved already
        "experiment_name: __DROP__\n"
        "task:\n    model:\n        kwargs:\n            seed: 11\n            n_epochs: 5\n"
    )
    # The base file is read as plain YAML (qrun renders only the top file), so its
    # {{ PROVIDER_DIR }} is overridden here.
    spec = load_workflow(child, env)
    assert (spec.model.seed, spec.model.n_epochs, spec.model.hidden_size) == (11, 5, 64)
    assert spec.handler.instruments == "csi300"
    assert spec.experiment_name == "workflow"  # dropped → qrun's default name


def test_merge_config_merges_dicts_replaces_the_rest_and_drops_marked_keys():
    base = {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": 3}
    merged = merge_config(base, {"a": {"y": 5, "z": 6}, "b": [9], "c": "__DROP__"})
    assert merged == {"a": {"x": 1, "y": 5, "z": 6}, "b": [9]}
    assert base == {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": 3}
