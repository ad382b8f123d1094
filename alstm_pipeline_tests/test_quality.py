"""The data-quality rules behind the asset checks, on tiny frames with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alstm_pipeline import quality

DAY = pd.Timestamp("2020-01-02")


def _features(values) -> pd.DataFrame:
    return pd.DataFrame({"instrument": list("ABC"), "date": DAY, "KMID": values, "VWAP0": np.nan})


def test_infinite_rows_names_instrument_and_date():
    found = quality.infinite_rows(_features([0.1, np.inf, -np.inf]), ["KMID", "VWAP0"])
    assert found["instrument"].tolist() == ["B", "C"]
    assert quality.infinite_rows(_features([0.1, np.nan, 0.0]), ["KMID"]).empty


def test_nan_shares_per_column():
    shares = quality.nan_shares(_features([0.1, np.nan, 0.2]), ["KMID", "VWAP0"])
    assert shares["KMID"] == 1 / 3 and shares["VWAP0"] == 1.0


def test_feature_row_coverage_separates_suspended_rows_from_missing_ones():
    traded = pd.DataFrame({"instrument": ["A", "B", "D"], "date": DAY})
    suspended, missing = quality.feature_row_coverage(_features([0.1, 0.2, np.nan]), traded)
    assert (suspended, missing) == (1, 1)  # C has a row without a bar; D has a bar without a row


def test_instrument_count_collapse_compares_with_the_previous_day():
    counts = pd.Series([100, 98, 40, 41], index=pd.date_range("2020-01-01", periods=4))
    collapsed = quality.instrument_count_collapses(counts)
    assert collapsed["date"].tolist() == [pd.Timestamp("2020-01-03")]
    assert collapsed["previous_day_instruments"].tolist() == [98]


def test_adjusted_price_jump_against_the_previous_stored_close():
    previous = pd.DataFrame({"instrument": ["A", "B"], "date": DAY - pd.Timedelta(days=1), "close": [10.0, 10.0]})
    bars = pd.DataFrame({"instrument": ["A", "B", "A"], "date": [DAY, DAY, DAY + pd.Timedelta(days=1)],
                         "close": [31.0, 12.0, 30.0]})
    jumped = quality.adjusted_price_jumps(bars, previous)
    # A: 10 → 31 is a 3.1× move (a missing split); 31 → 30 and B's 10 → 12 are markets.
    assert jumped[["instrument", "date"]].values.tolist() == [["A", DAY]]
    assert jumped["previous_close"].tolist() == [10.0]


def test_stale_days_allow_a_long_weekend_and_count_beyond_it():
    friday = pd.Timestamp("2021-04-16")
    assert quality.stale_days(friday, pd.Timestamp("2021-04-21")) == 0  # 3 weekdays behind
    assert quality.stale_days(friday, pd.Timestamp("2021-04-28")) == 4  # 8 weekdays behind
