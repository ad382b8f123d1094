"""Read a Qlib workflow YAML of the ALSTM family into a typed, frozen ``WorkflowSpec``.

Pure: no Dagster. By stage:

- ``templating``: the file's ``{{ NAME }}`` environment variables, nothing else of Jinja2;
- ``loading``: YAML 1.2, ``BASE_CONFIG_PATH`` merging — ``load_workflow(path)``;
- ``validation`` (+ ``records``): every key checked, one ``WorkflowError`` naming each key
  that cannot be honoured; ``data_checks``: the keys that depend on the data;
- ``spec``: the typed result; ``run_config``: the spec → the assets' partitions and config.
"""

from alstm_pipeline.qlib_workflow.loading import load_workflow, merge_config
from alstm_pipeline.qlib_workflow.run_config import run_tags, workflow_plan
from alstm_pipeline.qlib_workflow.spec import (
    BacktestSpec,
    HandlerSpec,
    ModelSpec,
    WorkflowError,
    WorkflowSpec,
    resolve_instruments,
)
from alstm_pipeline.qlib_workflow.validation import parse_workflow

__all__ = [
    "BacktestSpec",
    "HandlerSpec",
    "ModelSpec",
    "WorkflowError",
    "WorkflowSpec",
    "load_workflow",
    "merge_config",
    "parse_workflow",
    "resolve_instruments",
    "run_tags",
    "workflow_plan",
]
