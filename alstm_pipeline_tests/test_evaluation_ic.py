"""IC / Rank IC (§8): parity with Qlib's SigAnaRecord on the golden files, and edge cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alstm_pipeline.evaluation import calc_ic, ic_summary, plot_ic, rolling_ic

TEST_SEGMENT = ("2016-01-01", "2016-12-31")


@pytest.fixture(scope="module")
def golden_prediction_and_label(golden_dir):
    """The golden prediction -RESI5 + 0.5*CORR5 on the processed features, and the raw label."""
    frame = pd.read_parquet(golden_dir / "alstm_processed.parquet")
    frame = frame[frame["date"].between(*TEST_SEGMENT)].set_index(["date", "instrument"])
    # float32 arithmetic on the float32 columns, as Qlib evaluated the expression on its frame.
    pred = -frame["RESI5"] + 0.5 * frame["CORR5"]
    assert pred.dtype == np.float32
    return pred, frame["LABEL0_raw"]


def _index(days: list[str], instruments: list[str]) -> pd.MultiIndex:
    return pd.MultiIndex.from_product([pd.to_datetime(days), instruments], names=["datetime", "instrument"])


def test_daily_ic_and_rank_ic_match_qlib_golden(golden_dir, golden_prediction_and_label):
    golden = pd.read_parquet(golden_dir / "ic.parquet").set_index("date")
    ic, rank_ic = calc_ic(*golden_prediction_and_label)

    assert list(ic.index) == list(golden.index)
    assert len(ic) == 252 and not ic.isna().any()
    np.testing.assert_allclose(ic.to_numpy(), golden["IC"].to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(rank_ic.to_numpy(), golden["RankIC"].to_numpy(), rtol=0, atol=1e-12)


def test_ic_summary_matches_qlib_sig_ana_record(golden_dir, golden_prediction_and_label):
    expected = json.loads((golden_dir / "ic.json").read_text())
    summary = ic_summary(*calc_ic(*golden_prediction_and_label))

    assert set(summary) == {"IC", "ICIR", "Rank IC", "Rank ICIR"}
    for key, value in summary.items():
        assert value == pytest.approx(expected[key], rel=1e-10, abs=1e-14), key


@pytest.mark.parametrize("missing_label", ["nan", "absent_row"])
def test_worked_example_of_section_8(missing_label):
    index = _index(["2020-01-02", "2020-01-03"], ["a", "b", "c", "d"])
    pred = pd.Series([0.3, 0.1, 0.2, 0.4, 0.1, 0.2, 0.3, 0.4], index=index)
    label = pd.Series([0.02, -0.01, 0.00, 0.01, 0.01, np.nan, -0.02, 0.03], index=index)
    if missing_label == "absent_row":  # the outer join turns an absent label into a NaN pair
        label = label.dropna()

    ic, rank_ic = calc_ic(pred, label)
    summary = ic_summary(ic, rank_ic)

    np.testing.assert_allclose(ic.to_numpy(), [0.8, 0.216777], atol=5e-7)
    np.testing.assert_allclose(rank_ic.to_numpy(), [0.8, 0.5], atol=1e-12)
    assert summary["IC"] == pytest.approx(0.508389, abs=5e-7)
    assert summary["ICIR"] == pytest.approx(1.232755, abs=5e-7)
    assert summary["Rank IC"] == pytest.approx(0.65, abs=1e-12)
    assert summary["Rank ICIR"] == pytest.approx(3.064129, abs=5e-7)


def test_rank_ic_gives_tied_predictions_their_average_rank():
    index = _index(["2020-01-02"], ["a", "b", "c"])
    pred = pd.Series([1.0, 1.0, 2.0], index=index)  # ranks 1.5, 1.5, 3
    label = pd.Series([0.1, 0.2, 0.3], index=index)  # ranks 1, 2, 3
    # deviations (-0.5, -0.5, 1) and (-1, 0, 1): sxy 1.5, sxx 1.5, syy 2 → 1.5 / sqrt(3)
    _, rank_ic = calc_ic(pred, label)
    assert rank_ic.iloc[0] == pytest.approx(1.5 / np.sqrt(3.0), abs=1e-15)


def test_days_with_one_pair_or_constant_prediction_are_nan_and_skipped_by_summary():
    index = _index(["2020-01-02", "2020-01-03", "2020-01-06"], ["a", "b", "c"])
    pred = pd.Series([1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 1.0, 2.0, 3.0], index=index)
    label = pd.Series([1.0, 3.0, 2.0, 1.0, 2.0, 3.0, np.nan, np.nan, 4.0], index=index)

    ic, rank_ic = calc_ic(pred, label)

    assert ic.iloc[0] == pytest.approx(0.5) and rank_ic.iloc[0] == pytest.approx(0.5)
    assert ic.iloc[1:].isna().all() and rank_ic.iloc[1:].isna().all()
    assert ic_summary(ic, rank_ic)["IC"] == pytest.approx(0.5)


def test_calc_ic_rejects_inputs_not_indexed_by_day_and_instrument():
    flat = pd.Series([0.1, 0.2])
    with pytest.raises(ValueError, match="MultiIndex"):
        calc_ic(flat, flat)
    index = pd.MultiIndex.from_tuples([(pd.Timestamp("2020-01-02"), "a")] * 2)
    with pytest.raises(ValueError, match="duplicate"):
        calc_ic(pd.Series([0.1, 0.2], index=index), pd.Series([0.1, 0.2], index=index))


def test_rolling_ic_is_the_trailing_mean_over_the_window():
    ic = pd.Series([0.1, 0.3, np.nan, 0.5], index=pd.date_range("2020-01-01", periods=4))
    rolled = rolling_ic(ic, window=2, min_periods=1)
    np.testing.assert_allclose(rolled.to_numpy(), [0.1, 0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="window"):
        rolling_ic(ic, window=0)


def test_plot_ic_renders_a_png(golden_prediction_and_label):
    png = plot_ic(*calc_ic(*golden_prediction_and_label))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
