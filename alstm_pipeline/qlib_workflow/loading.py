"""Reading a workflow file the way ``qrun`` does, up to the mapping the checks read.

1. render the file's ``{{ NAME }}`` variables from the environment (``templating.py``:
   nothing else of Jinja2 is allowed);
2. parse it with ruamel's safe, pure-Python loader (YAML 1.2: ``1e-3`` is a float, anchors,
   aliases and ``<<`` merge keys resolve in the parser);
3. merge it over ``BASE_CONFIG_PATH`` when given (dicts merge key by key, any other value
   replaces, the string ``__DROP__`` deletes the base's key);
4. hand the mapping to ``validation.parse_workflow``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

from alstm_pipeline.qlib_workflow.spec import DROP, WorkflowError, WorkflowSpec
from alstm_pipeline.qlib_workflow.templating import render_template
from alstm_pipeline.qlib_workflow.validation import parse_workflow


def load_workflow(path: str | os.PathLike, environ: Mapping[str, str] | None = None, check_data: bool = False) -> WorkflowSpec:
    """Read the workflow YAML at ``path`` (environment for its ``{{ VAR }}`` templates: ``environ``).

    With ``check_data`` the keys that depend on the data (provider, market, benchmark,
    segment dates against the source's calendar) are checked as well, in the same error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WorkflowError(path, ["the workflow file does not exist"])
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    text = render_template(path.read_text(encoding="utf-8"), environ, problems)
    if problems:
        raise WorkflowError(path, problems)  # an unrendered template is not parsed
    config = parse_yaml(text, problems)
    if problems:
        raise WorkflowError(path, problems)
    base_path = config.get("BASE_CONFIG_PATH")
    if base_path:
        base_file = _find_base_config(Path(str(base_path)), path)
        if base_file is None:
            raise WorkflowError(path, [f"BASE_CONFIG_PATH: {base_path} found neither from the working directory nor beside the file"])
        # Qlib parses the base file as plain YAML (no template rendering), then merges.
        base = parse_yaml(base_file.read_text(encoding="utf-8"), problems)
        if problems:
            raise WorkflowError(path, problems)
        config = merge_config(base, config)
    return parse_workflow(config, path, check_data=check_data)


def parse_yaml(text: str, problems: list[str]) -> dict:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        loaded = YAML(typ="safe", pure=True).load(io.StringIO(text))
    except YAMLError as error:
        problems.append(f"not valid YAML: {error}")
        return {}
    if not isinstance(loaded, dict):
        problems.append(f"the top level must be a mapping of settings, got {type(loaded).__name__}")
        return {}
    return loaded


def _find_base_config(base: Path, workflow: Path) -> Path | None:
    # Qlib's order: as given (absolute, or relative to the working directory), then beside the workflow file.
    for candidate in (base.expanduser(), workflow.parent / base):
        if candidate.is_file():
            return candidate
    return None


def merge_config(base: dict, extension: dict) -> dict:
    """``extension`` over ``base``: nested dicts merge, other values replace, "__DROP__" removes."""
    merged = dict(base)
    for key, value in extension.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = merge_config(merged[key], value)
        elif isinstance(value, str) and value == DROP:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
