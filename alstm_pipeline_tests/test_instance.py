"""The Dagster instance the CLI opens: SQLite by default, Postgres from the environment, the
bookkeeping flags, and failed partitions kept visible under the partition-subset flag."""

from __future__ import annotations

import dagster as dg
import pytest

from alstm_pipeline import instance as inst
from alstm_pipeline.cli import open_instance
from alstm_pipeline.definitions import build_definitions
from alstm_pipeline.runner import materialize
from alstm_pipeline.settings import load_settings
from alstm_pipeline_tests.conftest import REPO_ROOT, SAMPLE_PATH

POSTGRES_VARIABLES = ("URL", "HOST", "PORT", "USER", "PASSWORD", "DB")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in POSTGRES_VARIABLES:
        monkeypatch.delenv(f"ALSTM_PIPELINE_POSTGRES_{name}", raising=False)
    for name in (*inst.BOOKKEEPING_FLAGS["postgres"], "DAGSTER_HOME"):
        # set, then delete: the teardown then removes what the CLI code sets in os.environ
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path))
    monkeypatch.setenv("ALSTM_PIPELINE_SOURCE", str(SAMPLE_PATH))
    return monkeypatch


def test_sqlite_unless_a_postgres_server_is_configured(clean_env):
    assert inst.instance_storage() == "sqlite"
    clean_env.setenv("ALSTM_PIPELINE_POSTGRES_HOST", "db.internal")
    clean_env.setenv("ALSTM_PIPELINE_POSTGRES_USER", "dagster")
    clean_env.setenv("ALSTM_PIPELINE_POSTGRES_DB", "dagster")
    assert inst.instance_storage() == "postgres"


def test_every_postgres_configuration_problem_in_one_error(clean_env):
    clean_env.setenv("ALSTM_PIPELINE_POSTGRES_HOST", "db.internal")
    with pytest.raises(ValueError) as error:
        open_instance(load_settings())
    assert "ALSTM_PIPELINE_POSTGRES_USER is not set" in str(error.value)
    assert "ALSTM_PIPELINE_POSTGRES_DB is not set" in str(error.value)
    clean_env.setenv("ALSTM_PIPELINE_POSTGRES_URL", "postgresql://u:p@db/dagster")
    with pytest.raises(ValueError, match="not both.*postgresql\\+psycopg2://"):
        inst.instance_storage()


def test_postgres_instance_file_names_variables_never_secrets(clean_env):
    for name, value in {"HOST": "db.internal", "USER": "dagster", "DB": "runs", "PASSWORD": "s3cret"}.items():
        clean_env.setenv(f"ALSTM_PIPELINE_POSTGRES_{name}", value)
    text = inst.instance_yaml(inst.instance_storage())
    assert "s3cret" not in text and "db.internal" not in text
    assert "env: ALSTM_PIPELINE_POSTGRES_PASSWORD" in text
    assert "env: ALSTM_PIPELINE_POSTGRES_PORT" not in text  # unset: Dagster's default port
    assert "scheme: postgresql+psycopg2" in text
    clean_env.delenv("ALSTM_PIPELINE_POSTGRES_HOST")
    clean_env.setenv("ALSTM_PIPELINE_POSTGRES_URL", "postgresql+psycopg2://dagster:s3cret@db.internal/runs")
    text = inst.instance_yaml(inst.instance_storage())
    assert "s3cret" not in text and "env: ALSTM_PIPELINE_POSTGRES_URL" in text


def test_shipped_instance_files_match_the_generated_ones():
    assert (REPO_ROOT / "deploy" / "dagster.postgres.yaml").read_text() == inst.deploy_instance_yaml()
    root = (REPO_ROOT / "dagster.yaml").read_text()
    assert inst.COORDINATION_YAML in root and "base_dir: data/home/dagster" in root


def test_home_instance_file_follows_the_storage_but_never_replaces_a_users_file(clean_env, tmp_path):
    settings = load_settings()
    config = settings.dagster_home / "dagster.yaml"
    open_instance(settings).dispose()
    assert config.read_text() == inst.instance_yaml("sqlite")
    # A file written by an earlier version of the CLI is ours: brought up to date.
    config.write_text(inst.MARKER + ": old\nconcurrency:\n  runs:\n    max_concurrent_runs: 1\n")
    open_instance(settings).dispose()
    assert "run_monitoring" in config.read_text()
    config.write_text("telemetry:\n  enabled: false\n")
    open_instance(settings).dispose()
    assert config.read_text() == "telemetry:\n  enabled: false\n"


def test_cli_sets_the_flags_of_its_storage_unless_the_environment_does(clean_env):
    import os

    open_instance(load_settings()).dispose()
    assert os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] == "1"
    assert "DAGSTER_EVENT_BATCH_SIZE" not in os.environ  # SQLite stores a batch event by event
    clean_env.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "0")
    assert inst.apply_bookkeeping_flags("postgres") == {
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "0", "DAGSTER_EVENT_BATCH_SIZE": "1000"}


def _planned_partitions(instance, run_id) -> list[str | None]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
    return [record.event_log_entry.dagster_event.partition for record in records]


@pytest.mark.parametrize("subset_flag", ["1", "0"])
def test_a_failed_range_run_leaves_one_failed_mark_per_partition(clean_env, subset_flag):
    """raw_ohlcv alone on a fresh home fails (no universe table): a real failed range run.
    Dagster reads a partition as failed from its latest planned event in a failed run; with
    the partition-subset flag the run plans all days in one event (partition None), and the
    runner adds the per-partition marks; without the flag Dagster wrote them itself."""
    clean_env.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", subset_flag)
    instance = open_instance(load_settings())
    days = ("2016-06-27", "2016-07-01")
    (result,) = materialize(build_definitions(), "raw_ohlcv", instance, days, None, log_level="WARNING")
    assert not result.success
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE
    planned = _planned_partitions(instance, result.run_id)
    per_partition = sorted(p for p in planned if p is not None)
    assert per_partition == ["2016-06-27", "2016-06-28", "2016-06-29", "2016-06-30", "2016-07-01"]
    assert (None in planned) == (subset_flag == "1")
    assert inst.mark_failed_partitions(instance, result.run_id) == 0  # marked once, by the runner
    instance.dispose()
