"""The one Definitions object: the defs folder (assets, checks, jobs, schedules, sensor)
merged with the resources and the executor. ``dg`` finds it through ``[tool.dg]`` in
pyproject.toml, ``dagster dev`` through workspace.yaml. Loading it reads no data."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from alstm_pipeline.defs.executor import project_executor
from alstm_pipeline.defs.resources import project_resources


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """The project's definitions; ``resources`` replaces the settings' ones (tests)."""
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        # In-process by default: one process writes the DuckDB file at a time (DESIGN.md,
        # known costs), and on a 2-core machine that is also faster than a process per step.
        # ALSTM_PIPELINE_EXECUTOR picks multiprocess, docker or k8s (defs/executor.py).
        dg.Definitions(resources=resources or project_resources(), executor=project_executor()),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
