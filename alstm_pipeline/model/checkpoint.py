"""Model checkpoints: safetensors weights + a JSON card, one folder per version.

A checkpoint holds one model (Qlib's state_dict keys, loadable into Qlib's ALSTMModel) or
an ensemble of K seeds' models (keys ``members.<i>.<Qlib key>``, the card's ``seeds`` in
member order); a one-seed ensemble is saved as its bare model, so it stays Qlib-loadable.

Layout: ``<root>/<version>/model.safetensors`` and ``<root>/<version>/card.json``. A
version is ``<UTC timestamp>-<first 8 hex of the weights' SHA-256>``, e.g.
``20240105T093000Z-1a2b3c4d``: versions sort chronologically as plain strings, and the
hash tells two models trained in the same second apart (and identical weights alike).
No pickle: weights load with safetensors, the card is JSON; both files are written to a
temporary name and renamed, so a killed run never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from alstm_pipeline.model.ensemble import SeedEnsemble
from alstm_pipeline.model.network import ALSTMModel, parameter_count

Predictor = ALSTMModel | SeedEnsemble

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read; the message names the file."""


def _stored_module(model: Predictor) -> torch.nn.Module:
    """What is written: the bare model for a model or a one-seed ensemble, else the ensemble."""
    if isinstance(model, SeedEnsemble) and len(model) == 1:
        return model.members[0]
    return model


def _cpu_state(model: Predictor) -> dict[str, torch.Tensor]:
    state = _stored_module(model).state_dict()
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def weights_sha256(model: Predictor) -> str:
    """SHA-256 over the parameter names, shapes and bytes, in state_dict order."""
    digest = hashlib.sha256()
    for key, tensor in _cpu_state(model).items():
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def checkpoint_version(model: Predictor, when: datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-<hash8>``: UTC time (now by default) + short hash of the weights."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{when:%Y%m%dT%H%M%SZ}-{weights_sha256(model)[:8]}"


def code_version() -> str:
    """Package version, plus the git commit when the package runs from a checkout."""
    try:
        version = metadata.version("alstm_pipeline")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"alstm_pipeline {version}" + (f" (git {commit})" if commit else "")


def _write_atomically(path: Path, write) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def save_checkpoint(model: Predictor, root: str | Path, card: Mapping[str, object]) -> Path:
    """Write ``<root>/<version>/model.safetensors`` and ``card.json``; returns that folder.

    `model` is an ALSTMModel or a SeedEnsemble. The version is the card's ``version``
    (build_card sets it) or, when absent, a fresh one for now. The stored card also gets
    the architecture, per-model parameter count, ensemble size, seeds (an ensemble's) and
    weights hash, so `load_checkpoint` needs nothing else.
    """
    weights_hash = weights_sha256(model)
    version = str(card.get("version") or checkpoint_version(model))
    if not version.endswith("-" + weights_hash[:8]):
        raise CheckpointError(
            f"card version {version!r} does not end in this model's weights hash {weights_hash[:8]!r}: "
            f"the card belongs to other weights"
        )
    folder = Path(root) / version
    full_card = {
        **dict(card),
        "version": version,
        "architecture": model.architecture(),
        "parameter_count": parameter_count(_members(model)[0]),
        "ensemble_size": len(_members(model)),
        "weights_sha256": weights_hash,
    }
    if isinstance(model, SeedEnsemble):
        if "seeds" in card and list(card["seeds"]) != list(model.seeds):
            raise CheckpointError(f"card seeds {card['seeds']} differ from the ensemble's seeds {model.seeds}")
        full_card["seeds"] = list(model.seeds)
    try:
        card_text = json.dumps(full_card, indent=2, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / CARD_FILE}: card is not plain JSON ({error})") from error
    folder.mkdir(parents=True, exist_ok=True)
    state = _cpu_state(model)
    _write_atomically(folder / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    _write_atomically(folder / CARD_FILE, lambda p: p.write_text(card_text + "\n"))
    return folder


def _members(model: Predictor) -> list[ALSTMModel]:
    return list(model.members) if isinstance(model, SeedEnsemble) else [model]


def _read_card(card_path: Path) -> dict[str, object]:
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError as error:
        raise CheckpointError(f"{card_path}: checkpoint card is missing") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{card_path}: unreadable checkpoint card ({error})") from error
    if not isinstance(card, dict) or not isinstance(card.get("architecture"), dict):
        raise CheckpointError(f"{card_path}: checkpoint card has no 'architecture' entry")
    return card


def load_checkpoint(path: str | Path, expected_sha256: str | None = None) -> tuple[Predictor, dict[str, object]]:
    """Read a checkpoint folder → (predictor in eval mode on the CPU, card).

    The predictor is an ALSTMModel for a one-seed checkpoint (and for checkpoints written
    before seeds existed), a SeedEnsemble when the card's ``ensemble_size`` is above 1.
    A missing, truncated or corrupt file, weights of the wrong shape, or weights that do
    not match the card's hash raise CheckpointError naming the file. ``expected_sha256``
    (the model registry's) must match too: the card travels with the weights, so a folder
    whose files were both replaced still matches its own card, never the registry.
    """
    folder = Path(path)
    card_path, weights_path = folder / CARD_FILE, folder / WEIGHTS_FILE
    card = _read_card(card_path)
    size = card.get("ensemble_size", 1)
    seeds = card.get("seeds")
    if not isinstance(size, int) or size < 1 or (size > 1 and (not isinstance(seeds, list) or len(seeds) != size)):
        raise CheckpointError(f"{card_path}: ensemble_size {size!r} does not fit seeds {seeds!r}")
    try:
        members = [ALSTMModel(**card["architecture"]) for _ in range(size)]
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{card_path}: bad architecture {card['architecture']} ({error})") from error
    model = members[0] if size == 1 else SeedEnsemble(members, seeds)
    if not weights_path.exists():
        raise CheckpointError(f"{weights_path}: weights file is missing")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path}: truncated or corrupt weights file ({error})") from error
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{weights_path}: weights do not fit the architecture in {CARD_FILE} ({error})"
        ) from error
    found_hash = weights_sha256(model)
    expected_hash = card.get("weights_sha256")
    if expected_hash is not None and found_hash != expected_hash:
        raise CheckpointError(f"{weights_path}: weights do not match the hash recorded in {CARD_FILE}")
    if expected_sha256 is not None and found_hash != expected_sha256:
        raise CheckpointError(
            f"{weights_path}: weights (sha256 {found_hash[:12]}…) are not the ones the model registry "
            f"recorded (sha256 {str(expected_sha256)[:12]}…): the folder was replaced or altered; "
            "retrain this vintage rather than serve it"
        )
    return model.eval(), card


def load_registered(row: Mapping[str, object]) -> tuple[Predictor, dict[str, object]]:
    """The checkpoint of a model_registry row, verified against the row's ``sha256``."""
    return load_checkpoint(str(row["checkpoint"]), expected_sha256=str(row["sha256"]))


def list_checkpoints(root: str | Path) -> list[Path]:
    """Version folders under `root` that hold a card, oldest first (versions sort by time)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / CARD_FILE).is_file())


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest version folder under `root`, or None when there is none."""
    versions = list_checkpoints(root)
    return versions[-1] if versions else None
