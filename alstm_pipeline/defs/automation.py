"""Schedules and the sensor that keep the graph current without anyone clicking.

- The jobs, one per kind of partition (a run covers partitions of one kind): ``data_days``
  (universe, bars, calendar, features, labels), ``train_vintage`` (one alstm_model
  vintage), ``scoring_days`` (predictions, ic_daily, then the backtest). The CLI runs
  these same jobs, so every run, from the terminal or not, opens and re-executes in the UI.
- ``daily_update`` (weekday evenings): ingest today's bars and recompute features and labels
  over the last few weekdays (the label of the day whose two-day look-ahead just completed
  is filled in by the same run); ``score_new_days`` then scores them and recomputes IC and
  the backtest.
- ``daily_retrain`` (weekday nights): when ``ALSTM_PIPELINE_RETRAIN_STEP`` trading days
  have passed since the newest vintage, train tonight's rolling vintage (serving from the
  next weekday), warm-started from the vintage in force, behind the promotion gate.
- ``follow_raw_backfill`` (sensor): when raw_ohlcv partitions are re-materialised by a run
  or backfill that did not also recompute features, recompute every downstream day.
- ``score_new_days`` (run-status sensor): after a data_days run of the schedule or of
  follow_raw_backfill succeeds, score its days (scoring_days over the same range).

All four are RUNNING by default. Times, time zone and retraining policy come from the
environment (settings.py), so a deployment changes them without code.
"""


from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from alstm_pipeline import feature_sets, vintages
from alstm_pipeline.defs.features import alpha158_features, alpha360_features, labels
from alstm_pipeline.defs.ingest import raw_ohlcv, trading_calendar, universe
from alstm_pipeline.defs.model import alstm_model
from alstm_pipeline.defs.partitions import FEATURE_LOOKBACK, SCORING_DAYS, VINTAGES, WEEKDAYS
from alstm_pipeline.defs.serving import backtest_daily, ic_daily, predictions
from alstm_pipeline.runner import RANGE_END_TAG, RANGE_START_TAG
from alstm_pipeline.settings import Settings, load_settings
from alstm_pipeline.warehouse import Warehouse, registry, tables

# Weekdays re-done behind today: two trading days of label look-ahead plus a holiday.
RELABEL_WEEKDAYS = 4
# The tag Dagster gives every run of one backfill.
BACKFILL_TAG = "dagster/backfill"

SETTINGS = load_settings()

# The tag that asks score_new_days to score a data_days run's range: the scoring assets to run.
SCORE_AFTER_TAG = "alstm_pipeline/score_after"

data_days_job = dg.define_asset_job(
    "data_days",
    selection=[universe, raw_ohlcv, trading_calendar, alpha158_features, alpha360_features, labels],
    description="weekday partitions of market data: universe → raw_ohlcv → trading_calendar → features, labels",
)
train_vintage_job = dg.define_asset_job(
    "train_vintage", selection=[alstm_model],
    description="train one alstm_model vintage (partition = its first serving day) behind the promotion gate",
)
scoring_days_job = dg.define_asset_job(
    "scoring_days", selection=[predictions, ic_daily, backtest_daily],
    description="score weekdays by the vintage in force on each → ic_daily → backtest_daily",
)
DAILY_DATA = [raw_ohlcv.key, trading_calendar.key, alpha158_features.key, labels.key]
DOWNSTREAM_DATA = [trading_calendar.key, alpha158_features.key, labels.key]


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover a partition range (single-run backfill)."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


def local_today(when: datetime, settings: Settings = SETTINGS) -> pd.Timestamp:
    """The schedules' date at ``when``: an evening run in New York is already the next day in UTC."""
    return pd.Timestamp(when.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d"))


def current_keys(when: datetime) -> list[str]:
    """Weekday partition keys up to the schedules' local date at ``when``."""
    today = local_today(when)
    # Today's partition counts from the evening on, whether or not the definition makes it
    # exist before midnight (live mode does, with end_offset=1).
    end_of_today = (today + pd.Timedelta(days=1)).tz_localize(SETTINGS.timezone).to_pydatetime()
    return [key for key in WEEKDAYS.get_partition_keys(current_time=end_of_today) if key <= today.strftime("%Y-%m-%d")]


def score_after(*assets) -> dict[str, str]:
    """The tag asking score_new_days to run ``assets`` over the run's range once it succeeds."""
    return {SCORE_AFTER_TAG: ",".join(asset.key.to_user_string() for asset in assets)}


@dg.schedule(job=data_days_job, name="daily_update", cron_schedule=SETTINGS.daily_cron, execution_timezone=SETTINGS.timezone,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def daily_update_schedule(context: dg.ScheduleEvaluationContext):
    keys = current_keys(context.scheduled_execution_time)
    if not keys:
        return dg.SkipReason("no weekday partition up to today")
    first, last = keys[max(0, len(keys) - 1 - RELABEL_WEEKDAYS)], keys[-1]
    return dg.RunRequest(run_key=f"daily_update-{last}", asset_selection=DAILY_DATA,
                         tags={**range_tags(first, last), **score_after(predictions, ic_daily, backtest_daily)})


def scoring_range(first: str, last: str) -> tuple[str, str] | None:
    """[first, last] clipped to the scoring partitions (None: no day of it may be scored)."""
    keys = [key for key in SCORING_DAYS.get_partition_keys() if first <= key <= last]
    return (keys[0], keys[-1]) if keys else None


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[data_days_job], request_job=scoring_days_job,
                      default_status=dg.DefaultSensorStatus.RUNNING)
def score_new_days(context: dg.RunStatusSensorContext):
    """Score the days a scheduled or sensor-launched data_days run just (re)computed: its
    range, from the first day a vintage may serve. The two kinds of partition cannot share
    a run, so the scoring run follows the data run."""
    run = context.dagster_run
    wanted = run.tags.get(SCORE_AFTER_TAG)
    first, last = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
    if not wanted or not first or not last:
        return dg.SkipReason(f"run {run.run_id} asked for no scoring (launched by hand or by the CLI, which scores itself)")
    days = scoring_range(first, last)
    if days is None:
        return dg.SkipReason(f"{first}..{last} holds no scoring partition (they start at {SCORING_DAYS.get_first_partition_key()})")
    return dg.RunRequest(run_key=f"score_new_days-{run.run_id}", tags=range_tags(*days),
                         asset_selection=[dg.AssetKey(name) for name in wanted.split(",")])


def retrain_request(store: Warehouse, as_of: pd.Timestamp, settings: Settings = SETTINGS) -> dg.RunRequest | dg.SkipReason:
    """What ``daily_retrain`` does on the evening of ``as_of`` (also ``alstm-pipeline retrain``):
    the rolling vintage serving from the next weekday, if ``retrain_step`` trading days have
    passed since the newest promoted vintage began serving."""
    if tables.last_labelled_day(store) is None:
        return dg.SkipReason("no labelled day in the warehouse yet: run the main job (alstm-pipeline run) first")
    key = vintages.vintage_key(as_of + pd.offsets.BDay(1))
    calendar = tables.read_calendar(store)
    # The schedule retrains the main job's configuration: only its vintages set the cadence.
    known = feature_sets.of_feature_set(registry.read_registry(store, registry.DEFAULT_EXPERIMENT), feature_sets.DEFAULT_FEATURE_SET)
    promoted = known[known["status"] == "promoted"]
    if len(promoted):
        newest = pd.Timestamp(promoted["serves_from"].max())
        elapsed = int(((calendar >= newest) & (calendar <= as_of)).sum())
        if elapsed < settings.retrain_step and key != vintages.vintage_key(newest):
            return dg.SkipReason(f"{elapsed} trading day(s) since vintage {newest.date()} began serving; "
                                 f"the next one is due after {settings.retrain_step} (ALSTM_PIPELINE_RETRAIN_STEP)")
    try:
        vintages.rolling_plan(key, calendar[calendar <= as_of], settings.train_days, settings.valid_days, settings.trunc_days)
    except vintages.VintageError as error:
        return dg.SkipReason(str(error))
    training: dict[str, object] = {"mode": "rolling", "train_days": settings.train_days,
                                   "valid_days": settings.valid_days, "trunc_days": settings.trunc_days}
    if settings.warm_start:
        training.update({"warm_start": True, "n_epochs": settings.warm_start_epochs})
    return dg.RunRequest(
        run_key=f"daily_retrain-{key}", partition_key=key,
        run_config={"ops": {"alstm_model": {"config": training}}},
    )


@dg.schedule(job=train_vintage_job, name="daily_retrain", cron_schedule=SETTINGS.retrain_cron, execution_timezone=SETTINGS.timezone,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def daily_retrain_schedule(context: dg.ScheduleEvaluationContext):
    store = SETTINGS.open_warehouse()
    if not store.exists():
        return dg.SkipReason(f"no warehouse at {store.location} yet: run the main job (alstm-pipeline run) first")
    request = retrain_request(store, local_today(context.scheduled_execution_time))
    if isinstance(request, dg.RunRequest):
        # The vintage partition must exist before the run that materialises it.
        context.instance.add_dynamic_partitions(VINTAGES.name, [request.partition_key])
    return request


def covered_by_its_run_or_backfill(instance: dg.DagsterInstance, run: dg.DagsterRun | None) -> bool:
    """Whether the run that wrote raw days — or the backfill it belongs to — also
    recomputes their features (the main job, the daily job, "Materialize all")."""
    def selects_features(selection) -> bool:
        return selection is None or alpha158_features.key in selection

    if run is None or selects_features(run.asset_selection):
        return True
    backfill_id = run.tags.get(BACKFILL_TAG)
    if not backfill_id:
        return False
    backfill = instance.get_backfill(backfill_id)
    if backfill is not None and backfill.asset_selection is not None:
        return alpha158_features.key in backfill.asset_selection
    siblings = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
    return any(selects_features(sibling.asset_selection) for sibling in siblings)


@dg.sensor(job=data_days_job, minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING)
def follow_raw_backfill(context: dg.SensorEvaluationContext):
    """Recompute downstream days after raw_ohlcv partitions change outside the daily job.

    A raw day D feeds features of D and of the ~60 trading days after it (their lookback)
    and the labels of the two trading days before it, so the run covers
    [D − RELABEL_WEEKDAYS, D + the lookback's weekdays]. Predictions of those days are
    re-scored by the vintages in force on them, as on their first run.
    """
    records = context.instance.fetch_materializations(raw_ohlcv.key, limit=1000, cursor=context.cursor, ascending=True)
    changed: set[str] = set()
    for record in records.records:
        run = context.instance.get_run_by_id(record.run_id)
        if record.partition_key and not covered_by_its_run_or_backfill(context.instance, run):
            changed.add(record.partition_key)
    context.update_cursor(records.cursor)
    if not changed:
        return dg.SkipReason("no raw_ohlcv partition changed without its downstream days")
    keys = WEEKDAYS.get_partition_keys()
    low = keys.index(min(changed)) if min(changed) in keys else 0
    high = keys.index(max(changed)) if max(changed) in keys else len(keys) - 1
    first = keys[max(0, low - RELABEL_WEEKDAYS)]
    last = keys[min(len(keys) - 1, high + FEATURE_LOOKBACK.weekdays)]
    return dg.RunRequest(run_key=f"follow_raw_backfill-{records.cursor}", asset_selection=DOWNSTREAM_DATA,
                         tags={**range_tags(first, last), **score_after(predictions, ic_daily)})
