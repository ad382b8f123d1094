"""Settings of a deployment, from the environment (no data is read here).

| variable | default | meaning |
|---|---|---|
| ``ALSTM_PIPELINE_SOURCE`` | the bundled sample | market data: Parquet file/folder, CSV folder or Qlib provider dir |
| ``ALSTM_PIPELINE_HOME`` | ``data/home`` | ``warehouse.duckdb``, ``models/`` and the Dagster instance ``dagster/`` |
| ``ALSTM_PIPELINE_UNIVERSE`` | every instrument | a Qlib instruments file (``CODE<TAB>start<TAB>end``) |
| ``ALSTM_PIPELINE_START`` / ``_END`` | the source's first / last date | first / last weekday partition |
| ``ALSTM_PIPELINE_LIVE`` | ``0`` | ``1``: partitions run to today (a live deployment that ingests daily) |
| ``ALSTM_PIPELINE_TIMEZONE`` | ``America/New_York`` | time zone of the schedules |
| ``ALSTM_PIPELINE_DAILY_CRON`` | ``30 18 * * 1-5`` | daily update |
| ``ALSTM_PIPELINE_RETRAIN_CRON`` | ``0 20 * * 1-5`` | retraining check |
| ``ALSTM_PIPELINE_RETRAIN_STEP`` | ``20`` | trading days between vintages (Qlib RollingGen's step) |
| ``ALSTM_PIPELINE_TRAIN_DAYS`` / ``_VALID_DAYS`` | ``1764`` / ``504`` | rolling window lengths in trading days (≈ 7 and 2 years, Qlib's split) |
| ``ALSTM_PIPELINE_TRUNC_DAYS`` | ``3`` | trading days between a vintage's last sample and its first scored day |
| ``ALSTM_PIPELINE_WARM_START`` / ``_WARM_START_EPOCHS`` | ``1`` / ``5`` | scheduled retrains start from the vintage in force |

Partition bounds come from the settings or, when unset, from cheap metadata of the
source (Parquet footer statistics, a Qlib calendar file, first/last lines of CSV files):
loading the definitions never reads or validates bars.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
REPO_DATA_DIR = REPO_DIR / "data"
BUNDLED_SAMPLE = REPO_DATA_DIR / "sp500_sample.parquet"
DEFAULT_HOME = REPO_DATA_DIR / "home"
# The first day of a deployment whose source cannot tell its bounds cheaply.
FALLBACK_START = "2000-01-03"


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0, not {value!r}")


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return default if not value else int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None


@dataclass(frozen=True)
class Settings:
    source: Path
    home: Path
    universe: Path | None
    start: str | None
    end: str | None
    live: bool
    timezone: str = "America/New_York"
    daily_cron: str = "30 18 * * 1-5"
    retrain_cron: str = "0 20 * * 1-5"
    retrain_step: int = 20
    train_days: int = 1764
    valid_days: int = 504
    trunc_days: int = 3
    warm_start: bool = True
    warm_start_epochs: int = 5

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance the CLI and ``dg dev`` share: DAGSTER_HOME when set."""
        explicit = os.environ.get("DAGSTER_HOME")
        return Path(explicit).expanduser() if explicit else self.home / "dagster"


def load_settings() -> Settings:
    """The settings in force for this process (environment only, no file is read)."""
    env = os.environ.get
    universe = env("ALSTM_PIPELINE_UNIVERSE")
    return Settings(
        source=Path(env("ALSTM_PIPELINE_SOURCE") or BUNDLED_SAMPLE).expanduser(),
        home=Path(env("ALSTM_PIPELINE_HOME") or DEFAULT_HOME).expanduser().resolve(),
        universe=Path(universe).expanduser() if universe else None,
        start=env("ALSTM_PIPELINE_START") or None,
        end=env("ALSTM_PIPELINE_END") or None,
        live=_flag("ALSTM_PIPELINE_LIVE", False),
        timezone=env("ALSTM_PIPELINE_TIMEZONE") or Settings.timezone,
        daily_cron=env("ALSTM_PIPELINE_DAILY_CRON") or Settings.daily_cron,
        retrain_cron=env("ALSTM_PIPELINE_RETRAIN_CRON") or Settings.retrain_cron,
        retrain_step=_int("ALSTM_PIPELINE_RETRAIN_STEP", Settings.retrain_step),
        train_days=_int("ALSTM_PIPELINE_TRAIN_DAYS", Settings.train_days),
        valid_days=_int("ALSTM_PIPELINE_VALID_DAYS", Settings.valid_days),
        trunc_days=_int("ALSTM_PIPELINE_TRUNC_DAYS", Settings.trunc_days),
        warm_start=_flag("ALSTM_PIPELINE_WARM_START", Settings.warm_start),
        warm_start_epochs=_int("ALSTM_PIPELINE_WARM_START_EPOCHS", Settings.warm_start_epochs),
    )
