"""The Qlib user's door: templates that could run code are refused before anything renders,
Qlib's own two ALSTM files are read as Qlib reads them, and the keys that depend on the
data (provider, market, benchmark, segment dates) are checked up front in the same error.

Qlib's files are vendored unmodified (fixtures/qlib_examples, MIT, see its README); the
"bundled sample" provider is a folder holding the repository's sample Parquet file.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from alstm_pipeline import cli
from alstm_pipeline.qlib_workflow import WorkflowError, load_workflow, run_tags
from alstm_pipeline.qlib_workflow.templating import render_template
from alstm_pipeline_tests.conftest import SAMPLE_PATH

FIXTURES = Path(__file__).parent / "fixtures"
QLIB_EXAMPLES = FIXTURES / "qlib_examples"
SAMPLE_CODES = ["AAPL", "AMZN", "BA", "C", "CVX", "GE", "IBM", "JPM", "KO", "MRK", "PG", "XOM"]

PAYLOADS = {
    "globals": "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
    "cycler": "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "mro": ("{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
            "{{ c('touch MARKER', shell=True) }}{% endif %}{% endfor %}"),
}


@pytest.fixture
def sample_provider(tmp_path) -> Path:
    """A provider folder on the bundled sample, with a market file of 12 of its names."""
    root = tmp_path / "sample_provider"
    (root / "instruments").mkdir(parents=True)
    (root / SAMPLE_PATH.name).symlink_to(SAMPLE_PATH)
    (root / "instruments" / "sample12.txt").write_text("".join(f"{c}\t2000-01-01\t2030-12-31\n" for c in SAMPLE_CODES))
    return root


def _workflow_with(tmp_path: Path, provider_line: str) -> Path:
    text = (FIXTURES / "qlib_alstm_sample.yaml").read_text().replace('    provider_uri: "{{ PROVIDER_DIR }}"', provider_line)
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_a_template_that_reaches_python_is_refused_and_nothing_runs(name, tmp_path, monkeypatch):
    marker = tmp_path / "x"
    monkeypatch.chdir(tmp_path)
    payload = PAYLOADS[name].replace("MARKER", str(marker))
    path = _workflow_with(tmp_path, f'    provider_uri: "{payload}"')
    line = path.read_text().splitlines().index(f'    provider_uri: "{payload}"') + 1
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path, {"PROVIDER_DIR": str(tmp_path)})
    assert not marker.exists()
    message = str(caught.value)
    assert f"template line {line}:" in message and "nothing was rendered" in message
    assert "attribute access" in message or "a loop" in message
    # The CLI path: the same refusal, exit 2, no side effect, no home created.
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path / "home"))
    assert cli.main(["run", "--qlib-config", str(path)]) == 2
    assert cli.main(["qlib-config", str(path)]) == 2
    assert not marker.exists() and not (tmp_path / "home").exists()


def test_refused_templates_are_named_line_by_line_without_their_values():
    text = "a: {{ HOME }}\nb: {{ HOME.upper() }}\nc: {{ HOME | lower }}\nd: {{ HOME[0] }}\ne: {% set x = 1 %}\n"
    problems: list[str] = []
    assert render_template(text, {"HOME": "/secret/home"}, problems) == text  # not rendered
    assert [p.split(":")[0] for p in problems] == ["template line 2", "template line 3", "template line 4", "template line 5"]
    assert "attribute access" in problems[0] and "a call" in problems[0]
    assert "the filter |lower" in problems[1] and "item access" in problems[2] and "an assignment" in problems[3]
    assert not any("/secret/home" in p for p in problems)


def test_plain_variables_and_defaults_render():
    problems: list[str] = []
    text = 'p: "{{ DATA_DIR }}"\nq: {{ MISSING | default("fallback") }}\n'
    assert render_template(text, {"DATA_DIR": "/data"}, problems) == 'p: "/data"\nq: fallback\n'
    assert problems == []
    # Names Jinja2 would otherwise provide (lipsum, range, cycler) are not there at all.
    render_template("x: {{ lipsum }}", {}, problems)
    assert problems == ["template variable {{ lipsum }} is not set in the environment (Qlib would insert empty text)"]


def test_qlibs_unmodified_alpha158_file_on_the_sample_names_its_benchmark_and_market(sample_provider, tmp_path, capsys, monkeypatch):
    # "On the bundled sample": only the provider is pointed at it (a child file, as a Qlib user
    # would write); market csi300 and benchmark SH000300 stay Qlib's.
    child = tmp_path / "on_sample.yaml"
    child.write_text(f"BASE_CONFIG_PATH: {QLIB_EXAMPLES / 'workflow_config_alstm_Alpha158.yaml'}\n"
                     f"qlib_init:\n    provider_uri: {sample_provider}\n    region: cn\n")
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path / "home"))
    began = time.perf_counter()
    assert cli.main(["run", "--qlib-config", str(child)]) == 2
    seconds = time.perf_counter() - began
    err = capsys.readouterr().err
    assert "task.dataset.kwargs.handler.kwargs.instruments: 'csi300': no instruments file" in err
    assert "task.record.2.kwargs.config.backtest.benchmark: SH000300 has no bars" in err and "benchmark: null" in err
    assert "Nothing was run" in err and not (tmp_path / "home").exists()
    # The whole file is read as Qlib reads it: nothing but the data-dependent keys is refused.
    assert err.count("\n  - ") == 2, err
    print(f"refused in {seconds:.1f} s")  # the bound is a minute; no timing assertion here


def test_qlibs_unmodified_files_elsewhere_name_their_provider(tmp_path):
    for name in ("workflow_config_alstm_Alpha158.yaml", "workflow_config_alstm_Alpha360.yaml"):
        with pytest.raises(WorkflowError) as caught:
            load_workflow(QLIB_EXAMPLES / name, environ={})
        assert [p.split(":")[0] for p in caught.value.problems] == [
            "qlib_init.provider_uri", "task.dataset.kwargs.handler.kwargs.instruments"]


def _adapted(tmp_path: Path, name: str, provider: Path) -> Path:
    """Qlib's file with only provider, market, benchmark and epochs adapted, as the docs say."""
    text = (QLIB_EXAMPLES / name).read_text()
    text = text.replace('provider_uri: "~/.qlib/qlib_data/cn_data"', f"provider_uri: {provider}")
    text = text.replace("market: &market csi300", "market: &market sample12")
    text = text.replace("benchmark: &benchmark SH000300", "benchmark: &benchmark INTC")
    text = text.replace("n_epochs: 200", "n_epochs: 1")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_qlibs_alpha360_file_is_accepted_and_its_rnn_type_recorded(sample_provider, tmp_path):
    spec = load_workflow(_adapted(tmp_path, "workflow_config_alstm_Alpha360.yaml", sample_provider), check_data=True)
    assert spec.feature_set == "alpha360" and spec.model.d_feat == 6 and spec.model.n_epochs == 1
    assert spec.train_config().rnn_type == "GRU" and spec.model.rnn_type_requested == "LSTM"
    assert [w.split(":")[0] for w in spec.warnings] == ["task.model.kwargs.rnn_type"]
    assert "GRU" in spec.warnings[0]
    assert run_tags(spec)["qlib/rnn_type_requested"].startswith("LSTM")
    assert spec.backtest.benchmark == "INTC" and spec.experiment_name == "workflow"


def test_qlibs_alpha158_file_adapted_to_the_sample_is_accepted(sample_provider, tmp_path):
    spec = load_workflow(_adapted(tmp_path, "workflow_config_alstm_Alpha158.yaml", sample_provider), check_data=True)
    assert spec.feature_set == "alpha158_ts" and spec.warnings == () and spec.segment_dates()["test"] == ("2017-01-01", "2020-08-01")


def test_segments_outside_the_data_and_a_market_without_bars_are_named(sample_provider, tmp_path):
    (sample_provider / "instruments" / "elsewhere.txt").write_text("SH600000\t2010-01-04\t2020-12-31\n")
    text = (FIXTURES / "qlib_alstm_sample.yaml").read_text()
    text = text.replace('"{{ PROVIDER_DIR }}"', str(sample_provider)).replace("market: &market sample12", "market: &market elsewhere")
    text = text.replace("test: [2015-04-01, 2015-06-30]", "test: [2030-01-01, 2030-06-28]")
    path = tmp_path / "late.yaml"
    path.write_text(text)
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path, check_data=True)
    problems = "\n".join(caught.value.problems)
    assert "task.dataset.kwargs.handler.kwargs.instruments: market 'elsewhere': none of its 1 instruments (SH600000)" in problems
    assert "task.dataset.kwargs.segments.test: 2030-01-01..2030-06-28 holds no trading day of the data" in problems


def _alpha360_sample(tmp_path: Path, provider: Path) -> Path:
    """The sample workflow in the shape of Qlib's Alpha360 file: no FilterCol, the Alpha360
    handler, DatasetH without windows, the flat model with d_feat 6 and rnn_type LSTM."""
    text = (FIXTURES / "qlib_alstm_sample.yaml").read_text().replace('"{{ PROVIDER_DIR }}"', str(provider))
    start = text.index("        - class: FilterCol")
    text = text[:start] + text[text.index("        - class: RobustZScoreNorm"):]
    text = text.replace("class: Alpha158", "class: Alpha360").replace("class: TSDatasetH", "class: DatasetH")
    text = text.replace("            step_len: 20\n", "").replace("pytorch_alstm_ts", "pytorch_alstm")
    text = text.replace("d_feat: 20", "d_feat: 6").replace("n_epochs: 2", "n_epochs: 1").replace("seed: 11", "seed: 11\n            rnn_type: LSTM")
    text = text.replace("experiment_name: alstm_sample", "experiment_name: alstm_sample_360")
    path = tmp_path / "alpha360_sample.yaml"
    path.write_text(text)
    return path


def test_an_alpha360_workflow_runs_to_a_backtest_in_its_experiment(sample_provider, tmp_path, monkeypatch):
    import dagster as dg

    from alstm_pipeline.warehouse import Warehouse, registry, tables

    path = _alpha360_sample(tmp_path, sample_provider)
    instance = dg.DagsterInstance.ephemeral()  # the persistent one costs more than the graph here
    monkeypatch.setattr(cli, "open_instance", lambda settings: instance)
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path / "home"))
    for name in ("ALSTM_PIPELINE_START", "ALSTM_PIPELINE_END", "ALSTM_PIPELINE_SOURCE", "ALSTM_PIPELINE_UNIVERSE"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["run", "--qlib-config", str(path)]) == 0
    store = Warehouse(tmp_path / "home" / "warehouse.duckdb")
    (row,) = registry.read_registry(store).itertuples()
    assert (row.feature_set, row.experiment, row.vintage, row.status) == ("alpha360", "alstm_sample_360", "2015-04-01", "promoted")
    scores = tables.read_predictions(store, experiment="alstm_sample_360")
    assert len(scores) > 0 and set(scores["model_version"]) == {row.version} and tables.read_predictions(store).empty
    assert len(tables.read_backtest(store, experiment="alstm_sample_360")) > 0
    assert store.table_exists("alpha360_features") and not store.table_exists("alpha158_features")
    tags = [run.tags for run in instance.get_runs()]
    assert all(t.get("qlib/experiment") == "alstm_sample_360" for t in tags)
    assert all(t.get("qlib/rnn_type_requested", "").startswith("LSTM") for t in tags)
