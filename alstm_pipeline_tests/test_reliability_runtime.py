"""How production runs die: kill -9, SIGTERM, and what the CLI says when a step fails.

The CLI runs in a real subprocess on a 12-instrument universe and a one-year range, with
its own home (warehouse, writer lock, persistent SQLite Dagster instance) in a temp dir.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from alstm_pipeline.dead_runs import HOST_TAG, PID_TAG, reap_dead_runs
from alstm_pipeline.definitions import build_definitions
from alstm_pipeline.defs.resources import WarehouseResource
from alstm_pipeline.defs.runs import reap_dead_runs_sensor
from alstm_pipeline import progress
from alstm_pipeline.runner import failure_messages, materialize, run_stoppably
from alstm_pipeline.warehouse import Warehouse
from alstm_pipeline.warehouse.writer_lock import LOCK_FILE, take_dead_holder
from alstm_pipeline_tests.conftest import SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

INSTRUMENTS = ["AAPL", "AMZN", "BA", "C", "CVX", "GE", "IBM", "JPM", "KO", "MRK", "PG", "XOM"]
FIRST, LAST = "2014-01-02", "2014-12-31"
DATA_STEPS = "universe,raw_ohlcv,trading_calendar,alpha158_features,labels"
# A guard against a hung subprocess, not a speed requirement (the speeds are in benchmarks/).
HANG_GUARD_SECONDS = 600


def _environment(home: Path) -> dict[str, str]:
    universe = home / "universe.txt"
    universe.write_text("".join(f"{code}\t2000-01-01\t2030-12-31\n" for code in INSTRUMENTS))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ALSTM_PIPELINE_", "DAGSTER_"))}
    env.update({"ALSTM_PIPELINE_HOME": str(home), "ALSTM_PIPELINE_UNIVERSE": str(universe),
                "ALSTM_PIPELINE_SOURCE": str(SAMPLE_PATH), "ALSTM_PIPELINE_MLFLOW": "0"})
    return env


def _cli(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "alstm_pipeline.cli", *args], env=_environment(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alstm_pipeline.cli", *args], env=_environment(home),
                          capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)


def _wait_for_lock_holder(home: Path, process: subprocess.Popen) -> dict:
    """The writer lock's holder description once the CLI's run holds it (its step is running)."""
    lock = home / LOCK_FILE
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        text = lock.read_text() if lock.exists() else ""
        if text:
            return json.loads(text)
        time.sleep(0.2)
    raise AssertionError("the run never took the writer lock")


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home / "dagster"))


def _run_failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return events[-1].message if events else ""


def _kill_9_mid_run(home: Path) -> dict:
    process = _cli(home, "run", "--select", DATA_STEPS, "--start", FIRST, "--end", LAST)
    holder = _wait_for_lock_holder(home, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return holder


def test_a_run_killed_with_sigkill_is_marked_failed_by_the_next_cli_run(tmp_path):
    holder = _kill_9_mid_run(tmp_path)
    instance = _instance(tmp_path)
    assert instance.get_run_by_id(holder["run_id"]).status == dg.DagsterRunStatus.STARTED  # what wedged the queue

    after = _run_cli(tmp_path, "run", "--select", "universe")

    assert after.returncode == 0, after.stderr[-3000:]
    killed = instance.get_run_by_id(holder["run_id"])
    assert killed.status == dg.DagsterRunStatus.FAILURE
    message = _run_failure_message(instance, holder["run_id"])
    assert f"pid {holder['pid']}" in message and "died while holding the warehouse writer lock" in message
    assert "re-run" in message
    assert (tmp_path / LOCK_FILE).read_text() == ""  # the next run released the lock cleanly


def test_the_reap_sensor_frees_the_queue_after_a_sigkill(tmp_path, monkeypatch):
    holder = _kill_9_mid_run(tmp_path)
    instance = _instance(tmp_path)
    in_progress = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    assert instance.get_runs_count(in_progress) == 1  # with max_concurrent_runs 1, the UI queue waits on this

    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path))
    tick = reap_dead_runs_sensor(dg.build_sensor_context(instance=instance))

    assert holder["run_id"] in tick.skip_message
    assert instance.get_runs_count(in_progress) == 0
    assert "kill -9" in _run_failure_message(instance, holder["run_id"])
    assert reap_dead_runs_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # The daemon also watches runs that never start or never finish canceling.
    assert instance.run_monitoring_enabled


@dg.op
def _noop() -> None:
    pass


@dg.job
def _waiting_job() -> None:
    _noop()


def test_a_run_whose_process_died_before_taking_the_lock_is_found_by_its_pid(tmp_path):
    """A run killed while it waited for the lock left no holder record: its pid tag tells."""
    instance = dg.DagsterInstance.ephemeral()
    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    run = instance.create_run_for_job(_waiting_job, tags={PID_TAG: str(waiting.pid), HOST_TAG: socket.gethostname()})
    assert reap_dead_runs(instance, tmp_path, "a test") == []  # its process is alive: left alone
    waiting.kill()
    waiting.wait()
    assert reap_dead_runs(instance, tmp_path, "a test") == [run.run_id]
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert f"pid {waiting.pid}" in _run_failure_message(instance, run.run_id)


def _rows_of_source(first: str, last: str) -> int:
    bars = pd.read_parquet(SAMPLE_PATH, columns=["instrument", "date"])
    dates = pd.to_datetime(bars["date"])
    return int((bars["instrument"].isin(INSTRUMENTS) & (dates >= first) & (dates <= last)).sum())


def test_sigterm_stops_a_cli_run_like_sigint_and_records_it_canceled(tmp_path):
    process = _cli(tmp_path, "run", "--select", DATA_STEPS, "--start", FIRST, "--end", LAST)
    holder = _wait_for_lock_holder(tmp_path, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=HANG_GUARD_SECONDS)

    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "stopped by SIGTERM" in stderr.strip().splitlines()[-1]
    instance = _instance(tmp_path)
    assert instance.get_run_by_id(holder["run_id"]).status == dg.DagsterRunStatus.CANCELED
    assert take_dead_holder(tmp_path, lambda stale: pytest.fail(f"lock left held by {stale}")) is None
    # No partial partition: each table the run wrote holds its whole range or nothing.
    store = Warehouse(tmp_path / "warehouse.duckdb")
    if store.table_exists("raw_ohlcv"):
        assert int(store.query("SELECT count(*) AS n FROM raw_ohlcv")["n"].iloc[0]) == _rows_of_source(FIRST, LAST)
    if store.table_exists("alpha158_features"):
        stored = store.query("SELECT count(*) AS n, count(DISTINCT date) AS days FROM alpha158_features")
        assert int(stored["days"].iloc[0]) == int(store.query("SELECT count(*) AS n FROM trading_calendar")["n"].iloc[0])


def _failure_lines(pipeline: TestPipeline, select: str) -> list[str]:
    results = materialize(pipeline.defs, select, pipeline.instance, (FIRST, "2014-01-31"))
    assert not results[-1].success
    return failure_messages(results)


def test_a_missing_upstream_table_names_the_selection_that_builds_it(tmp_path):
    pipeline = TestPipeline(tmp_path, SAMPLE_PATH)
    lines = _failure_lines(pipeline, "universe,raw_ohlcv,alpha158_features")
    assert lines[0].startswith("alpha158_features: reads table trading_calendar")
    assert "--select '+trading_calendar'" in lines[0]
    assert not any("Dagster" in line or "Error occurred while executing" in line for line in lines)


def test_a_reader_holding_the_file_is_named_with_its_pid_on_the_last_lines(tmp_path):
    store = Warehouse(tmp_path / "warehouse.duckdb")
    with store.connect() as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    reader = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(store.path)!r}, "
                               "read_only=True); print('open', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        pipeline = TestPipeline(tmp_path, SAMPLE_PATH)
        impatient = WarehouseResource(path=str(store.path), lock_wait_seconds=1.0)
        pipeline.defs = build_definitions({**pipeline.defs.resources, "warehouse": impatient})
        lines = _failure_lines(pipeline, "universe")
    finally:
        reader.kill()
        reader.wait()
    assert lines[0].startswith("universe: ")
    assert f"held by process {reader.pid}" in lines[0] and "Fix: close that connection" in lines[0]
    assert not any("DagsterExecutionStepExecutionError" in line for line in lines)


def test_the_cli_last_lines_say_what_failed_and_how_to_fix_it(tmp_path):
    failed = _run_cli(tmp_path, "run", "--select", "universe,raw_ohlcv,alpha158_features", "--start", FIRST,
                      "--end", "2014-01-31")
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-3:]
    assert last[0].startswith("alstm-pipeline: FAILED after")
    assert "select '+trading_calendar'" in last[1]
    assert "full trace: run" in last[2]


def test_training_reports_batches_within_an_epoch_with_an_eta(golden_dir, monkeypatch):
    from alstm_pipeline.dataset import DATA_COLUMNS, build_samples
    from alstm_pipeline.model import TrainConfig, train_alstm

    monkeypatch.setattr(progress, "REPORT_EVERY_SECONDS", 0.0)  # every batch instead of every 30 s
    processed = pd.read_parquet(golden_dir / "alstm_processed.parquet")
    frame = processed[processed["instrument"].isin(sorted(processed["instrument"].unique())[:8])]
    frame = frame.rename(columns={"LABEL0_learn": "LABEL0"}).dropna(subset=["LABEL0"])[list(DATA_COLUMNS)]
    calendar = pd.DatetimeIndex(np.unique(frame["date"]))
    train = build_samples(frame, "2012-01-01", "2014-12-31", calendar)
    valid = build_samples(frame, "2015-01-01", "2015-12-31", calendar)
    lines: list[str] = []
    train_alstm(train, valid, TrainConfig(seed=0, n_epochs=1, early_stop=1), log=lines.append)
    batches = len(train) // 800
    reports = [line for line in lines if line.startswith("epoch 0: training batches:")]
    assert len(reports) == batches
    assert reports[0].startswith(f"epoch 0: training batches: 1/{batches} (")
    assert "left" in reports[0] and "left" not in reports[-1]  # an ETA until the last batch


def test_a_cli_run_reports_progress_in_the_terminal_and_the_runs_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "REPORT_EVERY_SECONDS", 0.0)
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")  # as the CLI runs (instance.py)
    pipeline = TestPipeline(tmp_path, SAMPLE_PATH)
    outcome = run_stoppably(lambda: materialize(pipeline.defs, "universe,raw_ohlcv", pipeline.instance,
                                                (FIRST, "2014-03-31")), pipeline.instance)
    assert outcome.stopped_by is None and outcome.results[-1].success
    run_id = outcome.results[-1].run_id
    out = capsys.readouterr().out
    assert f"alstm-pipeline: run {run_id[:8]}: still running after" in out
    # The total counts partitions, whether Dagster planned them one event each or one subset
    # per asset (the partition-subset flag): raw_ohlcv's weekdays, and universe once
    # (unpartitioned).
    totals = {int(total) for total in re.findall(r"\d+/(\d+) partition materialisations", out)}
    assert totals == {len(pd.bdate_range(FIRST, "2014-03-31")) + 1}, out[-2000:]
    notes = [event.message for event in pipeline.instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
    assert any(note.startswith("still running after") for note in notes)


def test_a_steps_own_error_is_shown_without_dagsters_wrapper(tmp_path):
    pipeline = TestPipeline(tmp_path, SAMPLE_PATH)
    results = materialize(pipeline.defs, "alstm_model", pipeline.instance, vintage="2015-07-01",
                          run_config={"ops": {"alstm_model": {"config": {"feature_set": "alpha999"}}}})
    (line, trace) = failure_messages(results)
    assert line.startswith("alstm_model: alstm_model 2015-07-01: ") and "alpha999" in line
    assert "Dagster" not in line and "Error occurred while executing" not in line
    assert results[-1].run_id in trace
