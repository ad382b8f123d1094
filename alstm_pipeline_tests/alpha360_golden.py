"""Where the Alpha360 golden files are: shared folder first, else the vendored slice.

Order: ``$ALSTM_SHARED_DIR/golden/alpha360``, ``../shared/golden/alpha360`` (beside the
repository), then ``alstm_pipeline_tests/golden/alpha360`` (a subset of the rows, see its
README). The input is the shared ``alpha360/input.parquet`` or, with the vendored slice,
``alstm_pipeline_tests/golden/input.parquet`` (byte-identical, vendored once). Missing files
skip the test with the reason, never fake it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
VENDORED_DIR = TESTS_DIR / "golden" / "alpha360"
VENDORED_INPUT = TESTS_DIR / "golden" / "input.parquet"


def alpha360_golden_dir() -> Path:
    candidates = []
    if "ALSTM_SHARED_DIR" in os.environ:
        candidates.append(Path(os.environ["ALSTM_SHARED_DIR"]) / "golden" / "alpha360")
    candidates += [TESTS_DIR.parent.parent / "shared" / "golden" / "alpha360", VENDORED_DIR]
    for directory in candidates:
        if (directory / "alpha360.parquet").exists():
            return directory
    pytest.skip(f"no Alpha360 golden files in any of {[str(c) for c in candidates]}")


def alpha360_input_path(golden_dir: Path) -> Path:
    for path in (golden_dir / "input.parquet", VENDORED_INPUT):
        if path.exists():
            return path
    pytest.skip(f"golden input.parquet is missing ({golden_dir} and {VENDORED_INPUT})")
