"""Partitions: one per weekday for data, one per vintage for models; and the lookbacks.

A market holiday is a weekday partition with no rows (DESIGN.md). Lookback and look-ahead
are counted in *trading* days by the computation, but partitions are weekdays: each
``TradingDaySpan`` is declared once, in trading days, and gives both the weekday partition
mapping (wide enough for the holidays inside it) and the number of rows the asset reads.

Bounds come from settings or cheap source metadata (``peek_date_bounds``), never from
reading bars: loading the definitions does no data I/O.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from alstm_pipeline.dataset import STEP_LEN
from alstm_pipeline.features import ALPHA360_LOOKBACK_ROWS, LABEL_LOOKAHEAD_ROWS, LOOKBACK_ROWS
from alstm_pipeline.settings import FALLBACK_START, Settings, load_settings
from alstm_pipeline.sources import peek_date_bounds, peek_source_problem

# backfill_policy is marked beta; it is the documented way to run a range as one run.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


@dataclass(frozen=True)
class TradingDaySpan:
    """``trading_days`` before (lookback) or after (look-ahead) a partition's days."""

    trading_days: int
    ahead: bool = False

    @property
    def weekdays(self) -> int:
        # Weekdays that surely hold this many trading days: US markets close ≤ 10 weekdays a
        # year, a Chinese Golden Week closes 5 in a row; one in ten plus a full week covers
        # both (60 → 76, 20 → 32, 2 → 12).
        return self.trading_days + self.trading_days // 10 + 10

    def mapping(self) -> dg.TimeWindowPartitionMapping:
        if self.ahead:
            return dg.TimeWindowPartitionMapping(
                start_offset=0, end_offset=self.weekdays, allow_nonexistent_upstream_partitions=True
            )
        return dg.TimeWindowPartitionMapping(start_offset=-self.weekdays, end_offset=0)


# Alpha158's longest window is 60 rows plus the Ref(…,1) inside it (§3).
FEATURE_LOOKBACK = TradingDaySpan(LOOKBACK_ROWS)
# Alpha360's oldest lag is Ref(x, 59) (docs/alpha360.md).
ALPHA360_LOOKBACK = TradingDaySpan(ALPHA360_LOOKBACK_ROWS)
# LABEL0 of D needs the closes of D+1 and D+2 (§4).
LABEL_LOOKAHEAD = TradingDaySpan(LABEL_LOOKAHEAD_ROWS, ahead=True)
# A day's score reads its 20-day window of features (§6).
WINDOW_LOOKBACK = TradingDaySpan(STEP_LEN)


def partition_bounds(settings: Settings) -> tuple[str, str | None]:
    """First partition key, and the last one (None: run to today in live mode).

    Unset bounds come from the source's metadata; the last partition is the source's last
    day unless the deployment is live (then today). A source that surely cannot be read
    (``peek_source_problem``: e.g. a Qlib directory without its calendar) gets the last
    weekday before today for the bounds the settings leave unset: its run then fails on the source in
    seconds, instead of first planning 27 years of partitions from FALLBACK_START.
    """
    start, end = settings.start, settings.end
    if not start or (not end and not settings.live):
        if peek_source_problem(settings.source) is not None:
            # The newest weekday whose partition has ended (a Friday's ends on Monday).
            day = (pd.offsets.BDay().rollback(pd.Timestamp.today().normalize()) - pd.offsets.BDay(1)).strftime("%Y-%m-%d")
            start = start or day
            return start, None if settings.live else (end or max(day, start))
        first, last = peek_date_bounds(settings.source)
        start = start or (str(first) if first else FALLBACK_START)
        end = end or (str(last) if last else None)
    return start, None if settings.live else end


def weekday_partitions(start: str, last: str | None) -> dg.TimeWindowPartitionsDefinition:
    """Weekday partitions from ``start`` through ``last`` (inclusive); without ``last``,
    ``end_offset=1`` makes today's partition exist during the day for the evening job."""
    if last is None:
        return dg.TimeWindowPartitionsDefinition(start=start, fmt="%Y-%m-%d", cron_schedule="0 0 * * 1-5", end_offset=1)
    # A weekday's partition ends at the next cron tick: a Friday's on Monday, so the end is
    # the next weekday (the day after would drop a last day that is a Friday).
    end = (pd.Timestamp(last) + pd.offsets.BDay(1)).strftime("%Y-%m-%d")
    return dg.TimeWindowPartitionsDefinition(start=start, end=end, fmt="%Y-%m-%d", cron_schedule="0 0 * * 1-5")


def scoring_partitions(settings: Settings, start: str, last: str | None) -> dg.TimeWindowPartitionsDefinition:
    """The weekdays a vintage may score: from ``ALSTM_PIPELINE_SCORING_START`` (default the
    fixed split's first test day) or the first data day, whichever is later. Days before
    it are no partitions of predictions / ic_daily at all, rather than partitions that stay
    "missing" forever because no vintage may serve them (a vintage's training data come
    before its first day). Rolling vintages that serve earlier days need an earlier start."""
    first = max(pd.Timestamp(start), pd.Timestamp(settings.scoring_start)).strftime("%Y-%m-%d")
    if last is not None and first > last:
        first = start  # a source that ends before the scoring start: no gap to hide
    return weekday_partitions(first, last)


_BOUNDS = partition_bounds(load_settings())
WEEKDAYS = weekday_partitions(*_BOUNDS)
# predictions and ic_daily: the same weekdays from the first day a vintage may serve. The
# lookback mappings are time windows, so they reach back into WEEKDAYS before that day.
SCORING_DAYS = scoring_partitions(load_settings(), *_BOUNDS)

# One partition per model vintage, keyed by the first day it may score (vintages.py).
# Added by `alstm-pipeline run` (the fixed split), `alstm-pipeline retrain` and
# `alstm-pipeline evaluate-rolling`, the daily_retrain schedule, or the plan_rolling_vintages job.
VINTAGES = dg.DynamicPartitionsDefinition(name="vintages")


def window_dates(context: dg.AssetExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last calendar day covered by the run's partition (range)."""
    window = context.partition_time_window
    start = pd.Timestamp(window.start).tz_localize(None).normalize()
    end = (pd.Timestamp(window.end).tz_localize(None) - pd.Timedelta(days=1)).normalize()
    return start, end
