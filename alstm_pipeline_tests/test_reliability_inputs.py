"""Bad input the evening job meets, each row of issue 15's table that concerns the source:
header-only files, rows dated in the future, a Qlib directory without its calendar, and
nothing at all written (the universe included) when the source report fails.

Real bars of the bundled sample written as CSV / Parquet / a Qlib provider directory in a
temp dir, run through the real definitions (and once through the CLI).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from alstm_pipeline.defs.partitions import partition_bounds, weekday_partitions
from alstm_pipeline.settings import Settings
from alstm_pipeline.sources import SourceDataError, SourceReport, open_source, peek_date_bounds, peek_source_problem
from alstm_pipeline_tests.conftest import REPO_ROOT, SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline
from alstm_pipeline_tests.test_sources_bad_input import write_csv_folder

FIRST, LAST = "2016-06-27", "2016-07-08"
FUTURE = "2031-03-03"  # a Monday, years after any machine that runs this test


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    """Two weeks of three real instruments in the sample's raw columns (date as text)."""
    frame = pq.read_table(SAMPLE_PATH, filters=[("instrument", "in", ["AAPL", "IBM", "KO"])]).to_pandas()
    frame["date"] = pd.to_datetime(frame["date"])
    frame = frame[frame["date"].between(FIRST, LAST)].reset_index(drop=True)
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    return frame


def header_only(folder, code: str, like: str = "AAPL") -> None:
    """``<code>.csv`` with the header of ``<like>.csv`` and no rows."""
    header = (folder / f"{like}.csv").read_text().splitlines()[0]
    (folder / f"{code}.csv").write_text(header + "\n")


def nothing_written(pipeline: TestPipeline) -> bool:
    return not any(pipeline.warehouse.table_exists(table) for table in ("universe", "raw_ohlcv", "trading_calendar"))


# --- a CSV with only a header ---------------------------------------------------------


def test_a_header_only_csv_fails_the_run_and_nothing_is_written(tmp_path, bars):
    folder = write_csv_folder(tmp_path / "csv", bars)
    header_only(folder, "EMPTY")
    pipeline = TestPipeline(tmp_path / "home", folder)
    error = pipeline.run_expecting_failure("+raw_ohlcv", FIRST, LAST)
    assert "EMPTY.csv: holds no bars" in error
    assert nothing_written(pipeline)  # before: exit 0, EMPTY in the universe with 0 rows


def test_a_header_only_csv_is_in_the_one_report_beside_the_other_bad_files(tmp_path, bars):
    frame = bars.copy()
    frame.loc[(frame["instrument"] == "IBM") & (frame["date"] == "2016-06-29"), "close"] = -1.0
    folder = write_csv_folder(tmp_path / "csv", frame)
    header_only(folder, "EMPTY")
    (folder / "BLANK.csv").write_text((folder / "KO.csv").read_text().splitlines()[0] + "\n\n\n")  # empty after parsing
    with pytest.raises(SourceReport) as caught:
        open_source(folder).read()
    report = caught.value
    assert [os.path.basename(file) for file in report.bad_files] == ["BLANK.csv", "EMPTY.csv", "IBM.csv"]
    assert "3 of 5 files have problems" in str(report)
    assert "IBM.csv: instrument IBM, date 2016-06-29: close is -1.0" in str(report)

    pipeline = TestPipeline(tmp_path / "home", folder)
    error = pipeline.run_expecting_failure("+raw_ohlcv", FIRST, LAST)
    for name in ("BLANK.csv", "EMPTY.csv", "IBM.csv"):
        assert name in error
    assert nothing_written(pipeline)


def test_a_parquet_file_without_rows_and_a_bin_without_values_are_problems(tmp_path, bars):
    folder = tmp_path / "panel"
    folder.mkdir()
    bars.to_parquet(folder / "good.parquet", index=False)
    bars.iloc[:0].to_parquet(folder / "empty.parquet", index=False)
    with pytest.raises(SourceDataError, match=r"empty\.parquet: holds no rows of bars"):
        open_source(folder)

    provider = _provider(tmp_path)
    (provider / "features" / "a" / "vwap.day.bin").write_bytes(np.array([5], dtype="<f4").tobytes())
    with pytest.raises(SourceReport, match=r"a/vwap\.day\.bin: instrument A: holds no values, only its start index"):
        open_source(provider).read()


# --- rows dated in the future -------------------------------------------------------


def _with_future_row(bars: pd.DataFrame, code: str) -> pd.DataFrame:
    last = bars[bars["instrument"] == code].iloc[[-1]].assign(date=FUTURE)
    return pd.concat([bars, last], ignore_index=True)


def test_a_csv_row_dated_in_the_future_is_reported_by_every_read(tmp_path, bars):
    folder = write_csv_folder(tmp_path / "csv", _with_future_row(bars, "KO"))
    # A read of a fortnight in 2016 still names the 2031 row: no read's range ever reaches it.
    with pytest.raises(SourceReport, match=rf"KO\.csv: instrument KO, date {FUTURE}: date is after today"):
        open_source(folder).read(start=FIRST, end=LAST)
    pipeline = TestPipeline(tmp_path / "home", folder)
    error = pipeline.run_expecting_failure("+raw_ohlcv", FIRST, LAST)
    assert f"KO.csv: instrument KO, date {FUTURE}: date is after today" in error
    assert nothing_written(pipeline)


def test_a_parquet_row_dated_in_the_future_is_reported_whatever_the_range(tmp_path, bars):
    frame = _with_future_row(bars, "IBM")
    frame["date"] = pd.to_datetime(frame["date"]).dt.date  # a date column: the range is pushed into the reader
    frame.to_parquet(tmp_path / "bars.parquet", index=False)
    with pytest.raises(SourceReport, match=rf"instrument IBM, date {FUTURE}: date is after today"):
        open_source(tmp_path / "bars.parquet").read(start=FIRST, end=LAST)
    # The instruments outside the deployment's universe are not its concern.
    others = open_source(tmp_path / "bars.parquet").read(start=FIRST, end=LAST, instruments=["AAPL", "KO"])
    assert len(others) == bars["instrument"].isin(["AAPL", "KO"]).sum()


def test_partitions_end_at_the_sources_last_day_not_today_unless_live(tmp_path, bars):
    folder = write_csv_folder(tmp_path / "csv", _with_future_row(bars, "KO"))
    # The 2031 row is no bound (the read reports it): the last day is the last real one.
    assert peek_date_bounds(folder) == (dt.date(2016, 6, 27), dt.date(2016, 7, 8))
    settings = Settings(source=folder, home=tmp_path, universe=None, start=None, end=None, live=False)
    assert partition_bounds(settings) == ("2016-06-27", "2016-07-08")
    assert weekday_partitions(*partition_bounds(settings)).get_partition_keys()[-1] == "2016-07-08"  # a Friday
    live = Settings(source=folder, home=tmp_path, universe=None, start=None, end=None, live=True)
    assert partition_bounds(live) == ("2016-06-27", None)
    assert weekday_partitions(*partition_bounds(live)).get_partition_keys()[-1] > "2026-01-01"


# --- a Qlib provider directory without its calendar ---------------------------------


def _provider(tmp_path):
    """The vendored golden provider cut to instrument A."""
    source = REPO_ROOT / "alstm_pipeline_tests" / "golden" / "qlib_provider"
    target = tmp_path / "provider"
    shutil.copytree(source / "calendars", target / "calendars")
    (target / "instruments").mkdir()
    listed = (source / "instruments" / "all.txt").read_text().splitlines()
    (target / "instruments" / "all.txt").write_text("\n".join(line for line in listed if line.startswith("A\t")) + "\n")
    shutil.copytree(source / "features" / "a", target / "features" / "a")
    return target


def test_a_calendar_with_future_dates_is_a_broken_calendar(tmp_path):
    provider = _provider(tmp_path)
    calendar = provider / "calendars" / "day.txt"
    assert peek_source_problem(provider) is None
    calendar.write_text(calendar.read_text() + f"{FUTURE}\n")
    with pytest.raises(SourceDataError, match=rf"day\.txt: line \d+: date '{FUTURE}' is after today"):
        open_source(provider)
    assert "ends after today" in peek_source_problem(provider)
    calendar.unlink()
    assert peek_source_problem(provider) == f"{calendar} is missing"


def cli_run(tmp_path, source, **settings) -> subprocess.CompletedProcess:
    """``alstm-pipeline run --select +raw_ohlcv`` in a fresh process (the partitions are
    made from the settings when the definitions load), on a home in ``tmp_path``."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("ALSTM_PIPELINE_START", "ALSTM_PIPELINE_END", "ALSTM_PIPELINE_LIVE", "DAGSTER_HOME")}
    env.update({"ALSTM_PIPELINE_SOURCE": str(source), "ALSTM_PIPELINE_HOME": str(tmp_path / "home"),
                "ALSTM_PIPELINE_MLFLOW": "0", **settings})
    return subprocess.run([sys.executable, "-m", "alstm_pipeline.cli", "run", "--select", "+raw_ohlcv"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_bars_after_the_last_partition_are_named_not_dropped_in_silence(tmp_path, bars):
    folder = write_csv_folder(tmp_path / "csv", bars)
    completed = cli_run(tmp_path, folder, ALSTM_PIPELINE_END="2016-07-06")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert ("the source has bars up to 2016-07-08, after the last partition 2016-07-06: they are not ingested"
            in completed.stdout + completed.stderr)


def test_a_provider_without_calendar_fails_at_once_with_one_clear_line(tmp_path):
    provider = _provider(tmp_path)
    (provider / "calendars" / "day.txt").unlink()
    completed = cli_run(tmp_path, provider)
    assert completed.returncode != 0
    out = completed.stdout + completed.stderr
    # One weekday planned, not 2000-01-03..today (27 years of partitions planned before the failure).
    planned = out.split(" over ", 1)[1].split(" of ", 1)[0]
    first, last = planned.split("..")
    assert first == last and "2000-01-03" not in out
    assert f"{provider / 'calendars' / 'day.txt'}: missing: a Qlib provider directory needs its trading calendar" in out
    assert not (tmp_path / "home" / "warehouse.duckdb").exists() or nothing_written(TestPipeline(tmp_path / "home", provider))


# --- nothing at all is written when the source report fails --------------------------


def test_a_failing_source_leaves_a_previous_universe_and_bars_as_they_were(tmp_path, bars):
    folder = write_csv_folder(tmp_path / "csv", bars)
    pipeline = TestPipeline(tmp_path / "home", folder)
    pipeline.run("+raw_ohlcv", FIRST, LAST)
    universe = pipeline.warehouse.query("SELECT * FROM universe ORDER BY instrument")
    raw = pipeline.warehouse.read_dates("raw_ohlcv", None, None)

    frame = bars.copy()
    frame.loc[frame.index[-1], "volume"] = -5.0  # a bad row of KO
    write_csv_folder(folder, frame)
    header_only(folder, "NEW")  # a new instrument the universe would have gained
    error = pipeline.run_expecting_failure("+raw_ohlcv", FIRST, LAST)
    assert "universe: the source has problems, nothing was written" in error
    assert "KO.csv" in error and "NEW.csv" in error
    pd.testing.assert_frame_equal(pipeline.warehouse.query("SELECT * FROM universe ORDER BY instrument"), universe)
    pd.testing.assert_frame_equal(pipeline.warehouse.read_dates("raw_ohlcv", None, None), raw)
