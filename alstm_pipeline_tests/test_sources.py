"""Sources (§1): every kind yields the same Qlib-adjusted rows; universe spans; the sample."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alstm_pipeline.sources import RAW_COLUMNS, Universe, open_source
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
