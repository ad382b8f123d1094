"""Shared fixtures: where the real data and Qlib's golden outputs live.

The complete golden files and the full S&P panel sit beside the repository
(``../shared``), as in CI; ``ALSTM_SHARED_DIR`` points elsewhere. A fresh clone has no
such folder, so the tests fall back to what the repository carries: the vendored golden
slices (``alstm_pipeline_tests/golden``, see its README) and the bundled 100-stock sample
(``data/sp500_sample.parquet``). The few tests about something only the full panel has
use ``full_panel_path`` and are skipped with the reason without it, never faked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Pipeline runs in tests do not log to MLflow (each would create a store, seconds apiece);
# the modules that check the logging switch it back on (test_qlib_run, test_tracking).
os.environ.setdefault("ALSTM_PIPELINE_MLFLOW", "0")
# The tests train small vintages serving from 2014–2016 and score their days: the scoring
# partitions start at the data's first day here, not at the fixed split's 2017-01-01
# (test_webserver checks the default in a webserver started without this).
os.environ.setdefault("ALSTM_PIPELINE_SCORING_START", "2000-01-03")

# The warehouse backends (DuckDB file, DuckLake catalogs) as a parametrised fixture.
pytest_plugins = ["alstm_pipeline_tests.backends"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("ALSTM_SHARED_DIR", REPO_ROOT.parent / "shared"))
SHARED_GOLDEN_DIR = SHARED_DIR / "golden"
VENDORED_GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
# The complete files when present (more rows compared), else the vendored slices: the
# golden tests compare on the rows the folder holds, so the same assertions run on both.
GOLDEN_DIR = SHARED_GOLDEN_DIR if SHARED_GOLDEN_DIR.is_dir() else VENDORED_GOLDEN_DIR
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
    """A Parquet panel in the shared panel's columns: the full 403-stock panel when
    present, else the bundled sample (100 of its stocks, 2007-06 .. 2021-04)."""
    return PANEL_PATH if PANEL_PATH.exists() else SAMPLE_PATH


@pytest.fixture(scope="session")
def full_panel_path() -> Path:
    """Only the full panel: for tests about what the sample does not hold."""
    return _require(PANEL_PATH)
