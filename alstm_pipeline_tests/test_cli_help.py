"""What `alstm-pipeline --help` and the printed commands tell a user."""

from __future__ import annotations

import pytest

from alstm_pipeline import cli
from alstm_pipeline.settings import load_settings

COMMANDS = ("run", "qlib-config", "export", "retrain", "evaluate-rolling", "ui", "mlflow")


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_reads_as_plain_text_and_lists_every_command(capsys):
    text = _help(capsys)
    assert "``" not in text
    for command in COMMANDS:
        assert command in text


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description(capsys, command):
    text = _help(capsys, command)
    usage, _, rest = text.partition("\n\n")
    description = rest.split("\n\n")[0]
    assert usage.startswith("usage: alstm-pipeline") and not description.startswith(("options:", "positional arguments:"))
    assert "``" not in text


def test_feature_set_is_a_choice_and_workflow_has_help(capsys):
    assert "{alpha158_ts,alpha360}" in _help(capsys, "run")
    assert "Qlib ALSTM workflow file" in _help(capsys, "qlib-config")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--feature-set", "alpha999"])
    assert exit_.value.code == 2
    assert "invalid choice: 'alpha999'" in capsys.readouterr().err


def test_retrain_help_says_what_a_date_after_the_data_does(capsys):
    text = " ".join(_help(capsys, "retrain").split())
    assert "default: today" in text and "2021-04-21" in text


def test_the_mlflow_command_names_this_homes_store(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path / "my home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert cli.main(["mlflow"]) == 0
    printed = capsys.readouterr().out
    # An absolute sqlite URI (four slashes), quoted for the shell: no variable left to expand.
    assert printed.startswith(f"mlflow ui --backend-store-uri 'sqlite:///{tmp_path}/my home/mlruns/mlflow.db' --host 127.0.0.1")
    assert "$" not in printed


def test_the_ui_command_opens_this_homes_instance_on_loopback(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    command, env = cli.ui_command(load_settings(), "127.0.0.1", 3000)
    assert env["DAGSTER_HOME"] == str(tmp_path / "dagster") and env["ALSTM_PIPELINE_HOME"] == str(tmp_path)
    assert command[command.index("-h") + 1] == "127.0.0.1"
    assert command[command.index("-w") + 1].endswith("workspace.yaml")
    args = cli._parse_args(["ui"])
    assert (args.host, args.port) == ("127.0.0.1", 3000)
