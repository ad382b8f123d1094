"""Schedules and the sensor that keep the graph current without anyone clicking.

- ``daily_update`` (weekday evenings): ingest today's bars and recompute features, labels,
  predictions and IC over the last few weekdays, so the label (and IC) of the day whose
  two-day look-ahead just completed is filled in by the same run.
- ``daily_retrain`` (weekday nights): re-fit the model on segments ending at the latest
  labelled day (rolling) or on the configured segments (fixed), optionally warm-started
  with fewer epochs, then re-predict today with the new model.
- ``follow_raw_backfill`` (sensor): when raw_ohlcv partitions are re-materialised by any
  other run (a late backfill or a correction), recompute every downstream day they touch.

All three are RUNNING by default on a new instance. Times, time zone and retraining
policy come from the environment (names below) so a deployment changes them without code.
"""

import os
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from alstm_pipeline.defs.features import alpha158_features, labels
from alstm_pipeline.defs.ingest import raw_ohlcv, trading_calendar
from alstm_pipeline.defs.model import alstm_model, train_segment, valid_segment
from alstm_pipeline.defs.partitions import LOOKBACK_WEEKDAYS, WEEKDAYS
from alstm_pipeline.defs.serving import daily_predictions, ic_report
from alstm_pipeline.settings import load_settings
from alstm_pipeline.warehouse import Warehouse

# Weekdays re-done behind today: two trading days of label look-ahead plus a holiday.
RELABEL_WEEKDAYS = 4


@dataclass(frozen=True)
class AutomationSettings:
    timezone: str = "America/New_York"
    daily_cron: str = "30 18 * * 1-5"
    retrain_cron: str = "0 20 * * 1-5"
    retrain_mode: str = "rolling"  # or "fixed": the segments' configured dates
    train_years: int = 7
    valid_years: int = 2
    warm_start: bool = True
    warm_start_epochs: int = 5

    @classmethod
    def from_env(cls) -> "AutomationSettings":
        env = os.environ.get
        default = cls()
        return cls(
            timezone=env("ALSTM_PIPELINE_TIMEZONE", default.timezone),
            daily_cron=env("ALSTM_PIPELINE_DAILY_CRON", default.daily_cron),
            retrain_cron=env("ALSTM_PIPELINE_RETRAIN_CRON", default.retrain_cron),
            retrain_mode=env("ALSTM_PIPELINE_RETRAIN_MODE", default.retrain_mode),
            train_years=int(env("ALSTM_PIPELINE_TRAIN_YEARS", default.train_years)),
            valid_years=int(env("ALSTM_PIPELINE_VALID_YEARS", default.valid_years)),
            warm_start=env("ALSTM_PIPELINE_WARM_START", "1" if default.warm_start else "0") == "1",
            warm_start_epochs=int(env("ALSTM_PIPELINE_WARM_START_EPOCHS", default.warm_start_epochs)),
        )


AUTOMATION = AutomationSettings.from_env()
if AUTOMATION.retrain_mode not in ("rolling", "fixed"):
    raise ValueError(f'ALSTM_PIPELINE_RETRAIN_MODE must be "rolling" or "fixed", not {AUTOMATION.retrain_mode!r}')

daily_update_job = dg.define_asset_job(
    "daily_update",
    selection=[raw_ohlcv, trading_calendar, alpha158_features, labels, daily_predictions, ic_report],
    description="today's bars → features, labels (of the day whose look-ahead completed) → predictions → IC",
)
retrain_job = dg.define_asset_job(
    "daily_retrain",
    selection=[train_segment, valid_segment, alstm_model, daily_predictions],
    description="re-fit alstm_model on fresh segments, then re-predict today",
)
downstream_job = dg.define_asset_job(
    "follow_raw_backfill",
    selection=[trading_calendar, alpha158_features, labels, daily_predictions, ic_report],
    description="recompute the days downstream of re-ingested raw_ohlcv partitions",
)


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover a partition range (single-run backfill)."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def current_keys(when: datetime) -> list[str]:
    """Weekday partition keys up to the schedule's local date at ``when``.

    Partition keys are dates; an evening run in New York is already the next day in UTC,
    so "today" is taken in the schedules' time zone, not from the UTC clock.
    """
    today = when.astimezone(ZoneInfo(AUTOMATION.timezone)).strftime("%Y-%m-%d")
    return [key for key in WEEKDAYS.get_partition_keys(current_time=when) if key <= today]


@dg.schedule(job=daily_update_job, cron_schedule=AUTOMATION.daily_cron, execution_timezone=AUTOMATION.timezone,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def daily_update_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    keys = current_keys(context.scheduled_execution_time)
    first, last = keys[max(0, len(keys) - 1 - RELABEL_WEEKDAYS)], keys[-1]
    return dg.RunRequest(run_key=f"daily_update-{last}", tags=range_tags(first, last))


def rolling_segments(last_labelled: pd.Timestamp, train_years: int, valid_years: int) -> dict[str, dict[str, str]]:
    """Train then valid, back to back, the valid segment ending on the latest labelled day."""
    valid_start = last_labelled - pd.DateOffset(years=valid_years) + pd.Timedelta(days=1)
    train_start = valid_start - pd.DateOffset(years=train_years)
    day = lambda stamp: stamp.strftime("%Y-%m-%d")  # noqa: E731
    # The train start is the handler start of both: windows never reach before it (§6).
    return {
        "train_segment": {"start": day(train_start), "end": day(valid_start - pd.Timedelta(days=1)), "handler_start": day(train_start)},
        "valid_segment": {"start": day(valid_start), "end": day(last_labelled), "handler_start": day(train_start)},
    }


def last_labelled_day(store: Warehouse) -> pd.Timestamp | None:
    """The latest day whose label is known: two trading days before the last ingested day."""
    if not store.table_exists("labels"):
        return None
    found = store.query("SELECT max(date) FROM labels WHERE LABEL0 IS NOT NULL").iloc[0, 0]
    return None if pd.isna(found) else pd.Timestamp(found)


@dg.schedule(job=retrain_job, cron_schedule=AUTOMATION.retrain_cron, execution_timezone=AUTOMATION.timezone,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def daily_retrain_schedule(context: dg.ScheduleEvaluationContext):
    today = current_keys(context.scheduled_execution_time)[-1]
    ops: dict[str, dict] = {}
    if AUTOMATION.retrain_mode == "rolling":
        last = last_labelled_day(Warehouse(load_settings().warehouse_path))
        if last is None:
            return dg.SkipReason("no labelled day in the warehouse yet: run the main job (alstm-pipeline run) first")
        ops = {name: {"config": dates} for name, dates in rolling_segments(last, AUTOMATION.train_years, AUTOMATION.valid_years).items()}
    training = {"warm_start": AUTOMATION.warm_start}
    if AUTOMATION.warm_start:
        training["n_epochs"] = AUTOMATION.warm_start_epochs
    ops["alstm_model"] = {"config": training}
    return dg.RunRequest(run_key=f"daily_retrain-{today}", partition_key=today, run_config={"ops": ops})


def recomputed_downstream(run: dg.DagsterRun | None) -> bool:
    """Whether the run that wrote raw days also recomputed the features of those days
    (the main job, the daily job, "Materialize all"): nothing is left to follow then."""
    return run is None or run.asset_selection is None or alpha158_features.key in run.asset_selection


@dg.sensor(job=downstream_job, minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING)
def follow_raw_backfill(context: dg.SensorEvaluationContext):
    """Recompute downstream days after raw_ohlcv partitions change outside the daily job.

    A raw day D feeds features of D and of the ~60 trading days after it (their lookback)
    and the labels of the two trading days before it, so the run covers
    [D − RELABEL_WEEKDAYS, D + LOOKBACK_WEEKDAYS] in weekday partitions.
    """
    records = context.instance.fetch_materializations(raw_ohlcv.key, limit=1000, cursor=context.cursor, ascending=True)
    changed: set[str] = set()
    for record in records.records:
        if record.partition_key and not recomputed_downstream(context.instance.get_run_by_id(record.run_id)):
            changed.add(record.partition_key)
    context.update_cursor(records.cursor)
    if not changed:
        return dg.SkipReason("no raw_ohlcv partition changed without its downstream days")
    keys = WEEKDAYS.get_partition_keys()
    low = keys.index(min(changed)) if min(changed) in keys else 0
    high = keys.index(max(changed)) if max(changed) in keys else len(keys) - 1
    first, last = keys[max(0, low - RELABEL_WEEKDAYS)], keys[min(len(keys) - 1, high + LOOKBACK_WEEKDAYS)]
    return dg.RunRequest(run_key=f"follow_raw_backfill-{records.cursor}", tags=range_tags(first, last))
