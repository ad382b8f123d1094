"""Where the pipeline reads from and writes to, from the environment.

``ALSTM_PIPELINE_SOURCE``  the market data (Parquet file/folder, CSV folder or Qlib
                           provider directory); default: the bundled sample in ``data/``.
``ALSTM_PIPELINE_HOME``    the folder for ``warehouse.duckdb`` and model checkpoints;
                           default: ``data/home`` (git-ignored).
``ALSTM_PIPELINE_START``   first weekday partition (YYYY-MM-DD); default: the first date
                           of the source.
``ALSTM_PIPELINE_UNIVERSE`` an instruments file in Qlib's format (``CODE<TAB>start<TAB>end``);
                           default: every instrument of the source.

Read once when the Dagster definitions load, so ``dagster dev`` and ``alstm-pipeline``
honour the same variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DATA_DIR = PACKAGE_DIR.parent / "data"
BUNDLED_SAMPLE = REPO_DATA_DIR / "sp500_sample.parquet"
DEFAULT_HOME = REPO_DATA_DIR / "home"


@dataclass(frozen=True)
class Settings:
    source: Path
    home: Path
    start: str | None
    universe: Path | None

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"


def load_settings() -> Settings:
    """The settings in force for this process."""
    universe = os.environ.get("ALSTM_PIPELINE_UNIVERSE")
    return Settings(
        source=Path(os.environ.get("ALSTM_PIPELINE_SOURCE", BUNDLED_SAMPLE)).expanduser(),
        home=Path(os.environ.get("ALSTM_PIPELINE_HOME", DEFAULT_HOME)).expanduser(),
        start=os.environ.get("ALSTM_PIPELINE_START") or None,
        universe=Path(universe).expanduser() if universe else None,
    )
