"""Executors chosen by the environment: the default stays in-process; the multiprocess
executor runs the data steps in separate processes into the same rows; the k8s executor's
training step renders to a Kubernetes Job holding a GPU on a GPU node (dagster-k8s's own
job builder, no cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest

from alstm_pipeline.defs import executor
from alstm_pipeline.runner import RANGE_END_TAG, RANGE_START_TAG
from alstm_pipeline.warehouse import Warehouse
from alstm_pipeline_tests.conftest import REPO_ROOT, SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline
from alstm_pipeline_tests.scaleout_jobs import DATA_ASSETS, data_job

INSTRUMENTS = ["AAPL", "IBM", "KO", "XOM"]
DAYS = ("2016-01-04", "2016-02-26")


def test_in_process_is_the_default_and_the_others_are_configured(monkeypatch):
    monkeypatch.delenv(executor.EXECUTOR_ENV, raising=False)
    assert executor.project_executor() is dg.in_process_executor
    monkeypatch.setenv(executor.EXECUTOR_ENV, "multiprocess")
    monkeypatch.setenv(executor.MAX_CONCURRENT_ENV, "3")
    chosen = executor.project_executor()
    assert chosen.name == "multiprocess"
    pytest.importorskip("dagster_k8s")
    monkeypatch.setenv(executor.EXECUTOR_ENV, "k8s")
    assert executor.project_executor().name == "k8s"
    monkeypatch.setenv(executor.EXECUTOR_ENV, "docker")
    with pytest.raises(ValueError, match="in_process, multiprocess, k8s"):
        executor.project_executor()
    monkeypatch.setenv(executor.EXECUTOR_ENV, "multiprocess")
    monkeypatch.setenv(executor.MAX_CONCURRENT_ENV, "0")
    with pytest.raises(ValueError, match="≥ 1"):
        executor.project_executor()


def _universe(home) -> str:
    path = home / "universe.txt"
    path.write_text("".join(f"{code}\t2000-01-01\t2030-12-31\n" for code in INSTRUMENTS))
    return str(path)


def test_multiprocess_executor_runs_the_data_steps_in_their_own_processes(tmp_path, monkeypatch):
    home = tmp_path / "multiprocess"
    home.mkdir()
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(home))
    monkeypatch.setenv("ALSTM_PIPELINE_SOURCE", str(SAMPLE_PATH))
    monkeypatch.setenv("ALSTM_PIPELINE_UNIVERSE", _universe(home))
    monkeypatch.setenv(executor.EXECUTOR_ENV, "multiprocess")
    monkeypatch.setenv(executor.MAX_CONCURRENT_ENV, "2")
    (tmp_path / "instance").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "instance")) as instance:
        result = dg.execute_job(dg.reconstructable(data_job), instance=instance,
                                tags={RANGE_START_TAG: DAYS[0], RANGE_END_TAG: DAYS[1]})
        assert result.success
        starts = [event for event in result.all_events if event.event_type_value == "STEP_START"]
        assert {event.step_key for event in starts} >= set(DATA_ASSETS)
        pids = {event.pid for event in starts}
        assert os.getpid() not in pids and len(pids) == len(starts)  # a process per step

    reference = TestPipeline(tmp_path / "in_process", SAMPLE_PATH, _universe(tmp_path))
    reference.run(",".join(DATA_ASSETS), *DAYS)
    written = Warehouse(home / "warehouse.duckdb")
    for table in ("raw_ohlcv", "alpha158_features", "labels"):
        query = f"SELECT * FROM {table} ORDER BY instrument, date"
        got, expected = written.query(query), reference.warehouse.query(query)
        assert len(got) > 0
        pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_training_step_asks_kubernetes_for_a_gpu_node():
    job = pytest.importorskip("dagster_k8s.job")
    env = {**os.environ, executor.TRAINING_GPU_ENV: "1", executor.GPU_NODE_SELECTOR_ENV: "cloud.example/accelerator=h100"}
    script = ("import json; from alstm_pipeline.definitions import build_definitions; "
              "print(json.dumps(build_definitions().resolve_assets_def('alstm_model').op.tags))")
    tags = json.loads(subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT, check=True,
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1])
    user_config = job.get_user_defined_k8s_config(tags)  # dagster-k8s validates the tag's schema here
    rendered = job.construct_dagster_k8s_job(
        job.DagsterK8sJobConfig(job_image="alstm-pipeline:test", dagster_home="/opt/dagster/dagster_home",
                                instance_config_map="dagster-instance"),
        args=["dagster", "api", "execute_step"], job_name="dagster-step-alstm-model", user_defined_k8s_config=user_config)
    pod = rendered.spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "1"}
    assert pod.node_selector == {"cloud.example/accelerator": "h100"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]


def test_without_the_gpu_setting_the_training_step_has_no_k8s_tag(monkeypatch):
    monkeypatch.delenv(executor.TRAINING_GPU_ENV, raising=False)
    assert executor.training_op_tags() == {}
    monkeypatch.setenv(executor.TRAINING_GPU_ENV, "yes")
    with pytest.raises(ValueError, match="1 or 0"):
        executor.training_op_tags()
