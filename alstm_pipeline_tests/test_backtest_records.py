"""Backtest records as Qlib's PortAnaRecord keeps them: positions, trades, benchmark, limits,
deal price; and the Qlib-shaped exports written and read back (Parquet / CSV).

Every number below is worked out by hand in the comments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alstm_pipeline.evaluation import (
    TopkDropoutConfig,
    backtest_summary,
    benchmark_returns,
    raw_change,
    run_topk_dropout,
)
from alstm_pipeline.exports import (
    filter_dates,
    label_frame,
    port_analysis_frame,
    positions_frame,
    read_frame,
    report_frame,
    signal_frame,
    trades_frame,
    write_frame,
)

DAYS = pd.to_datetime(["2020-01-06", "2020-01-07", "2020-01-08", "2020-01-09"])
SMALL = dict(open_cost=0.001, close_cost=0.002, min_cost=1.0, account=1000.0)


def _long(values: dict[str, list[float | None]], column: str) -> pd.DataFrame:
    rows = [
        {"date": DAYS[day], "instrument": name, column: float(v)}
        for name, series in values.items()
        for day, v in enumerate(series)
        if v is not None
    ]
    return pd.DataFrame(rows)


def _scores(by_day: dict[int, dict[str, float]]) -> pd.DataFrame:
    rows = [(DAYS[day], name, score) for day, scores in by_day.items() for name, score in scores.items()]
    return pd.DataFrame(rows, columns=["date", "instrument", "score"])


CLOSES = {"A": [10, 10, 12, 12], "B": [20, 20, 22, 25], "C": [5, 5, 5, 5]}
OPENS = {"A": [10, 9.5, 11, 12], "B": [20, 20, 21, 24], "C": [5, 5, 5, 5]}
# Day 0's scores trade on day 1 (A best), day 1's and day 2's on days 2 and 3 (B best).
SCORES = _scores(
    {
        0: {"A": 0.9, "B": 0.5, "C": 0.1},
        1: {"B": 0.9, "A": 0.5, "C": 0.1},
        2: {"B": 0.9, "A": 0.5, "C": 0.1},
        3: {"B": 0.9, "A": 0.5, "C": 0.1},
    }
)


@pytest.fixture
def open_ledger():
    prices = _long(CLOSES, "close").merge(_long(OPENS, "open"), on=["date", "instrument"])
    config = TopkDropoutConfig(topk=1, n_drop=1, trade_unit=10, deal_price="open", **SMALL)
    return run_topk_dropout(SCORES, prices, config)


def test_positions_and_trades_match_a_hand_worked_ledger_dealt_at_the_open(open_ledger):
    # Day 1: buy A at the open 9.5: 1000·0.95/9.5 = 100 shares (10-share lots: 100), value 950,
    #        cost max(0.95, 1) = 1, cash 49; marked at the close 10: V = 49 + 1000 = 1049.
    # Day 2: B ranks first, A is dropped: sell A at the open 11: 1100, cost 2.2, cash 1146.8;
    #        buy B at the open 21: 1146.8·0.95/21 = 51.88 → 50 shares, 1050, cost 1.05,
    #        cash 95.75; B marked at 22: V = 95.75 + 1100 = 1195.75.
    # Day 3: A is the only candidate and ranks below B: no trades; V = 95.75 + 50·25 = 1345.75.
    trades = open_ledger.trades
    assert list(trades.columns) == ["date", "instrument", "direction", "amount", "price", "value", "cost"]
    assert trades[["date", "instrument", "direction"]].values.tolist() == [
        [DAYS[1], "A", "buy"],
        [DAYS[2], "A", "sell"],
        [DAYS[2], "B", "buy"],
    ]
    np.testing.assert_allclose(trades["amount"], [100, 100, 50], rtol=1e-12)
    np.testing.assert_allclose(trades["price"], [9.5, 11, 21], rtol=1e-12)
    np.testing.assert_allclose(trades["value"], [950, 1100, 1050], rtol=1e-12)
    np.testing.assert_allclose(trades["cost"], [1.0, 2.2, 1.05], rtol=1e-12)

    positions = open_ledger.positions
    assert positions[["date", "instrument"]].values.tolist() == [[DAYS[1], "A"], [DAYS[2], "B"], [DAYS[3], "B"]]
    np.testing.assert_allclose(positions["amount"], [100, 50, 50], rtol=1e-12)
    np.testing.assert_allclose(positions["price"], [10, 22, 25], rtol=1e-12)  # marked at the close
    np.testing.assert_allclose(positions["weight"], [1000 / 1049, 1100 / 1195.75, 1250 / 1345.75], rtol=1e-12)

    daily = open_ledger.daily
    np.testing.assert_allclose(daily["account_value"], [1000, 1049, 1195.75, 1345.75], rtol=1e-12)
    np.testing.assert_allclose(daily["cash"], [1000, 49, 95.75, 95.75], rtol=1e-12)
    # Return before cost: day 1 +0.5 on 100 A (open 9.5 → close 10); day 2 A +1 (close 10 → open 11)
    # on 100 and B +1 (open 21 → close 22) on 50; day 3 B +3 on 50.
    np.testing.assert_allclose(daily["return"], [0, 50 / 1000, 150 / 1049, 150 / 1195.75], rtol=1e-12, atol=1e-15)


def test_weights_and_cash_add_up_to_the_account(open_ledger):
    held = open_ledger.positions.groupby("date")["weight"].sum()
    daily = open_ledger.daily.set_index("date")
    share_in_cash = (daily["cash"] / daily["account_value"]).reindex(held.index)
    np.testing.assert_allclose(held + share_in_cash, 1.0, rtol=1e-12)


def test_open_deal_price_falls_back_to_the_close_when_the_open_is_missing():
    # Qlib's exchange deals at the close when the deal price is NaN or not positive.
    opens = {"A": [10, None, 11, 12], "B": [20, 20, 21, 24], "C": [5, 5, 5, 5]}
    prices = _long(CLOSES, "close").merge(_long(opens, "open"), on=["date", "instrument"], how="left")
    config = TopkDropoutConfig(topk=1, n_drop=1, trade_unit=None, deal_price="open", **SMALL)
    first = run_topk_dropout(SCORES, prices, config).trades.iloc[0]
    assert (first["instrument"], first["price"]) == ("A", 10.0)


def test_dealing_at_the_open_needs_an_open_column():
    with pytest.raises(ValueError, match="open"):
        run_topk_dropout(SCORES, _long(CLOSES, "close"), TopkDropoutConfig(deal_price="open"))
    with pytest.raises(ValueError, match="deal_price"):
        TopkDropoutConfig(deal_price="vwap")


# --- price limits: as the exchange decides each direction -----------------------------------


@pytest.mark.parametrize("change, forbid_all, bought", [
    (0.10, True, False), (-0.10, True, False),   # strategy default: either limit blocks buying
    (0.10, False, False), (-0.10, False, True),  # exchange rule: only the up limit blocks buying
])
def test_buying_at_a_limit(change, forbid_all, bought):
    prices = _long(CLOSES, "close").assign(change=0.0)
    prices.loc[(prices["instrument"] == "A") & (prices["date"] == DAYS[1]), "change"] = change
    config = TopkDropoutConfig(topk=1, n_drop=1, limit_threshold=0.095, forbid_all_trade_at_limit=forbid_all, **SMALL)
    trades = run_topk_dropout(SCORES, prices, config).trades
    assert (trades.loc[trades["date"] == DAYS[1], "instrument"].tolist() == ["A"]) is bought


@pytest.mark.parametrize("change, forbid_all, sold", [
    (0.10, True, False), (-0.10, True, False),   # strategy default: either limit blocks selling
    (0.10, False, True), (-0.10, False, False),  # exchange rule: only the down limit blocks selling
])
def test_selling_at_a_limit(change, forbid_all, sold):
    # A is bought on day 1 and planned for sale on day 2, when it moves by ``change``.
    prices = _long(CLOSES, "close").assign(change=0.0)
    prices.loc[(prices["instrument"] == "A") & (prices["date"] == DAYS[2]), "change"] = change
    config = TopkDropoutConfig(topk=1, n_drop=1, limit_threshold=0.095, forbid_all_trade_at_limit=forbid_all, **SMALL)
    trades = run_topk_dropout(SCORES, prices, config).trades
    sells = trades[(trades["date"] == DAYS[2]) & (trades["direction"] == "sell")]
    assert (len(sells) == 1) is sold


def test_raw_change_compares_with_the_last_available_raw_close():
    # Raw close = close / factor: A 10, 12, (suspended), 9 → change NaN, +20 %, NaN, 9/12 − 1.
    prices = pd.DataFrame(
        {
            "date": [DAYS[0], DAYS[1], DAYS[2], DAYS[3], DAYS[0], DAYS[1]],
            "instrument": ["A", "A", "A", "A", "B", "B"],
            "close": [20.0, 24.0, np.nan, 18.0, 5.0, 5.5],
            "factor": [2.0, 2.0, 2.0, 2.0, 1.0, 1.0],
        }
    )
    change = raw_change(prices)
    np.testing.assert_allclose(change.to_numpy(), [np.nan, 0.2, np.nan, 9 / 12 - 1, np.nan, 0.1], rtol=1e-12)
    assert change.index.equals(prices.index)


# --- benchmark ----------------------------------------------------------------------------


def test_benchmark_is_an_index_series_in_the_prices():
    # ^IDX: 100, 101, (no quote), 103 → 0 on the first day, +1 %, 0 (missing), 0 (previous missing).
    prices = pd.concat([_long(CLOSES, "close"), _long({"^IDX": [100, 101, None, 103]}, "close")])
    bench = benchmark_returns(prices, "^IDX")
    np.testing.assert_allclose(bench.to_numpy(), [0.0, 0.01, 0.0, 0.0], rtol=1e-12, atol=0)
    # A list is the mean of its members' returns that day: A and B on day 2 = (0.2 + 0.1) / 2.
    assert benchmark_returns(prices, ["A", "B"]).iloc[2] == pytest.approx(0.15, rel=1e-12)
    # Passed by code to the backtest, the index is never bought (it has no score).
    result = run_topk_dropout(SCORES, prices, TopkDropoutConfig(topk=1, n_drop=1, **SMALL), benchmark="^IDX")
    np.testing.assert_allclose(result.daily["bench"], [0.0, 0.01, 0.0, 0.0], rtol=1e-12)
    assert "^IDX" not in set(result.trades["instrument"])


def test_benchmark_defaults_to_the_equal_weight_universe_and_names_a_missing_code():
    prices = _long(CLOSES, "close")
    # Day 2: A +20 %, B +10 %, C 0 → 0.1.
    assert benchmark_returns(prices).iloc[2] == pytest.approx(0.1, rel=1e-12)
    with pytest.raises(ValueError, match=r"\['SH000300'\] have no prices"):
        benchmark_returns(prices, "SH000300")


# --- exports: Qlib's record frames, written and read back ---------------------------------


def test_signal_and_label_frames_have_qlibs_shape():
    predictions = pd.DataFrame(
        {"date": [DAYS[1], DAYS[0], DAYS[0]], "instrument": ["A", "B", "A"], "score": [0.3, 0.2, 0.1], "model_version": "v1"}
    )
    pred = signal_frame(predictions)
    assert pred.index.names == ["datetime", "instrument"] and list(pred.columns) == ["score"]
    assert pred.index.tolist() == [(DAYS[0], "A"), (DAYS[0], "B"), (DAYS[1], "A")]
    assert pred["score"].tolist() == [0.1, 0.2, 0.3]
    labels = predictions.rename(columns={"score": "LABEL0"})
    assert list(label_frame(labels).columns) == ["LABEL0"]
    with pytest.raises(ValueError, match="duplicate"):
        signal_frame(pd.concat([predictions, predictions]))


def test_report_frame_follows_qlibs_columns(open_ledger):
    report = report_frame(open_ledger)
    assert list(report.columns) == ["account", "return", "total_turnover", "turnover", "cost", "total_cost", "value", "cash", "bench"]
    assert report.index.name == "datetime"
    np.testing.assert_allclose(report["total_turnover"], [0, 950, 950 + 1100 + 1050, 3100], rtol=1e-12)
    np.testing.assert_allclose(report["total_cost"], [0, 1.0, 4.25, 4.25], rtol=1e-12)
    np.testing.assert_allclose(report["value"], [0, 1000, 1100, 1250], rtol=1e-12, atol=1e-9)
    analysis = port_analysis_frame(open_ledger)
    assert analysis.loc[("excess_return_with_cost", "annualized_return"), "risk"] == pytest.approx(
        backtest_summary(open_ledger)["excess_return_with_cost"]["annualized_return"], rel=1e-15
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_exports_read_back_unchanged(open_ledger, tmp_path, fmt):
    frames = {
        "pred": (signal_frame(SCORES), ["datetime", "instrument"]),
        "positions": (positions_frame(open_ledger), ["datetime", "instrument"]),
        "trades": (trades_frame(open_ledger), None),
        "report": (report_frame(open_ledger), ["datetime"]),
        "port_analysis": (port_analysis_frame(open_ledger), ["kind", "metric"]),
    }
    for name, (frame, index) in frames.items():
        path = write_frame(frame, tmp_path / f"{name}.{fmt}")
        back = read_frame(path, index=index)
        # CSV stores decimal text: compare to 1e-15 relative; Parquet is exact.
        pd.testing.assert_frame_equal(back, frame, check_exact=fmt == "parquet", rtol=1e-15, check_freq=False)
    assert not list(tmp_path.glob("*.partial"))


def test_exports_filter_dates_and_reject_unknown_formats(open_ledger, tmp_path):
    pred = signal_frame(SCORES)
    assert set(filter_dates(pred, DAYS[1], DAYS[2]).index.get_level_values("datetime")) == {DAYS[1], DAYS[2]}
    trades = trades_frame(open_ledger)
    assert filter_dates(trades, start=DAYS[2])["datetime"].tolist() == [DAYS[2], DAYS[2]]
    with pytest.raises(ValueError, match="format must be one of"):
        write_frame(pred, tmp_path / "pred.pkl")
