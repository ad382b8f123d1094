"""Sources (§1): every kind yields the same Qlib-adjusted rows; universe spans; the sample."""

from __future__ import annotations

import datetime as dt
import importlib.util
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alstm_pipeline.sources import RAW_COLUMNS, Universe, open_source, peek_date_bounds
from alstm_pipeline_tests.conftest import REPO_ROOT, SAMPLE_PATH

# In the full panel and in the bundled sample alike (panel_path is either); BRK.B has a dot.
SLICE_INSTRUMENTS = ["AAPL", "BRK.B", "GILD", "MO", "NEE"]
SLICE_DATES = ("2014-06-02", "2016-12-30")
# The sample holds only full histories, so a late listing is made up: MO's rows before
# this day are left out of the slice, and the sources must cope with unequal spans.
MO_LISTED = pd.Timestamp("2015-07-06")
PANEL_COLUMNS = ["instrument", "date", "open", "high", "low", "close", "adj_close", "volume"]
VALUE_COLUMNS = list(RAW_COLUMNS[2:])


def _listed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without MO's rows before MO_LISTED."""
    early = (frame["instrument"] == "MO") & (pd.to_datetime(frame["date"]) < MO_LISTED)
    return frame[~early].reset_index(drop=True)


@pytest.fixture(scope="module")
def panel_slice(panel_path) -> pd.DataFrame:
    """Raw panel rows (shared-panel columns) of a few instruments over ~2.5 years."""
    table = pq.read_table(
        panel_path,
        columns=PANEL_COLUMNS,
        filters=[("instrument", "in", SLICE_INSTRUMENTS)],
    )
    frame = table.to_pandas()
    frame["date"] = pd.to_datetime(frame["date"])
    frame = _listed(frame[frame["date"].between(*SLICE_DATES)])
    assert sorted(frame["instrument"].unique()) == sorted(SLICE_INSTRUMENTS)
    return frame


@pytest.fixture(scope="module")
def slice_from_panel(panel_path) -> pd.DataFrame:
    """The same slice read through the Parquet source: the reference for the other kinds."""
    return _listed(open_source(panel_path).read(*SLICE_DATES, instruments=SLICE_INSTRUMENTS))


def _write_csv_folder(frame: pd.DataFrame, folder, **rename) -> None:
    folder.mkdir()
    for code, rows in frame.groupby("instrument"):
        rows.drop(columns="instrument").rename(columns=rename).to_csv(folder / f"{code}.csv", index=False)


def test_parquet_panel_matches_the_exact_fields_qlib_read(panel_path, golden_dir):
    golden = pd.read_parquet(golden_dir / "input.parquet")
    source = open_source(panel_path)
    # All 27 golden stocks are in the full panel; the sample holds 5 of them (CME, DHR,
    # GILD, MO, NEE) over the whole golden span: compared on the stocks the panel holds.
    held = sorted(set(golden["instrument"]) & set(source.instruments()))
    assert len(held) >= 5
    golden = golden[golden["instrument"].isin(held)]
    rows = source.read(golden["date"].min(), golden["date"].max(), instruments=held)

    assert source.kind == "parquet"
    assert list(rows.columns) == list(RAW_COLUMNS)
    assert rows["date"].dtype == "datetime64[ns]"
    assert all(rows[column].dtype == np.float32 for column in VALUE_COLUMNS)
    assert rows["vwap"].isna().all()  # §1.3: no vwap in the panel
    # float64 adjustment then one float32 cast reproduces Qlib's stored values bit for bit
    pd.testing.assert_frame_equal(rows.drop(columns="vwap"), golden.reset_index(drop=True), check_exact=True)


def test_qlib_provider_yields_golden_input_bit_for_bit(golden_dir):
    provider = golden_dir / "qlib_provider"
    golden = pd.read_parquet(golden_dir / "input.parquet")
    source = open_source(provider)
    rows = source.read()

    assert source.kind == "qlib"
    pd.testing.assert_frame_equal(rows.drop(columns="vwap"), golden.reset_index(drop=True), check_exact=True)
    assert rows["vwap"].isna().all()
    calendar_file = (provider / "calendars" / "day.txt").read_text().split()
    assert list(source.calendar().strftime("%Y-%m-%d")) == calendar_file
    assert source.instruments() == sorted(golden["instrument"].unique())
    ranges = source.date_ranges().set_index("instrument")
    assert ranges.loc["KHC", "start"] == pd.Timestamp("2015-07-06")  # listed late: its .bin starts there
    assert ranges.loc["A", "end"] == pd.Timestamp("2017-01-10")


def test_qlib_provider_drops_suspended_days_and_maps_codes_back_to_their_case(tmp_path, golden_dir):
    provider = tmp_path / "provider"
    shutil.copytree(golden_dir / "qlib_provider" / "calendars", provider / "calendars")
    (provider / "instruments").mkdir()
    (provider / "instruments" / "all.txt").write_text("BF.B\t2011-08-04\t2011-08-12\n")
    folder = provider / "features" / "bf.b"
    folder.mkdir(parents=True)
    # 7 calendar days from index 0; day 2 suspended (all fields NaN but the ffilled factor, §1.2)
    closes = np.array([10, 11, np.nan, 12, 13, 14, 15], dtype="<f4")
    for field in ("open", "high", "low", "close", "vwap"):
        np.concatenate([[0], closes]).astype("<f4").tofile(folder / f"{field}.day.bin")
    volume = np.where(np.isnan(closes), np.nan, 1000.0)
    np.concatenate([[0], volume]).astype("<f4").tofile(folder / "volume.day.bin")  # no factor.day.bin

    rows = open_source(provider).read()

    calendar = pd.read_csv(provider / "calendars" / "day.txt", header=None)[0].iloc[:7]
    assert rows["instrument"].unique().tolist() == ["BF.B"]
    assert rows["date"].dt.strftime("%Y-%m-%d").tolist() == calendar.drop(index=2).tolist()
    assert rows["close"].tolist() == [10, 11, 12, 13, 14, 15]
    assert rows["vwap"].tolist() == rows["close"].tolist()
    assert (rows["factor"] == 1.0).all()  # no adjustment data: factor 1.0


def test_parquet_folder_with_text_dates_reads_like_the_single_file(tmp_path, panel_slice, slice_from_panel):
    folder = tmp_path / "panel"
    folder.mkdir()
    first, rest = SLICE_INSTRUMENTS[:2], SLICE_INSTRUMENTS[2:]
    text_dates = panel_slice[panel_slice["instrument"].isin(first)].assign(
        date=lambda f: f["date"].dt.strftime("%Y-%m-%d")
    )
    text_dates.to_parquet(folder / "part-0.parquet")
    (folder / "more").mkdir()
    panel_slice[panel_slice["instrument"].isin(rest)].to_parquet(folder / "more" / "part-1.parquet")

    source = open_source(folder)

    assert source.kind == "parquet"
    pd.testing.assert_frame_equal(source.read(), slice_from_panel, check_exact=True)
    assert source.instruments() == sorted(SLICE_INSTRUMENTS)


def test_csv_folder_reads_like_the_parquet_panel(tmp_path, panel_slice, slice_from_panel):
    folder = tmp_path / "csv"
    _write_csv_folder(panel_slice, folder)

    source = open_source(folder)

    assert source.kind == "csv"
    assert source.instruments() == sorted(SLICE_INSTRUMENTS)  # BRK.B.csv is BRK.B
    pd.testing.assert_frame_equal(source.read(), slice_from_panel, check_exact=True)
    assert source.calendar().equals(pd.DatetimeIndex(sorted(panel_slice["date"].unique()), name="date"))


def test_csv_headers_in_yahoo_spelling_are_understood(tmp_path, panel_slice, slice_from_panel):
    folder = tmp_path / "yahoo"
    yahoo = {
        "date": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close",
        "adj_close": "Adj Close", "volume": "Volume",
    }
    _write_csv_folder(panel_slice, folder, **yahoo)

    pd.testing.assert_frame_equal(open_source(folder).read(), slice_from_panel, check_exact=True)


def test_csv_with_factor_column_is_taken_as_already_adjusted(tmp_path, golden_dir):
    golden = pd.read_parquet(golden_dir / "input.parquet")
    golden = golden[golden["instrument"].isin(["A", "KHC"])].reset_index(drop=True)
    _write_csv_folder(golden, tmp_path / "normalized")  # Qlib's normalize-step layout

    rows = open_source(tmp_path / "normalized").read()

    pd.testing.assert_frame_equal(rows.drop(columns="vwap"), golden, check_exact=True)


def test_bars_without_adjustment_data_get_factor_one(tmp_path, panel_slice):
    raw = panel_slice.drop(columns=["adj_close"])
    raw.to_parquet(tmp_path / "raw.parquet")

    rows = open_source(tmp_path / "raw.parquet").read()

    assert (rows["factor"] == 1.0).all()
    expected = raw.sort_values(["instrument", "date"])["close"].to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(rows["close"].to_numpy(), expected)


def test_timestamps_with_time_or_zone_become_their_calendar_day(tmp_path, panel_slice, slice_from_panel):
    # e.g. a feed stamping bars at the 16:00 New York close
    stamped = panel_slice.assign(date=(panel_slice["date"] + pd.Timedelta(hours=16)).dt.tz_localize("America/New_York"))
    stamped.to_parquet(tmp_path / "stamped.parquet")
    text = panel_slice.assign(date=(panel_slice["date"] + pd.Timedelta(hours=16)).dt.strftime("%Y-%m-%d %H:%M:%S"))
    _write_csv_folder(text, tmp_path / "csv")

    for path in (tmp_path / "stamped.parquet", tmp_path / "csv"):
        rows = open_source(path).read(*SLICE_DATES)
        pd.testing.assert_frame_equal(rows, slice_from_panel, check_exact=True)


def test_read_bounds_are_inclusive_and_may_fall_on_non_trading_days(panel_path, golden_dir):
    for source in (open_source(panel_path), open_source(golden_dir / "qlib_provider")):
        # 2016-02-12 is a Friday, 2016-02-15 Presidents' Day, 2016-03-05 a Saturday;
        # MO and CME are in the golden provider, the full panel and the sample.
        rows = source.read("2016-02-12", "2016-03-05", instruments=["MO", "CME"])
        assert rows["instrument"].unique().tolist() == ["CME", "MO"]
        assert rows["date"].min() == pd.Timestamp("2016-02-12")
        assert rows["date"].max() == pd.Timestamp("2016-03-04")
        assert pd.Timestamp("2016-02-15") not in set(rows["date"])
        assert len(rows) == 2 * 15  # trading days 02-12 .. 03-04
        assert rows.equals(rows.sort_values(["instrument", "date"], ignore_index=True))


def test_instruments_missing_from_the_source_yield_no_rows(golden_dir):
    rows = open_source(golden_dir / "qlib_provider").read("2016-12-01", "2016-12-31", instruments=["A", "NOPE"])
    assert rows["instrument"].unique().tolist() == ["A"]
    assert open_source(golden_dir / "qlib_provider").read(instruments=[]).empty


def test_zero_volume_days_are_kept(full_panel_path):
    rows = open_source(full_panel_path).read()
    assert len(rows) == pq.ParquetFile(full_panel_path).metadata.num_rows
    assert (rows["volume"] == 0).sum() == 104  # real zero-volume days of the shared panel


def test_panel_calendar_and_date_ranges(full_panel_path):
    source = open_source(full_panel_path)
    calendar = source.calendar()
    assert calendar.is_monotonic_increasing and calendar.is_unique
    assert (calendar[0], calendar[-1], len(calendar)) == (pd.Timestamp("1999-11-01"), pd.Timestamp("2021-04-21"), 5402)
    ranges = source.date_ranges().set_index("instrument")
    assert len(ranges) == 403 and ranges.loc["ABBV", "start"] == pd.Timestamp("2013-01-02")


def test_universe_file_spans_filter_rows_inclusively_with_several_spans_per_instrument():
    universe = Universe.from_file(REPO_ROOT / "data" / "universe_example.txt")
    assert universe.instruments == ["AAPL", "JPM", "NVDA", "XOM"]
    assert (universe.spans["instrument"] == "NVDA").sum() == 2

    days = pd.to_datetime(["2012-12-31", "2013-01-02", "2014-12-31", "2015-01-02", "2021-04-21"])
    frame = pd.DataFrame(
        {"instrument": ["NVDA"] * 5 + ["MSFT"] + ["JPM"] * 2, "date": [*days, days[0], "2010-01-01", "2010-01-04"]}
    )
    frame["date"] = pd.to_datetime(frame["date"])

    assert universe.mask(frame).tolist() == [True, False, False, True, True, False, False, True]


def test_universe_mask_handles_overlapping_spans():
    spans = pd.DataFrame(
        {
            "instrument": ["X", "X", "X"],
            "start": ["2020-01-01", "2020-01-05", "2020-03-01"],
            "end": ["2020-02-01", "2020-01-10", "2020-03-02"],
        }
    )
    days = pd.to_datetime(["2020-01-20", "2020-02-02", "2020-03-02", "2019-12-31"])
    frame = pd.DataFrame({"instrument": "X", "date": days})
    assert Universe(spans).mask(frame).tolist() == [True, False, True, False]


def test_everything_universe_keeps_every_row_of_the_source(golden_dir):
    source = open_source(golden_dir / "qlib_provider")
    universe = Universe.everything(source)
    assert universe.instruments == source.instruments()
    assert universe.mask(source.read()).all()


def test_bundled_sample_follows_its_documented_rule(full_panel_path):
    spec = importlib.util.spec_from_file_location("build_sample", REPO_ROOT / "data" / "build_sample.py")
    build_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_sample)
    expected = build_sample.select_sample(pd.read_parquet(full_panel_path))

    sample = open_source(SAMPLE_PATH)
    rows = sample.read()

    assert pq.read_schema(SAMPLE_PATH).field("date").type == pa.date32()
    assert sample.instruments() == sorted(expected["instrument"].unique()) and len(sample.instruments()) == 100
    calendar = sample.calendar()
    assert (calendar[0], calendar[-1], len(calendar)) == (pd.Timestamp("2007-06-01"), pd.Timestamp("2021-04-21"), 3497)
    assert len(rows) == 100 * 3497  # full history for every sampled instrument
    pd.testing.assert_frame_equal(
        rows, open_source(full_panel_path).read(calendar[0], calendar[-1], sample.instruments()), check_exact=True
    )


# --- peek_date_bounds: cheap, no validation, never raises ----------------------------


def _bars(days, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"date": pd.to_datetime(days)})
    for name in ("open", "high", "low", "close", "volume"):
        frame[name] = columns.get(name, 1.0)
    return frame


def test_peek_bounds_of_a_qlib_provider_reads_the_calendar_ends(tmp_path):
    provider = tmp_path / "provider"
    (provider / "calendars").mkdir(parents=True)
    (provider / "calendars" / "day.txt").write_text("\n2011-08-04\n2011-08-05\nnot a date\n2017-01-10\n\n")
    # the middle of the calendar is not looked at, and nothing else needs to exist
    assert peek_date_bounds(provider) == (dt.date(2011, 8, 4), dt.date(2017, 1, 10))
    (provider / "calendars" / "day.txt").write_text("2011-08-04\n" + "2011-08-05\n" * 5000 + "2017-01-10 00:00:00")
    assert peek_date_bounds(provider) == (dt.date(2011, 8, 4), dt.date(2017, 1, 10))

    (provider / "calendars" / "day.txt").unlink()
    assert peek_date_bounds(provider) == (None, None)


def test_peek_bounds_of_parquet_uses_row_group_statistics(tmp_path):
    frame = _bars(["2015-03-02", "2015-03-03", "2016-01-04", "2014-12-31"]).assign(instrument=["A", "A", "B", "B"])
    frame.to_parquet(tmp_path / "dates.parquet", row_group_size=2)  # 2 row groups: min/max across them
    frame.assign(date=frame["date"].dt.date).to_parquet(tmp_path / "date32.parquet")
    frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d")).to_parquet(tmp_path / "text.parquet")
    # 16:00 in New York on 2016-01-04 is 21:00 UTC: still 2016-01-04; 23:00 would be the 5th in UTC
    stamped = frame.assign(date=(frame["date"] + pd.Timedelta(hours=23)).dt.tz_localize("America/New_York"))
    stamped.to_parquet(tmp_path / "zoned.parquet")
    expected = (dt.date(2014, 12, 31), dt.date(2016, 1, 4))
    for name in ("dates", "date32", "text", "zoned"):
        assert peek_date_bounds(tmp_path / f"{name}.parquet") == expected, name

    folder = tmp_path / "panel"
    (folder / "more").mkdir(parents=True)
    frame.iloc[:2].to_parquet(folder / "a.parquet")
    frame.iloc[2:].assign(date=["2021-04-21", "2021-04-20"]).to_parquet(folder / "more" / "b.parquet")
    assert peek_date_bounds(folder) == (dt.date(2015, 3, 2), dt.date(2021, 4, 21))

    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "bare.parquet", write_statistics=False)
    assert peek_date_bounds(tmp_path / "bare.parquet") == (None, None)  # no statistics: unknown, not guessed


def test_peek_bounds_do_not_validate(tmp_path):
    frame = _bars(["2015-03-02", "2015-03-03", "2015-03-04"], close=[1.0, -5.0, np.nan]).assign(instrument="A")
    frame = pd.concat([frame, frame])  # duplicates too
    frame.to_parquet(tmp_path / "bad.parquet")
    assert peek_date_bounds(tmp_path / "bad.parquet") == (dt.date(2015, 3, 2), dt.date(2015, 3, 4))


def test_peek_bounds_of_a_csv_folder_reads_each_file_s_ends(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    _bars(["2010-01-04", "2010-01-05", "2012-06-29"]).to_csv(folder / "A.csv", index=False)
    # newest first (some downloads are), Yahoo headers, a time part, a bad value inside
    (folder / "B.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        '"2013-05-01 16:00:00",1,1,1,1,1,10\n'
        "2011-01-03,1,1,1,-1,1,10\n"
        "2009-12-31 16:00:00,1,1,1,1,1,10\n"
    )
    (folder / "BF.B.csv").write_text("<!DOCTYPE html><html>1999-01-01</html>\n")  # skipped
    (folder / "C.csv").write_text("date,open,high,low,close,volume\n")  # header only: skipped
    (folder / "D.csv").write_text("")  # empty: skipped
    (folder / "E.csv").write_text("date,close\n01/02/1990,1\n03/04/1991,2\n")  # not ISO: skipped
    (folder / "F.csv").write_text("open,close\n1,2\n")  # no date column: skipped
    assert peek_date_bounds(folder) == (dt.date(2009, 12, 31), dt.date(2013, 5, 1))

    long = _bars(pd.bdate_range("2000-01-03", "2020-12-31"))
    long.to_csv(folder / "G.csv", index=False)  # much longer than the chunk read at each end
    assert peek_date_bounds(folder) == (dt.date(2000, 1, 3), dt.date(2020, 12, 31))


def test_peek_bounds_of_missing_or_broken_paths_are_none(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "html.parquet").write_text("<html>not parquet</html>")
    (tmp_path / "prices.txt").write_text("2015-01-01")
    (tmp_path / "nodate.parquet").write_bytes(b"")
    pd.DataFrame({"instrument": ["A"], "close": [1.0]}).to_parquet(tmp_path / "nodates.parquet")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _bars(["2015-01-02"]).to_csv(mixed / "A.csv", index=False)
    _bars(["2015-01-02"]).assign(instrument="A").to_parquet(mixed / "p.parquet")
    for name in ("nowhere", "empty", "html.parquet", "prices.txt", "nodate.parquet", "nodates.parquet", "mixed"):
        assert peek_date_bounds(tmp_path / name) == (None, None), name
    assert peek_date_bounds(str(tmp_path / "nowhere" / "deeper")) == (None, None)


def test_peek_bounds_agree_with_the_sources(panel_path, golden_dir):
    for path in (panel_path, SAMPLE_PATH, golden_dir / "qlib_provider"):
        calendar = open_source(path).calendar()
        assert peek_date_bounds(path) == (calendar[0].date(), calendar[-1].date()), path
