"""Where a launched run's steps execute, and what the training step asks a cluster for.

Chosen by the environment of the code location (so one image serves every deployment):

- ``ALSTM_PIPELINE_EXECUTOR``: ``in_process`` (default: every step in the run's process,
  today's behaviour), ``multiprocess`` (a process per step, on the run's host or in its
  container) or ``k8s`` (a pod per step; dagster-k8s). On one Docker host the runs are
  containers (deploy/docker: DockerRunLauncher) and their steps use one of the first two.
- ``ALSTM_PIPELINE_MAX_CONCURRENT``: steps of one run at once (default: the host's cores
  for multiprocess, 4 for k8s).
- ``ALSTM_PIPELINE_TRAINING_GPU=1``: the alstm_model step asks Kubernetes for one
  ``nvidia.com/gpu`` on a node labelled ``ALSTM_PIPELINE_GPU_NODE_SELECTOR`` (``key=value``,
  default ``nvidia.com/gpu.present=true``), tolerating the usual GPU taint. Read by the k8s
  executor only; other executors ignore the tag.

What still runs one at a time: with the DuckDB-file warehouse every step that touches the
warehouse holds the home's writer lock (warehouse/writer_lock.py) — DuckDB lets one
process write the file — so parallel steps take turns on it and only work done outside
the warehouse overlaps. Rolling vintages therefore train in parallel as candidates
(vintage_pool), outside the lock, and register in order. A warehouse many processes can
write (DuckLake) lifts the lock for steps writing different partitions.

Nothing here imports dagster-k8s unless its executor is chosen.
"""

from __future__ import annotations

import json
import os

import dagster as dg

EXECUTOR_ENV = "ALSTM_PIPELINE_EXECUTOR"
MAX_CONCURRENT_ENV = "ALSTM_PIPELINE_MAX_CONCURRENT"
TRAINING_GPU_ENV = "ALSTM_PIPELINE_TRAINING_GPU"
GPU_NODE_SELECTOR_ENV = "ALSTM_PIPELINE_GPU_NODE_SELECTOR"
EXECUTORS = ("in_process", "multiprocess", "k8s")
K8S_CONFIG_TAG = "dagster-k8s/config"


def _max_concurrent(default: int) -> int:
    value = os.environ.get(MAX_CONCURRENT_ENV) or str(default)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{MAX_CONCURRENT_ENV} must be a whole number ≥ 1, not {value!r}")
    return int(value)


def project_executor() -> dg.ExecutorDefinition:
    """The executor of the settings (see the module doc); in_process by default."""
    name = os.environ.get(EXECUTOR_ENV) or "in_process"
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": _max_concurrent(len(os.sched_getaffinity(0)))},
                                                   name="multiprocess")
    if name == "k8s":
        from dagster_k8s import k8s_job_executor  # the k8s extra

        return k8s_job_executor.configured({"max_concurrent": _max_concurrent(4)}, name="k8s")
    raise ValueError(f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTORS)}, not {name!r}")


def training_op_tags() -> dict[str, str]:
    """Tags of the alstm_model step: with ``ALSTM_PIPELINE_TRAINING_GPU=1``, the k8s
    executor runs it in a pod holding one GPU on a GPU node; otherwise none."""
    flag = os.environ.get(TRAINING_GPU_ENV) or "0"
    if flag not in ("0", "1"):
        raise ValueError(f"{TRAINING_GPU_ENV} must be 1 or 0, not {flag!r}")
    if flag == "0":
        return {}
    selector = os.environ.get(GPU_NODE_SELECTOR_ENV) or "nvidia.com/gpu.present=true"
    key, _, value = selector.partition("=")
    if not key or not value:
        raise ValueError(f"{GPU_NODE_SELECTOR_ENV} must be key=value (a node label), not {selector!r}")
    config = {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "4", "memory": "16Gi"}}},
        "pod_spec_config": {
            "node_selector": {key: value},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }
    return {K8S_CONFIG_TAG: json.dumps(config)}
