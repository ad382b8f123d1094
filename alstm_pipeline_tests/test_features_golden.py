"""Alpha158 and LABEL0 against Qlib 0.9.7's own output (shared/golden), and the
incremental contract: a day computed from a LOOKBACK_ROWS slice equals the full-history row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alstm_pipeline.features import (
    ALPHA158_NAMES,
    LABEL_LOOKAHEAD_ROWS,
    LOOKBACK_ROWS,
    compute_alpha158,
    compute_label,
)

# Golden README: relative 1e-4, absolute 1e-5 near zero, identical NaN positions.
RTOL, ATOL = 1e-4, 1e-5
# Columns where an ill-conditioned window (near-constant input) may legitimately differ more.
ILL_CONDITIONED = tuple(f"{family}{w}" for family in ("CORR", "CORD", "RSQR") for w in (5, 10, 20, 30, 60))


@pytest.fixture(scope="module")
def golden_input(golden_dir) -> pd.DataFrame:
    return pd.read_parquet(golden_dir / "input.parquet")


@pytest.fixture(scope="module")
def golden(golden_dir) -> pd.DataFrame:
    return pd.read_parquet(golden_dir / "alpha158.parquet")


@pytest.fixture(scope="module")
def ours_on_golden_rows(golden_input, golden) -> pd.DataFrame:
    # Computed on the whole input (it starts ~150 days early so windows are full) and
    # compared on the golden rows 2012-01-03 .. 2016-12-30.
    features = compute_alpha158(golden_input)
    label = compute_label(golden_input)
    ours = features.merge(label, on=["instrument", "date"], how="outer", validate="one_to_one")
    return golden[["instrument", "date"]].merge(ours, on=["instrument", "date"], how="left", validate="one_to_one")


def test_golden_columns_are_alpha158_names_in_order(golden):
    assert list(golden.columns) == ["instrument", "date", *ALPHA158_NAMES, "LABEL0"]


@pytest.mark.parametrize("column", [*ALPHA158_NAMES, "LABEL0"])
def test_column_matches_qlib_golden_values(ours_on_golden_rows, golden, column):
    expected = golden[column].to_numpy(np.float64)
    got = ours_on_golden_rows[column].to_numpy()
    assert got.dtype == np.float32
    got = got.astype(np.float64)
    nan_mismatch = np.flatnonzero(np.isnan(expected) != np.isnan(got))
    assert nan_mismatch.size == 0, f"NaN positions differ at rows {golden.iloc[nan_mismatch[:5], :2].values.tolist()}"
    both = ~np.isnan(expected)
    loose = np.abs(got[both] - expected[both]) > ATOL + RTOL * np.abs(expected[both])
    allowed = 0.001 * both.sum() if column in ILL_CONDITIONED else 0
    assert loose.sum() <= allowed, f"{loose.sum()} cells outside rel {RTOL} / abs {ATOL}"


def test_rows_cover_each_instrument_span_in_instrument_date_order(golden_input):
    features = compute_alpha158(golden_input)
    expected = golden_input.sort_values(["instrument", "date"])[["instrument", "date"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(features[["instrument", "date"]], expected)


# --- incremental == full ---------------------------------------------------------------


@pytest.fixture(scope="module")
def suspended_input(golden_input) -> tuple[pd.DataFrame, np.ndarray]:
    """Golden input with made-up suspensions (rows removed), and its calendar."""
    calendar = np.sort(golden_input["date"].unique())
    gaps = {"AES": calendar[400:403], "HUM": calendar[900:902], "KHC": calendar[1000:1001]}
    drop = np.zeros(len(golden_input), dtype=bool)
    for instrument, days in gaps.items():
        drop |= (golden_input["instrument"] == instrument).to_numpy() & golden_input["date"].isin(days).to_numpy()
    return golden_input[~drop].reset_index(drop=True), calendar


@pytest.fixture(scope="module")
def full_history(suspended_input) -> tuple[pd.DataFrame, pd.DataFrame]:
    fields, _ = suspended_input
    return compute_alpha158(fields), compute_label(fields)


def _series_bounds(fields: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each instrument's first and last date in the full data (Series indexed by instrument,
    as the Dagster asset passes them)."""
    spans = fields.groupby("instrument")["date"].agg(["min", "max"])
    return spans["min"], spans["max"]


def _rows_on(frame: pd.DataFrame, day) -> pd.DataFrame:
    return frame[frame["date"] == day].reset_index(drop=True)


# Day positions: AES suspended on 400..402 (day 401 is inside the gap, 403 right after it,
# 460 has a slice that starts with the whole gap, so it needs first_dates;
# 462's slice starts on the gap's last day); HUM's 2-day gap at
# 900..901 starts a slice for day 960; KHC is suspended on day 1000 itself.
@pytest.mark.parametrize("day_index", [200, 401, 403, 460, 462, 960, 1000, 1300])
def test_day_from_lookback_slice_equals_full_history_row(suspended_input, full_history, day_index):
    fields, calendar = suspended_input
    first_dates, last_dates = _series_bounds(fields)
    day = calendar[day_index]
    window = fields[fields["date"].between(calendar[day_index - LOOKBACK_ROWS], day)]
    sliced = _rows_on(compute_alpha158(window, last_dates=last_dates, first_dates=first_dates), day)
    full = _rows_on(full_history[0], day)
    pd.testing.assert_frame_equal(sliced, full, check_exact=True)
    assert len(full) == fields.loc[fields["date"] <= day, "instrument"].nunique()


# Day 400: AES is suspended on 400..402, so the slice holds no AES row at all.
@pytest.mark.parametrize("day_index", [399, 400, 1000, 1365])
def test_label_from_lookahead_slice_equals_full_history_label(suspended_input, full_history, day_index):
    fields, calendar = suspended_input
    first_dates, last_dates = _series_bounds(fields)
    day = calendar[day_index]
    window = fields[fields["date"].between(day, calendar[min(day_index + LABEL_LOOKAHEAD_ROWS, len(calendar) - 1)])]
    sliced = _rows_on(compute_label(window, last_dates=last_dates, first_dates=first_dates), day)
    pd.testing.assert_frame_equal(sliced, _rows_on(full_history[1], day), check_exact=True)


def test_suspended_instrument_keeps_its_nan_row_only_with_last_dates(suspended_input, full_history):
    fields, calendar = suspended_input
    day = calendar[401]  # AES has no row on this day but trades again later
    window = fields[fields["date"].between(calendar[401 - LOOKBACK_ROWS], day)]
    without = _rows_on(compute_alpha158(window), day)
    assert "AES" not in set(without["instrument"])
    _, last_dates = _series_bounds(fields)
    with_last = _rows_on(compute_alpha158(window, last_dates=last_dates.to_dict()), day).set_index("instrument")
    assert np.isnan(with_last.loc["AES", "KMID"]) and np.isfinite(with_last.loc["AES", "CNTP60"])


def test_block_size_does_not_change_any_value(golden_input, monkeypatch):
    # Instruments are processed in blocks sized for the cache; the split is not a result.
    from alstm_pipeline.features import alpha158

    default = compute_alpha158(golden_input)
    monkeypatch.setattr(alpha158, "_BLOCK_CELLS", 3 * 1368)  # 3 instruments per block
    pd.testing.assert_frame_equal(compute_alpha158(golden_input), default, check_exact=True)


def test_a_slice_shorter_than_lookback_rows_changes_the_day(suspended_input, full_history):
    # LOOKBACK_ROWS is the minimum: with one row less ROC60 (Ref($close, 60)) is lost.
    fields, calendar = suspended_input
    day = calendar[1300]  # every instrument has 60 rows of history here
    window = fields[fields["date"].between(calendar[1300 - LOOKBACK_ROWS + 1], day)]
    short = _rows_on(compute_alpha158(window), day)
    assert short["ROC60"].isna().all() and _rows_on(full_history[0], day)["ROC60"].notna().all()
