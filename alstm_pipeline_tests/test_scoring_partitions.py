"""The scoring assets' partitions start at the first day a vintage may serve."""

from __future__ import annotations

import dataclasses

import pytest

from alstm_pipeline.defs.partitions import SCORING_DAYS, WEEKDAYS, scoring_partitions
from alstm_pipeline.settings import load_settings


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.delenv("ALSTM_PIPELINE_SCORING_START", raising=False)
    return load_settings()


def test_by_default_scoring_starts_at_the_fixed_splits_first_test_day(settings):
    from alstm_pipeline.defs.model import TEST_START
    from alstm_pipeline.settings import FIXED_TEST_START

    assert settings.scoring_start == FIXED_TEST_START == TEST_START
    days = scoring_partitions(settings, "2007-06-01", "2021-04-21")
    assert days.get_first_partition_key() == "2017-01-02"  # the first weekday from 2017-01-01
    assert days.get_last_partition_key() == "2021-04-21"


def test_rolling_vintages_that_serve_earlier_need_only_the_setting(settings):
    earlier = dataclasses.replace(settings, scoring_start="2015-01-01")
    assert scoring_partitions(earlier, "2007-06-01", "2021-04-21").get_first_partition_key() == "2015-01-01"
    # Never before the data's first day.
    first = dataclasses.replace(settings, scoring_start="2000-01-03")
    assert scoring_partitions(first, "2007-06-01", "2021-04-21").get_first_partition_key() == "2007-06-01"


def test_data_ending_before_the_scoring_start_keeps_every_weekday(settings):
    assert scoring_partitions(settings, "2014-01-02", "2016-06-30").get_first_partition_key() == "2014-01-02"


def test_the_scoring_partitions_are_the_data_weekdays_from_their_start():
    first = SCORING_DAYS.get_first_partition_key()
    assert SCORING_DAYS.get_partition_keys() == [key for key in WEEKDAYS.get_partition_keys() if key >= first]


def test_a_range_before_the_scoring_partitions_is_refused_naming_the_setting(settings):
    import dagster as dg

    from alstm_pipeline.runner import Step, step_days

    step = Step((dg.AssetKey("predictions"),), "weekdays", scoring_partitions(settings, "2007-06-01", "2021-04-21"))
    assert step_days(step, ("2016-12-01", "2017-01-10")) == ("2017-01-02", "2017-01-10")  # clipped to its partitions
    with pytest.raises(ValueError, match="ALSTM_PIPELINE_SCORING_START"):
        step_days(step, ("2016-06-27", "2016-06-28"))
