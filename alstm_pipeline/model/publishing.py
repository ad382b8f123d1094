"""A vintage's checkpoint folder on disk: published by a rename, removed when never registered.

A checkpoint becomes a model only when its model_registry row commits (warehouse/registry.py).
``publish_checkpoint`` writes the folder under ``<root>/.staging-<random>/`` and renames it to
``<root>/<version>``; the registry row is written after. A run killed between the two (kill -9,
OOM killer, a machine restart) leaves a folder no row names: serving looks models up in the
registry, never on disk, so it is never served, but it would stay forever. The next run that
trains (under the home's writer lock, so no other run is between its own two steps) removes
every such *orphan* with ``remove_orphaned_checkpoints``, and says which.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from alstm_pipeline.model.checkpoint import CARD_FILE, WEIGHTS_FILE, Predictor, save_checkpoint

STAGING_DIR = ".staging"


def publish_checkpoint(model: Predictor, root: str | Path, card: Mapping[str, object], name: str | None = None) -> Path:
    """Write the checkpoint under a staging name, then rename it to ``<root>/<name>``
    (default: its version): a folder under its final name is always complete."""
    root = Path(root)
    # A staging folder of its own: parallel writers (vintage_pool) share no folder to clean up.
    staging = root / f"{STAGING_DIR}-{uuid.uuid4().hex}"
    written = save_checkpoint(model, staging, card)
    final = root / (name or written.name)
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    written.rename(final)
    shutil.rmtree(staging, ignore_errors=True)
    return final


def orphaned_checkpoints(root: str | Path, registered: Iterable[str]) -> list[Path]:
    """Checkpoint folders under ``root`` that no registry row names, and staging folders.

    ``registered`` holds the registry's ``checkpoint`` paths; a folder matches by its name
    (the version), so a home moved elsewhere still recognises its own folders. Only folders
    that hold a checkpoint file count: anything else a user keeps there is left alone.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    known = {Path(str(path)).name for path in registered}
    found = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.is_symlink():
            continue
        if folder.name.startswith(STAGING_DIR):
            found.append(folder)
        elif folder.name not in known and any((folder / name).exists() for name in (CARD_FILE, WEIGHTS_FILE)):
            found.append(folder)
    return found


def remove_orphaned_checkpoints(root: str | Path, registered: Iterable[str]) -> list[Path]:
    """Delete what ``orphaned_checkpoints`` finds; returns the folders removed.

    Call it only while holding the home's writer lock: a run of its own between publishing
    a folder and registering it would otherwise lose that folder.
    """
    removed = orphaned_checkpoints(root, registered)
    for folder in removed:
        shutil.rmtree(folder)
    return removed
