"""One partition per weekday, and the mappings that say which raw days a day reads.

A market holiday is a weekday partition with no rows (DESIGN.md). Lookback and look-ahead
are counted in *trading* days by the computation, but partitions are weekdays, so each
mapping takes a weekday span wide enough to hold the trading days it needs, holidays
included; the assets then read exactly the trading days they use inside it.
"""

import warnings

import dagster as dg

# backfill_policy is marked beta; it is the documented way to run a range as one run.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
import pandas as pd

from alstm_pipeline.features import LABEL_LOOKAHEAD_ROWS, LOOKBACK_ROWS
from alstm_pipeline.settings import load_settings
from alstm_pipeline.sources import open_source

# 60 trading days of history (plus the Ref(…,1) inside 60-day windows) span at most ~66
# weekdays in US markets and ~72 around the week-long Chinese holidays; 90 leaves room.
LOOKBACK_WEEKDAYS = 90
# Two trading days ahead reach at most four weekdays ahead around a US long weekend and
# about nine across a Chinese Golden Week.
LOOKAHEAD_WEEKDAYS = 10
assert LOOKBACK_WEEKDAYS > LOOKBACK_ROWS * 1.3 and LOOKAHEAD_WEEKDAYS > LABEL_LOOKAHEAD_ROWS


def first_partition_date() -> str:
    """ALSTM_PIPELINE_START, else the first trading date the source holds."""
    settings = load_settings()
    if settings.start:
        return settings.start
    # A missing or unreadable source fails the code location here, with the source's own
    # error naming the path, which is where the user has to look.
    return open_source(settings.source).calendar()[0].strftime("%Y-%m-%d")


def weekday_partitions(start: str) -> dg.TimeWindowPartitionsDefinition:
    """Weekday partitions from ``start``; ``end_offset=1`` makes today's partition exist
    during the day, so the evening job can materialise it."""
    return dg.TimeWindowPartitionsDefinition(
        start=start, fmt="%Y-%m-%d", cron_schedule="0 0 * * 1-5", end_offset=1
    )


WEEKDAYS = weekday_partitions(first_partition_date())

FEATURE_LOOKBACK = dg.TimeWindowPartitionMapping(start_offset=-LOOKBACK_WEEKDAYS, end_offset=0)
LABEL_LOOKAHEAD = dg.TimeWindowPartitionMapping(
    start_offset=0, end_offset=LOOKAHEAD_WEEKDAYS, allow_nonexistent_upstream_partitions=True
)


def window_dates(context: dg.AssetExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last calendar day covered by the run's partition (range)."""
    window = context.partition_time_window
    start = pd.Timestamp(window.start).tz_localize(None).normalize()
    end = (pd.Timestamp(window.end).tz_localize(None) - pd.Timedelta(days=1)).normalize()
    return start, end
