"""Shared fixtures: where the real data and Qlib's golden outputs live.

The shared panel and the golden files sit beside the repository (``../shared``), as in
CI; ``ALSTM_SHARED_DIR`` points elsewhere. Tests that need them are skipped with the
reason when they are absent (a fresh clone without the shared folder), never faked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("ALSTM_SHARED_DIR", REPO_ROOT.parent / "shared"))
GOLDEN_DIR = SHARED_DIR / "golden"
PANEL_PATH = SHARED_DIR / "data" / "sp500_daily.parquet"
SAMPLE_PATH = REPO_ROOT / "data" / "sp500_sample.parquet"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing (set ALSTM_SHARED_DIR to the folder holding golden/ and data/)")
    return path


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _require(GOLDEN_DIR)


@pytest.fixture(scope="session")
def panel_path() -> Path:
    return _require(PANEL_PATH)
