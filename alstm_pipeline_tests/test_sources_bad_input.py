"""Bad input to the sources raises SourceDataError naming file, instrument, date and problem."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from alstm_pipeline.sources import SourceDataError, Universe, open_source

# A copy of what the panel's upstream really served for BF.B: an HTML error page.
HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Page not found</title></head>
<body><h1>404</h1><p>Sorry, we could not find that page, please try again.</p></body>
</html>
"""


@pytest.fixture(scope="module")
def bars(panel_path) -> pd.DataFrame:
    """20 real days of two instruments, in the shared panel's raw columns (date as text);
    both are in the full panel and in the bundled sample."""
    columns = ["instrument", "date", "open", "high", "low", "close", "adj_close", "volume"]
    frame = pq.read_table(panel_path, columns=columns, filters=[("instrument", "in", ["AAPL", "IBM"])]).to_pandas()
    frame = frame[frame["date"].astype(str).between("2015-03-02", "2015-03-27")].reset_index(drop=True)
    frame["date"] = frame["date"].astype(str)
    assert len(frame) == 40
    return frame


def write_csv_folder(folder, frame: pd.DataFrame):
    folder.mkdir(exist_ok=True)
    for code, rows in frame.groupby("instrument"):
        rows.drop(columns="instrument").to_csv(folder / f"{code}.csv", index=False)
    return folder


def read_csv_folder_with(tmp_path, bars, edit) -> None:
    """Write the bars as CSVs after ``edit(frame)`` and read them back."""
    frame = bars.copy()
    frame[["open", "high", "low", "close", "adj_close", "volume"]] = frame[
        ["open", "high", "low", "close", "adj_close", "volume"]
    ].astype(object)
    edit(frame)
    open_source(write_csv_folder(tmp_path / "csv", frame)).read()


def raises(match: str):
    return pytest.raises(SourceDataError, match=match)


# --- CSV and Parquet bars ------------------------------------------------------------


def test_html_error_page_saved_as_csv_is_named_as_not_bars(tmp_path, bars):
    folder = write_csv_folder(tmp_path / "csv", bars)
    (folder / "BF.B.csv").write_text(HTML_PAGE)

    with raises(r"BF\.B\.csv: is not a CSV of daily bars: it starts like an HTML/XML page"):
        open_source(folder).read()
    # the other files still read on their own
    assert len(open_source(folder).read(instruments=["AAPL"])) == 20


def test_csv_that_does_not_parse_is_an_error(tmp_path, bars):
    folder = write_csv_folder(tmp_path / "csv", bars)
    (folder / "IBM.csv").write_text("date,open,high,low,close,volume\n2015-03-02,1,2,0.5,1.5,100\n2015-03-03,1,2\n")

    with raises(r"IBM\.csv: is not a readable CSV of daily bars"):
        open_source(folder).read()


def test_empty_csv_file_is_an_error(tmp_path, bars):
    folder = write_csv_folder(tmp_path / "csv", bars)
    (folder / "IBM.csv").write_text("")

    with raises(r"IBM\.csv: is empty"):
        open_source(folder).read()


def test_missing_required_column_is_named(tmp_path, bars):
    write_csv_folder(tmp_path / "csv", bars.drop(columns="close"))
    with raises(r"AAPL\.csv: missing required column\(s\) close"):
        open_source(tmp_path / "csv").read()

    bars.drop(columns="instrument").to_parquet(tmp_path / "panel.parquet")
    with raises(r"panel\.parquet: missing required column\(s\) instrument"):
        open_source(tmp_path / "panel.parquet")


def test_unparsable_date_names_instrument_and_text(tmp_path, bars):
    def edit(frame):
        frame.loc[25, "date"] = "2015-13-45"

    with raises(r"IBM\.csv: instrument IBM: date '2015-13-45' does not parse"):
        read_csv_folder_with(tmp_path, bars, edit)


def test_missing_instrument_code_is_an_error(tmp_path, bars):
    frame = bars.copy()
    frame.loc[5, "instrument"] = None
    frame.to_parquet(tmp_path / "panel.parquet")
    with raises(r"panel\.parquet: date 2015-03-09: instrument code is missing"):
        open_source(tmp_path / "panel.parquet").read()


def test_missing_date_is_an_error(tmp_path, bars):
    frame = bars.copy()
    frame.loc[3, "date"] = None
    frame.to_parquet(tmp_path / "panel.parquet")
    with raises(r"panel\.parquet: instrument AAPL: date is missing"):
        open_source(tmp_path / "panel.parquet").read()


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("close", "", r"close is missing \(NaN\); close must be a positive number"),
        ("open", "0", r"open is 0\.0; open must be a positive number"),
        ("low", "-3.5", r"low is -3\.5; low must be a positive number"),
        ("adj_close", "", r"adj_close is missing \(NaN\)"),
        ("volume", "-100", r"volume is -100\.0; volume must be a number >= 0"),
        ("high", "n/a?", r"high 'n/a\?' is not a number"),
    ],
)
def test_prices_and_volume_that_cannot_be_stored_are_rejected(tmp_path, bars, column, value, problem):
    def edit(frame):
        frame.loc[27, column] = value  # IBM, 2015-03-11

    with raises(rf"IBM\.csv: instrument IBM, date 2015-03-11: {problem}"):
        read_csv_folder_with(tmp_path, bars, edit)


def test_error_message_has_the_documented_shape(tmp_path, bars):
    frame = bars.assign(volume=bars["volume"].astype(float))
    frame.loc[5, "volume"] = np.nan
    frame.to_parquet(tmp_path / "panel.parquet")

    with pytest.raises(SourceDataError) as caught:
        open_source(tmp_path / "panel.parquet").read()

    error = caught.value
    assert str(error) == (
        f"{tmp_path / 'panel.parquet'}: instrument AAPL, date 2015-03-09: "
        "volume is missing (NaN); volume must be a number >= 0"
    )
    assert (error.instrument, error.date) == ("AAPL", "2015-03-09")


def test_zero_volume_and_inconsistent_ohlc_are_not_rejected_here(tmp_path, bars):
    frame = bars.copy()
    frame.loc[0, "volume"] = 0
    frame.loc[1, ["high", "low"]] = [100.0, 120.0]  # high < low: the asset checks report it
    frame.to_parquet(tmp_path / "panel.parquet")

    rows = open_source(tmp_path / "panel.parquet").read()

    assert len(rows) == 40 and rows.loc[0, "volume"] == 0
    assert rows.loc[1, "high"] < rows.loc[1, "low"]


def test_duplicate_instrument_date_rows_are_rejected(tmp_path, bars):
    def edit(frame):
        frame.loc[30, "date"] = frame.loc[29, "date"]

    with raises(r"csv: instrument IBM, date 2015-03-13: more than one row for this instrument and date"):
        read_csv_folder_with(tmp_path, bars, edit)


def test_duplicates_across_parquet_files_are_rejected(tmp_path, bars):
    folder = tmp_path / "panel"
    folder.mkdir()
    bars.iloc[:25].to_parquet(folder / "a.parquet")
    bars.iloc[20:].to_parquet(folder / "b.parquet")  # IBM 2015-03-02..06 in both

    with raises(r"panel: instrument IBM, date 2015-03-02: more than one row"):
        open_source(folder).read()


def test_both_adj_close_and_factor_is_ambiguous(tmp_path, bars):
    bars.assign(factor=1.0).to_parquet(tmp_path / "panel.parquet")
    with raises(r"both adj_close and factor"):
        open_source(tmp_path / "panel.parquet").read()


def test_not_a_parquet_file_is_an_error(tmp_path):
    (tmp_path / "panel.parquet").write_text(HTML_PAGE)
    with raises(r"panel\.parquet: is not a readable Parquet file"):
        open_source(tmp_path / "panel.parquet")


# --- open_source ---------------------------------------------------------------------


def test_unrecognised_paths_say_what_was_expected(tmp_path, bars):
    with raises(r"nowhere: does not exist; expected a Parquet file"):
        open_source(tmp_path / "nowhere")
    (tmp_path / "prices.txt").write_text("hello")
    with raises(r"prices\.txt: is not a Parquet file"):
        open_source(tmp_path / "prices.txt")
    (tmp_path / "empty").mkdir()
    with raises(r"empty: holds no bar data"):
        open_source(tmp_path / "empty")
    mixed = write_csv_folder(tmp_path / "mixed", bars)
    bars.to_parquet(mixed / "panel.parquet")
    with raises(r"mixed: holds both \.parquet and \.csv files"):
        open_source(mixed)


# --- Qlib provider directory ---------------------------------------------------------


@pytest.fixture
def provider(tmp_path, golden_dir):
    """A copy of the golden provider cut to two instruments (A and KHC)."""
    source = golden_dir / "qlib_provider"
    target = tmp_path / "provider"
    shutil.copytree(source / "calendars", target / "calendars")
    (target / "instruments").mkdir()
    listed = (source / "instruments" / "all.txt").read_text().splitlines()
    lines = [line for line in listed if line.split("\t")[0] in ("A", "KHC")]
    (target / "instruments" / "all.txt").write_text("\n".join(lines) + "\n")
    for code in ("a", "khc"):
        shutil.copytree(source / "features" / code, target / "features" / code)
    return target


def test_truncated_bin_is_rejected(provider):
    path = provider / "features" / "khc" / "close.day.bin"
    path.write_bytes(path.read_bytes()[:-2])
    with raises(r"khc/close\.day\.bin: instrument KHC: size \d+ bytes is not a multiple of 4"):
        open_source(provider).read()


def test_empty_bin_is_rejected(provider):
    (provider / "features" / "a" / "volume.day.bin").write_bytes(b"")
    with raises(r"a/volume\.day\.bin: instrument A: is empty"):
        open_source(provider).read()


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (5000.0, r"start index 5000 is outside the calendar \(0\.\.1367\)"),
        (-1.0, r"start index -1 is outside the calendar"),
        (2.5, r"start index 2\.5 is not a whole number"),
        (np.nan, r"start index nan is not a whole number"),
        (1367.0, r"\d+ values from calendar index 1367 run past the calendar's last day"),
    ],
)
def test_bin_start_index_must_place_the_series_inside_the_calendar(provider, header, problem):
    path = provider / "features" / "a" / "open.day.bin"
    values = np.fromfile(path, dtype="<f4")
    values[0] = header
    values.tofile(path)
    with raises(rf"a/open\.day\.bin: instrument A: {problem}"):
        open_source(provider).read()


def test_missing_required_field_file_is_rejected(provider):
    (provider / "features" / "khc" / "high.day.bin").unlink()
    with raises(r"khc/high\.day\.bin: instrument KHC: is missing: high is a required field"):
        open_source(provider).read()


def test_day_with_some_fields_nan_is_rejected(provider):
    path = provider / "features" / "khc" / "close.day.bin"
    values = np.fromfile(path, dtype="<f4")
    values[11] = np.nan  # KHC's 11th day (2015-07-20): open/high/low/volume stored, close not
    values.tofile(path)
    with raises(r"khc: instrument KHC, date 2015-07-20: close is missing \(NaN\)"):
        open_source(provider).read()


def test_missing_calendar_or_instrument_list_is_named(provider):
    (provider / "instruments" / "all.txt").unlink()
    with raises(r"instruments/all\.txt: missing"):
        open_source(provider)
    (provider / "calendars" / "day.txt").unlink()
    with raises(r"calendars/day\.txt: missing"):
        open_source(provider)


def test_unsorted_or_unparsable_calendar_is_rejected(provider):
    calendar = provider / "calendars" / "day.txt"
    days = calendar.read_text().splitlines()
    calendar.write_text("\n".join([days[1], days[0], *days[2:]]) + "\n")
    with raises(r"day\.txt: dates must be ascending and distinct"):
        open_source(provider)
    calendar.write_text("\n".join([days[0], "yesterday", *days[2:]]) + "\n")
    with raises(r"day\.txt: line 2: date 'yesterday' does not parse"):
        open_source(provider)


def test_instrument_listed_without_feature_folder_is_rejected(provider):
    shutil.rmtree(provider / "features" / "khc")
    with raises(r"features/khc: is missing: instrument KHC is listed in instruments/all\.txt"):
        open_source(provider)


# --- universe files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("AAPL\t2010-01-04\n", r"line 1: expected CODE<TAB>start<TAB>end"),
        (
            "AAPL\t2010-01-04\t2011-01-01\nMSFT\t2010-01-04\tsoon\n",
            r"instrument MSFT: line 2: dates '2010-01-04', 'soon' do not parse",
        ),
        ("AAPL\t2012-01-04\t2011-01-01\n", r"instrument AAPL: line 1: span starts 2012-01-04 after it ends 2011-01-01"),
        ("\n\n", r"lists no instruments"),
    ],
)
def test_malformed_universe_file_names_the_line(tmp_path, text, problem):
    path = tmp_path / "csi300.txt"
    path.write_text(text)
    with raises(rf"csi300\.txt: {problem}"):
        Universe.from_file(path)


def test_universe_spans_must_not_run_backwards():
    with pytest.raises(ValueError, match=re.escape("universe span of X starts 2020-02-01 after it ends 2020-01-01")):
        Universe(pd.DataFrame({"instrument": ["X"], "start": ["2020-02-01"], "end": ["2020-01-01"]}))
