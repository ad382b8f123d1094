"""Bad input to the sources raises SourceDataError naming file, instrument, date and problem."""

from __future__ import annotations

import re
from pathlib import Path
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from alstm_pipeline.sources import SourceDataError, SourceReport, Universe, open_source

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

    with pytest.raises(SourceReport) as caught:
        open_source(tmp_path / "panel.parquet").read()

    error = caught.value
    path = tmp_path / "panel.parquet"
    assert str(error) == (
        f"{path}: 1 problem:\n"
        f"  {path}: instrument AAPL, date 2015-03-09: volume is missing (NaN); volume must be a number >= 0\n"
        "Fix each problem listed above in the file it names (or remove that file from the source), "
        "then run again; nothing was read."
    )
    assert isinstance(error, SourceDataError)  # callers catching the old error still do
    assert (error.file, error.instrument, error.date) == (str(path), "AAPL", "2015-03-09")
    assert error.problems.to_dict("records") == [
        {
            "file": str(path),
            "instrument": "AAPL",
            "date": "2015-03-09",
            "problem": "volume is missing (NaN); volume must be a number >= 0",
        }
    ]


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

    first = r"  instrument IBM, date 2015-03-02: more than one row.* \(in a\.parquet and b\.parquet\)"
    with raises(r"panel: 5 problems:\n" + first):
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
    with raises(r"khc/close\.day\.bin: instrument KHC, date 2015-07-20: close is missing \(NaN\)"):
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
        ("AAPL\t2010-01-04\n", r"line 1: 'AAPL\\t2010-01-04': expected CODE<TAB>start<TAB>end, found 2 field"),
        (
            "AAPL\t2010-01-04\t2011-01-01\nMSFT\t2010-01-04\tsoon\n",
            r"line 2: 'MSFT\\t2010-01-04\\tsoon': date 'soon' does not parse",
        ),
        ("AAPL\t2012-01-04\t2011-01-01\n", r"line 1: .*: span starts 2012-01-04 after it ends 2011-01-01"),
    ],
)
def test_malformed_universe_file_names_the_line(tmp_path, text, problem):
    path = tmp_path / "csi300.txt"
    path.write_text(text)
    with raises(rf"csi300\.txt: 1 problem:\n  .*csi300\.txt: {problem}"):
        Universe.from_file(path)


def test_universe_file_without_spans_is_an_error(tmp_path):
    path = tmp_path / "csi300.txt"
    path.write_text("\n\n")
    with raises(r"csi300\.txt: lists no instruments"):
        Universe.from_file(path)


def test_universe_spans_must_not_run_backwards():
    with pytest.raises(ValueError, match=re.escape("universe span of X starts 2020-02-01 after it ends 2020-01-01")):
        Universe(pd.DataFrame({"instrument": ["X"], "start": ["2020-02-01"], "end": ["2020-01-01"]}))


# --- one report of every bad input ---------------------------------------------------


def test_several_bad_csv_files_are_all_named_in_one_report(tmp_path, bars):
    folder = write_csv_folder(tmp_path / "csv", bars)  # AAPL.csv, IBM.csv: good
    ibm = pd.read_csv(folder / "IBM.csv")
    (folder / "BF.B.csv").write_text(HTML_PAGE)
    ibm.drop(columns="close").to_csv(folder / "MSFT.csv", index=False)
    bad_rows = ibm.astype({"close": object})
    bad_rows.loc[[2, 3], "close"] = "0"
    bad_rows.loc[7, "volume"] = -1
    bad_rows.to_csv(folder / "KO.csv", index=False)
    many = ibm.copy()
    many.loc[0:7, "low"] = -1.0  # 8 bad rows: 5 shown, 3 counted
    many.to_csv(folder / "XOM.csv", index=False)

    with pytest.raises(SourceReport) as caught:
        open_source(folder).read()

    report = caught.value
    message = str(report).splitlines()
    assert message[0] == f"{folder}: 4 of 6 files have problems (13 problems):"
    assert message[-1].startswith("Fix each problem listed above")
    text = str(report)
    assert "  BF.B.csv: is not a CSV of daily bars: it starts like an HTML/XML page" in text
    assert "  MSFT.csv: missing required column(s) close" in text
    first_of_ko = "    instrument KO, date 2015-03-04: close is 0.0; close must be a positive number\n"
    assert "  KO.csv: 3 problems:\n" + first_of_ko in text
    assert "instrument KO, date 2015-03-11: volume is -1.0; volume must be a number >= 0" in text
    assert "  XOM.csv: 8 problems:\n" in text and "    instrument XOM: 3 more problems not shown\n" in text
    assert "AAPL.csv" not in text and "IBM.csv" not in text

    assert report.total == 13 and report.files_checked == 6
    assert [Path(file).name for file in report.bad_files] == ["BF.B.csv", "KO.csv", "MSFT.csv", "XOM.csv"]
    counts = report.counts.assign(file=report.counts["file"].map(lambda f: Path(f).name))
    assert counts.set_index("file")["problems"].to_dict() == {"BF.B.csv": 1, "KO.csv": 3, "MSFT.csv": 1, "XOM.csv": 8}
    assert list(report.problems.columns) == ["file", "instrument", "date", "problem"]
    assert len(report.problems) == 1 + 3 + 1 + 5  # the kept ones: at most 5 per file
    xom = report.problems[report.problems["file"] == str(folder / "XOM.csv")]
    assert xom["date"].tolist() == ["2015-03-02", "2015-03-03", "2015-03-04", "2015-03-05", "2015-03-06"]
    assert report.metadata()["problems_total"] == 13
    assert report.metadata()["problems"][0]["file"] == str(folder / "BF.B.csv")


def test_parquet_folder_reports_every_file_and_every_instrument(tmp_path, bars):
    folder = tmp_path / "panel"
    folder.mkdir()
    frame = bars.copy()
    frame.loc[[1, 2], "close"] = np.nan  # AAPL
    frame.loc[30, "open"] = -2.0  # IBM
    frame.to_parquet(folder / "a.parquet")
    bars.assign(date=pd.to_datetime(bars["date"]) + pd.Timedelta(days=60)).to_parquet(folder / "b.parquet")
    (folder / "c.parquet").write_text(HTML_PAGE)

    with pytest.raises(SourceReport) as caught:
        open_source(folder)  # c.parquet's footer does not read: reported when opening
    assert str(caught.value).splitlines()[:2] == [
        f"{folder}: 1 of 3 files has problems (1 problem):",
        "  c.parquet: is not a readable Parquet file (Parquet magic bytes not found in footer. "
        "Either the file is corrupted or this is not a parquet file.)",
    ]

    (folder / "c.parquet").unlink()
    with pytest.raises(SourceReport) as caught:
        open_source(folder).read()
    report = caught.value
    assert str(report).splitlines()[:5] == [
        f"{folder}: 1 of 2 files has problems (3 problems):",
        "  a.parquet: 3 problems in 2 instruments:",
        "    instrument AAPL, date 2015-03-03: close is missing (NaN); close must be a positive number",
        "    instrument AAPL, date 2015-03-04: close is missing (NaN); close must be a positive number",
        "    instrument IBM, date 2015-03-16: open is -2.0; open must be a positive number",
    ]
    assert report.counts[["instrument", "problems"]].values.tolist() == [["AAPL", 2], ["IBM", 1]]


def test_a_file_wrong_on_every_row_makes_a_short_message(tmp_path, bars):
    rows = 20_000
    frame = pd.DataFrame(
        {
            "instrument": np.repeat([f"S{i:03d}" for i in range(100)], rows // 100),
            "date": np.tile(pd.bdate_range("2000-01-03", periods=rows // 100), 100),
            "open": 1.0, "high": 1.0, "low": 1.0, "close": -1.0, "volume": 1.0,
        }
    )
    frame.to_parquet(tmp_path / "panel.parquet")

    with pytest.raises(SourceReport) as caught:
        open_source(tmp_path / "panel.parquet").read()

    report = caught.value
    assert report.total == rows
    assert report.counts["problems"].tolist() == [rows // 100] * 100
    assert len(report.problems) == 5 * 100  # bounded: 5 kept per instrument
    lines = str(report).splitlines()
    assert lines[0] == f"{tmp_path / 'panel.parquet'}: 20000 problems in 100 instruments:"
    # 20 instruments shown (5 lines + a count each), then one line naming the other 80
    assert len(lines) == 1 + 20 * 6 + 1 + 1
    assert lines[6] == "  instrument S000: 195 more problems not shown"
    assert lines[-2].startswith("  80 more instruments with 16000 problems: S020, S021,")


def test_duplicate_rows_inside_one_csv_name_that_file(tmp_path, bars):
    frame = bars.copy()
    frame.loc[30, "date"] = frame.loc[29, "date"]
    folder = write_csv_folder(tmp_path / "csv", frame)
    with pytest.raises(SourceReport) as caught:
        open_source(folder).read()
    assert caught.value.problems.to_dict("records") == [
        {
            "file": str(folder / "IBM.csv"),
            "instrument": "IBM",
            "date": "2015-03-13",
            "problem": "more than one row for this instrument and date",
        }
    ]


def test_bad_values_outside_the_requested_dates_do_not_stop_a_read(tmp_path, bars):
    frame = bars.copy()
    frame.loc[27, "close"] = -1.0  # IBM 2015-03-11
    frame.to_parquet(tmp_path / "panel.parquet")
    assert len(open_source(tmp_path / "panel.parquet").read("2015-03-12", "2015-03-27")) == 2 * 12


# --- truncated .bin ------------------------------------------------------------------


def _bin_days(path) -> tuple[int, int]:
    values = np.fromfile(path, dtype="<f4")
    return int(values[0]), len(values) - 1


def test_bin_cut_short_by_400_bytes_is_reported_as_truncated_not_as_nan(provider):
    path = provider / "features" / "khc" / "close.day.bin"
    start, days = _bin_days(path)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-400])

    with pytest.raises(SourceReport) as caught:
        open_source(provider).read()

    report = caught.value
    assert report.bad_files == [str(path)] and report.total == 1
    problem = report.problems.loc[0, "problem"]
    assert problem.startswith("file is shorter than the calendar span it claims: ")
    assert f"from calendar index {start} (2015-07-06) the instrument's other fields run to 2017-01-10" in problem
    expected_vs_found = (
        f"needs {days} values ({size} bytes with the header), but it holds {days - 100} ({size - 400} bytes)"
    )
    assert expected_vs_found in problem
    assert problem.endswith("truncated by 100 values")
    assert "NaN" not in str(report)
    assert report.instrument == "KHC"


def test_every_field_cut_alike_is_caught_by_the_instrument_list(provider):
    folder = provider / "features" / "khc"
    for path in sorted(folder.glob("*.day.bin")):
        path.write_bytes(path.read_bytes()[:-400])

    with pytest.raises(SourceReport) as caught:
        open_source(provider).read()

    report = caught.value
    assert sorted(Path(file).name for file in report.bad_files) == sorted(p.name for p in folder.glob("*.day.bin"))
    assert report.problems["problem"].str.contains("instruments/all.txt runs to 2017-01-10").all()


def test_series_ending_early_with_its_listing_is_a_delisting_not_truncation(provider):
    folder = provider / "features" / "khc"
    for path in folder.glob("*.day.bin"):
        path.write_bytes(path.read_bytes()[:-400])  # all fields end 100 days early ...
    start, days = _bin_days(folder / "close.day.bin")
    calendar = (provider / "calendars" / "day.txt").read_text().split()
    last = calendar[start + days - 1]
    listing = provider / "instruments" / "all.txt"
    lines = listing.read_text().splitlines()
    # ... and instruments/all.txt says so: what Qlib's dump_bin writes for a delisted stock
    lines = [line.rsplit("\t", 1)[0] + f"\t{last}" if line.startswith("KHC") else line for line in lines]
    listing.write_text("\n".join(lines) + "\n")

    rows = open_source(provider).read()

    khc = rows[rows["instrument"] == "KHC"]
    assert khc["date"].max() == pd.Timestamp(last) and len(khc) == days


def test_truncated_bin_and_bad_day_of_another_instrument_are_reported_together(provider):
    cut = provider / "features" / "khc" / "volume.day.bin"
    cut.write_bytes(cut.read_bytes()[:-400])
    (provider / "features" / "a" / "high.day.bin").unlink()
    with pytest.raises(SourceReport) as caught:
        open_source(provider).read()
    text = str(caught.value)
    assert text.startswith(f"{provider}: 2 of 12 files have problems (2 problems):")
    assert "features/a/high.day.bin: instrument A: is missing: high is a required field" in text
    assert "features/khc/volume.day.bin: instrument KHC: file is shorter than the calendar span it claims" in text


# --- universe files: every bad line at once ------------------------------------------


def test_every_bad_universe_line_is_reported_with_its_number_and_text(tmp_path):
    path = tmp_path / "csi300.txt"
    path.write_text(
        "AAPL\t2010-01-04\t2020-12-31\n"
        "MSFT 2010-01-04\n"
        "\n"
        "IBM\t2010-13-04\t2020-12-31\n"
        "XOM\t2015-01-01\t2012-01-01\n"
        "JPM\t2010-01-04\t2020-12-31\n"
        "\t2010-01-04\t2020-12-31\n"
    )
    with pytest.raises(SourceReport) as caught:
        Universe.from_file(path)

    assert str(caught.value).splitlines() == [
        f"{path}: 4 problems:",
        "  line 2: 'MSFT 2010-01-04': expected CODE<TAB>start<TAB>end, found 2 field(s)",
        "  line 4: 'IBM\\t2010-13-04\\t2020-12-31': date '2010-13-04' does not parse",
        "  line 5: 'XOM\\t2015-01-01\\t2012-01-01': span starts 2015-01-01 after it ends 2012-01-01",
        "  line 7: '\\t2010-01-04\\t2020-12-31': the instrument code is empty",
        "Fix each problem listed above in the file it names (or remove that file from the source), "
        "then run again; nothing was read.",
    ]
    assert caught.value.problems["file"].unique().tolist() == [str(path)]
