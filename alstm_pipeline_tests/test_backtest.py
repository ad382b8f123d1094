"""TopkDropout backtest (§9.2–§9.4), risk_analysis (§9.5) and the equity plot.

Small ledgers are worked out by hand in the comments; the real-data tests run the
golden prediction (-RESI5 + 0.5*CORR5) over 2016 on the golden 27 S&P 500 stocks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alstm_pipeline.evaluation import (
    TopkDropoutConfig,
    backtest_summary,
    equal_weight_benchmark,
    plan_topk_dropout,
    plot_equity,
    risk_analysis,
    round_to_lots,
    run_topk_dropout,
)

DAYS = pd.to_datetime(["2020-01-06", "2020-01-07", "2020-01-08", "2020-01-09", "2020-01-10"])
# Small round numbers so every deal can be checked by hand.
SMALL = dict(open_cost=0.001, close_cost=0.002, min_cost=1.0, account=1000.0)


def _prices(closes: dict[str, list[float | None]], change: dict[str, list[float]] | None = None) -> pd.DataFrame:
    """Long price frame from per-instrument closes over DAYS; None = no row that day."""
    rows = []
    for name, values in closes.items():
        for day, close in enumerate(values):
            if close is not None:
                row = {"date": DAYS[day], "instrument": name, "close": float(close)}
                if change is not None:
                    row["change"] = change.get(name, [np.nan] * len(DAYS))[day]
                rows.append(row)
    return pd.DataFrame(rows)


def _scores(by_day: dict[int, dict[str, float]]) -> pd.DataFrame:
    rows = [(DAYS[day], name, score) for day, scores in by_day.items() for name, score in scores.items()]
    return pd.DataFrame(rows, columns=["date", "instrument", "score"])


# --- risk_analysis (§9.5) -------------------------------------------------------------


def test_risk_analysis_sum_mode_matches_the_semantics_example():
    metrics = risk_analysis(pd.Series([0.01, -0.02, 0.005]))
    assert metrics["mean"] == pytest.approx(-0.0016667, abs=5e-8)
    assert metrics["std"] == pytest.approx(0.0160728, abs=5e-8)
    assert metrics["annualized_return"] == pytest.approx(-0.396667, abs=5e-7)
    assert metrics["information_ratio"] == pytest.approx(-1.599731, abs=5e-7)
    assert metrics["max_drawdown"] == pytest.approx(-0.02, abs=1e-15)


def test_risk_analysis_product_mode_compounds():
    e = [0.01, -0.02, 0.005]
    curve = [1.01, 1.01 * 0.98, 1.01 * 0.98 * 1.005]
    log_returns = np.log1p(e)
    expected_std = np.sqrt(((log_returns - log_returns.mean()) ** 2).sum() / 2)
    expected_mean = curve[-1] ** (1 / 3) - 1

    metrics = risk_analysis(pd.Series(e), N=238, mode="product")

    assert metrics["mean"] == pytest.approx(expected_mean, rel=1e-12)
    assert metrics["std"] == pytest.approx(expected_std, rel=1e-12)
    assert metrics["annualized_return"] == pytest.approx(curve[-1] ** (238 / 3) - 1, rel=1e-12)
    assert metrics["information_ratio"] == pytest.approx(expected_mean / expected_std * np.sqrt(238), rel=1e-12)
    assert metrics["max_drawdown"] == pytest.approx(curve[1] / curve[0] - 1, rel=1e-12)  # = -0.02
    with pytest.raises(ValueError, match="mode"):
        risk_analysis(pd.Series(e), mode="log")


# --- the daily decision (§9.3) ----------------------------------------------------------


def test_plan_keeps_the_book_when_the_best_candidate_ranks_among_the_dropped():
    # §9.3 example: topk 3, n_drop 1, held A .9 B .5 C .4, best non-held F .2 → comb A B C F,
    # the lowest is F (not held) → no sell, no buy.
    scores = {"A": 0.9, "B": 0.5, "C": 0.4, "F": 0.2, "G": 0.1}
    plan = plan_topk_dropout(scores, ["A", "B", "C"], topk=3, n_drop=1)
    assert plan.sell == [] and plan.buy == []


def test_plan_swaps_the_worst_holding_for_the_best_non_held():
    scores = {"A": 0.9, "B": 0.5, "C": 0.1, "F": 0.6, "G": 0.3}
    plan = plan_topk_dropout(scores, ["C", "A", "B"], topk=3, n_drop=1)
    assert plan.sell == ["C"] and plan.buy == ["F"]


def test_plan_puts_an_unscored_holding_last_so_it_is_dropped_first():
    scores = {"A": 0.9, "B": 0.8, "C": 0.7, "D": 0.6}
    plan = plan_topk_dropout(scores, ["X", "A"], topk=2, n_drop=1)
    assert plan.sell == ["X"] and plan.buy == ["B"]


def test_plan_with_small_universe_never_swaps_for_a_worse_candidate():
    # 3 scored names, topk 2, n_drop 2: n_drop is clipped to 3 − 2 = 1. The lowest of
    # comb (A, B, C) is C, not held → keep A and B (unclipped, B would go for worse C).
    scores = {"A": 0.9, "B": 0.8, "C": 0.1}
    plan = plan_topk_dropout(scores, ["A", "B"], topk=2, n_drop=2)
    assert plan.sell == [] and plan.buy == []
    # With fewer names than topk, the plan is to hold all of them.
    assert plan_topk_dropout(scores, [], topk=50, n_drop=5).buy == ["A", "B", "C"]
    assert plan_topk_dropout(scores, ["C", "A", "B"], topk=50, n_drop=5).sell == []


# --- hand-checked ledgers ----------------------------------------------------------------


def test_three_stock_backtest_matches_the_hand_computed_ledger():
    prices = _prices({"A": [10, 10, 11, 12, 12], "B": [20, 20, 20, 22, 21], "C": [5, 5.5, 5.5, 5.5, 5.5]})
    scores = _scores(
        {
            1: {"A": 0.9, "B": 0.5, "C": 0.1},  # traded on day 2
            2: {"B": 0.9, "A": 0.5, "C": 0.1},  # traded on day 3
            3: {"B": 0.8, "C": 0.7, "A": 0.1},  # traded on day 4
            4: {"A": 1.0, "B": 0.0, "C": 0.5},  # last day's scores are never used
        }
    )
    config = TopkDropoutConfig(topk=1, n_drop=1, **SMALL)

    result = run_topk_dropout(scores, prices, config)
    daily = result.daily.set_index("date")

    # Backtest days = first..last score date; day 0 only feeds the benchmark.
    assert list(daily.index) == list(DAYS[1:])
    # Day 1: no signal yet → no orders; bench = mean(A 0, B 0, C +10%) = 0.1/3.
    # Day 2: buy A: 1000·0.95 / 11 = 86.36 → 86 shares, value 946, cost max(0.946, 1) = 1,
    #        cash 1000 − 947 = 53, V = 53 + 86·11 = 999.
    # Day 3: B now ranks first and A drops out: sell A 86·12 = 1032, cost 2.064, cash 1082.936;
    #        buy B: 1082.936·0.95 / 22 = 46.76 → 46 shares, value 1012, cost 1.012,
    #        cash 69.924, V = 69.924 + 46·22 = 1081.924.
    # Day 4: C (.7) is the only candidate and ranks below B (.8) → no trades; V = 69.924 + 46·21.
    expected_value = [1000.0, 999.0, 1081.924, 1035.924]
    expected_cost = [0.0, 1.0, 3.076, 0.0]
    previous = [1000.0, 1000.0, 999.0, 1081.924]
    np.testing.assert_allclose(daily["account_value"], expected_value, rtol=1e-12)
    np.testing.assert_allclose(daily["cash"], [1000.0, 53.0, 69.924, 69.924], rtol=1e-12)
    np.testing.assert_allclose(daily["cost"], np.divide(expected_cost, previous), rtol=1e-12)
    # return before cost: day 2 gains nothing (bought at the close), day 3 A's +1 on 86 shares,
    # day 4 B's −1 on 46 shares.
    np.testing.assert_allclose(daily["return"], [0.0, 0.0, 86 / 999, -46 / 1081.924], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(daily["turnover"], [0.0, 946 / 1000, (1032 + 1012) / 999, 0.0], rtol=1e-12)
    np.testing.assert_allclose(
        daily["bench"], [0.1 / 3, 0.1 / 3, (1 / 11 + 0.1) / 3, (21 / 22 - 1) / 3], rtol=1e-12
    )
    assert daily["n_holdings"].tolist() == [0, 1, 1, 1]
    trades = result.trades
    assert trades[["instrument", "direction", "amount"]].values.tolist() == [
        ["A", "buy", 86.0],
        ["A", "sell", 86.0],
        ["B", "buy", 46.0],
    ]
    np.testing.assert_allclose(trades["cost"], [1.0, 2.064, 1.012], rtol=1e-12)

    # backtest_summary = risk_analysis of the excess returns without and with cost.
    summary = backtest_summary(result)
    excess = daily["return"] - daily["bench"]
    assert summary["excess_return_without_cost"] == risk_analysis(excess)
    assert summary["excess_return_with_cost"] == risk_analysis(excess - daily["cost"])
    assert summary["mean_turnover"] == pytest.approx((0.946 + 2044 / 999) / 4, rel=1e-12)


def test_suspended_holding_cannot_be_sold_so_the_book_exceeds_topk():
    # A has no quote on day 3, the day the plan sells it; B is bought anyway with the cash.
    prices = _prices({"A": [10, 10, 10, None, 8], "B": [20] * 5, "C": [5] * 5})
    later = {"B": 0.9, "A": 0.1, "C": 0.0}
    scores = _scores({1: {"A": 0.9, "B": 0.5, "C": 0.1}, 2: later, 3: later, 4: later})

    result = run_topk_dropout(scores, prices, TopkDropoutConfig(topk=1, n_drop=1, **SMALL))
    daily = result.daily.set_index("date")

    # Day 2: buy 95 A (950, cost 1), cash 49. Day 3: A unsellable; B: 49·0.95/20 → 2 shares
    # (40, cost 1), cash 8; A marked at its last close 10: V = 8 + 950 + 40 = 998.
    # Day 4: A (bottom of held A, B) is sold at 8: 760 − 1.52 → cash 766.48, V = 806.48.
    assert daily["n_holdings"].tolist() == [0, 1, 2, 1]
    np.testing.assert_allclose(daily["account_value"], [1000.0, 999.0, 998.0, 806.48], rtol=1e-12)
    assert daily["return"].iloc[3] == pytest.approx(-190 / 998, rel=1e-12)  # 95 shares × (8 − 10)
    sells = result.trades[result.trades["direction"] == "sell"]
    assert sells[["date", "instrument"]].values.tolist() == [[DAYS[4], "A"]]


def test_delisted_holding_keeps_its_last_price():
    # A's quotes and scores stop after day 2; it sits at the bottom of the book, unsellable.
    prices = _prices({"A": [10, 10, 10, None, None], "B": [20] * 5, "C": [5] * 5})
    later = {"B": 0.9, "C": 0.1}
    scores = _scores({1: {"A": 0.9, "B": 0.5, "C": 0.1}, 2: later, 3: later, 4: later})

    result = run_topk_dropout(scores, prices, TopkDropoutConfig(topk=1, n_drop=1, **SMALL))

    last_day = result.positions[result.positions["date"] == DAYS[4]].set_index("instrument")
    assert last_day.loc["A", "price"] == 10.0 and last_day.loc["A", "amount"] == 95.0
    assert result.daily["account_value"].iloc[-1] == pytest.approx(8 + 950 + 40, rel=1e-12)
    assert (result.trades["direction"] == "buy").sum() == 2 and (result.trades["direction"] == "sell").sum() == 0


@pytest.mark.parametrize("change, bought", [(0.10, False), (-0.10, False), (0.095, False), (0.094, True), (np.nan, True)])
def test_price_limit_blocks_trading_in_both_directions(change, bought):
    prices = _prices({"A": [10, 10, 11], "B": [20] * 3, "C": [5] * 3}, change={"A": [0.0, 0.0, change]})
    scores = _scores({1: {"A": 0.9, "B": 0.5, "C": 0.1}, 2: {"A": 0.9, "B": 0.5, "C": 0.1}})
    config = TopkDropoutConfig(topk=1, n_drop=1, limit_threshold=0.095, **SMALL)

    result = run_topk_dropout(scores, prices, config)

    assert result.daily["n_holdings"].iloc[-1] == (1 if bought else 0)
    # Without a limit threshold (the US default) the same move is tradable.
    unlimited = run_topk_dropout(scores, prices, TopkDropoutConfig(topk=1, n_drop=1, **SMALL))
    assert unlimited.daily["n_holdings"].iloc[-1] == 1


def test_untradable_buy_candidate_keeps_its_share_of_cash_idle():
    # topk 2: A and B are planned, B has no quote on day 2 → only A is bought, with 1000·0.95/2.
    prices = _prices({"A": [10, 10, 10], "B": [20, 20, None], "C": [5] * 3})
    scores = _scores({1: {"A": 0.9, "B": 0.8, "C": 0.1}, 2: {"A": 0.9, "B": 0.8, "C": 0.1}})

    result = run_topk_dropout(scores, prices, TopkDropoutConfig(topk=2, n_drop=0, **SMALL))

    # 475 / 10 → 47 shares (470, cost 1) → cash 529.
    assert result.trades[["instrument", "amount"]].values.tolist() == [["A", 47.0]]
    assert result.daily["cash"].iloc[-1] == pytest.approx(529.0, rel=1e-12)


def test_topk_larger_than_universe_buys_every_scored_stock_once_and_holds():
    prices = _prices({"A": [10, 10, 11, 12, 12], "B": [20, 20, 20, 22, 21], "C": [5, 5, 5, 5, 5]})
    shuffled = [{"A": 0.9, "B": 0.5, "C": 0.1}, {"C": 0.9, "B": 0.5, "A": 0.1}, {"B": 0.9, "A": 0.5, "C": 0.1}]
    scores = _scores({1: shuffled[0], 2: shuffled[1], 3: shuffled[2], 4: shuffled[0]})
    config = TopkDropoutConfig(account=1e6)  # topk 50, n_drop 5 over 3 stocks

    result = run_topk_dropout(scores, prices, config)

    # Day 2: 1e6·0.95/3 = 316,666.67 per stock → A 28,787 (at 11), B 15,833, C 63,333 shares.
    assert result.trades[["date", "instrument", "direction", "amount"]].values.tolist() == [
        [DAYS[2], "A", "buy", 28787.0],
        [DAYS[2], "B", "buy", 15833.0],
        [DAYS[2], "C", "buy", 63333.0],
    ]
    assert result.daily["n_holdings"].tolist() == [0, 3, 3, 3]


def test_lot_rounding_counts_whole_lots_of_raw_shares():
    # factor 0.5: 250 adjusted units = 125 raw shares → one 100-share lot = 200 adjusted units.
    assert round_to_lots(250.0, 0.5, 100) == 200.0
    # the +0.1 raw share absorbs float error just below a lot boundary
    assert round_to_lots(199.95, 1.0, 100) == 200.0
    assert round_to_lots(86.36, 1.0, 1) == 86.0
    assert round_to_lots(86.36, 1.0, None) == 86.36


def test_buy_that_cash_cannot_cover_is_shrunk_to_what_cash_pays():
    prices = _prices({"A": [10] * 3})
    scores = _scores({1: {"A": 1.0}, 2: {"A": 1.0}})

    # All cash, fractional shares: value + 0.1 % cost must fit in 10,000.
    config = TopkDropoutConfig(topk=1, n_drop=0, open_cost=0.001, min_cost=1.0, account=1e4, risk_degree=1.0, trade_unit=None)
    trade = run_topk_dropout(scores, prices, config).trades.iloc[0]
    assert trade["amount"] == pytest.approx(1e4 / 1.001 / 10, rel=1e-12)
    assert trade["value"] + trade["cost"] == pytest.approx(1e4, rel=1e-12)

    # Account 100 with a minimum cost of 5: spend 100 − 5 on shares; whole shares → 9.
    config = TopkDropoutConfig(topk=1, n_drop=0, open_cost=0.001, min_cost=5.0, account=100.0, risk_degree=1.0)
    result = run_topk_dropout(scores, prices, config)
    assert result.trades["amount"].tolist() == [9.0]
    assert result.daily["cash"].iloc[-1] == pytest.approx(100 - 90 - 5, rel=1e-12)


def test_equal_weight_benchmark_averages_available_close_to_close_returns():
    prices = _prices({"A": [10, 11, None, 11], "B": [20, 19, 19, 38]})
    bench = equal_weight_benchmark(prices)
    # day 0: nothing before → 0; day 1: (+10 %, −5 %)/2; day 2: A missing → B only (0);
    # day 3: A's previous close is missing → B only (+100 %).
    np.testing.assert_allclose(bench.to_numpy(), [0.0, 0.025, 0.0, 1.0], atol=1e-15)


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scores, message",
    [
        (pd.DataFrame(columns=["date", "instrument", "score"]), "scores is empty"),
        (_scores({1: {"A": np.nan, "B": 0.5}}), "NaN score.*A on 2020-01-07"),
        (_scores({1: {"A": 0.9, "ZZZ": 0.5}}), "no prices at all.*ZZZ"),
        (_scores({1: {"A": 0.9}}).assign(date=pd.Timestamp("2020-01-11")), "not trading days"),
        (pd.concat([_scores({1: {"A": 0.9}})] * 2), "duplicate"),
        (_scores({1: {"A": 0.9}}).rename(columns={"score": "pred"}), "missing column.*score"),
    ],
)
def test_bad_scores_raise_a_clear_error(scores, message):
    prices = _prices({"A": [10] * 5, "B": [20] * 5})
    with pytest.raises(ValueError, match=message):
        run_topk_dropout(scores, prices)


def test_bad_prices_and_config_raise_a_clear_error():
    scores = _scores({1: {"A": 0.9}})
    with pytest.raises(ValueError, match="non-positive close.*A"):
        run_topk_dropout(scores, _prices({"A": [10, 0, 10]}))
    with pytest.raises(ValueError, match="factor.*A on 2020-01-07"):
        run_topk_dropout(scores, _prices({"A": [10, 10]}).assign(factor=[1.0, np.nan]))
    with pytest.raises(ValueError, match="n_drop must be >= 0"):
        TopkDropoutConfig(n_drop=-1)


# --- real data ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_scores_and_prices(golden_dir):
    processed = pd.read_parquet(golden_dir / "alstm_processed.parquet")
    test = processed[processed["date"].between("2016-01-01", "2016-12-31")]
    scores = pd.DataFrame(
        {"date": test["date"], "instrument": test["instrument"], "score": -test["RESI5"] + 0.5 * test["CORR5"]}
    )
    # The prices Qlib itself read for these 27 stocks (golden input.parquet, §1.2's
    # convention: $close = adjusted close, factor = adj_close / close), so no panel is needed.
    fields = pd.read_parquet(golden_dir / "input.parquet", columns=["instrument", "date", "close", "factor"])
    fields = fields[fields["date"].between("2015-12-01", "2016-12-31")]
    assert set(fields["instrument"]) == set(test["instrument"])
    prices = pd.DataFrame(
        {
            "date": pd.to_datetime(fields["date"]),
            "instrument": fields["instrument"],
            "close": fields["close"].astype(np.float64),
            "factor": fields["factor"].astype(np.float64),
        }
    ).reset_index(drop=True)
    return scores, prices


def test_real_data_ledger_is_consistent_with_its_trades_and_prices(golden_scores_and_prices):
    scores, prices = golden_scores_and_prices
    config = TopkDropoutConfig(topk=10, n_drop=2)

    result = run_topk_dropout(scores, prices, config)
    daily, trades, positions = result.daily, result.trades, result.positions

    assert len(daily) == scores["date"].nunique() == 252
    assert daily["n_holdings"].iloc[0] == 0 and (daily["n_holdings"].iloc[1:] == 10).all()
    # Account value = cash + holdings marked at that day's close (no suspensions in this slice).
    close = prices.set_index(["date", "instrument"])["close"]
    marked = positions["amount"] * close.reindex(pd.MultiIndex.from_frame(positions[["date", "instrument"]])).to_numpy()
    holdings_value = marked.groupby(positions["date"]).sum().reindex(daily["date"], fill_value=0.0)
    np.testing.assert_allclose(daily["account_value"], daily["cash"] + holdings_value.to_numpy(), rtol=1e-12)
    # §9.4: V_t − V_(t−1) = (return − cost)·V_(t−1).
    previous = np.r_[config.account, daily["account_value"].to_numpy()[:-1]]
    np.testing.assert_allclose(
        daily["account_value"] - previous, (daily["return"] - daily["cost"]) * previous, rtol=0, atol=1e-6
    )
    # Costs: max(rate · value, 5) per deal.
    rate = np.where(trades["direction"] == "buy", config.open_cost, config.close_cost)
    np.testing.assert_allclose(trades["cost"], np.maximum(trades["value"] * rate, config.min_cost), rtol=1e-12)
    # Buys are whole raw shares at that day's factor (sells later may not be: a dividend
    # moves the factor, and the adjusted amount held stays the same).
    buys = trades[trades["direction"] == "buy"]
    factor = prices.set_index(["date", "instrument"])["factor"]
    raw_shares = buys["amount"] * factor.reindex(pd.MultiIndex.from_frame(buys[["date", "instrument"]])).to_numpy()
    np.testing.assert_allclose(raw_shares, np.round(raw_shares), rtol=1e-11)
    # Each day sells at most n_drop names and buys the best-scored names not held the day before.
    ranked = scores.sort_values(["date", "score"], ascending=[True, False]).groupby("date")["instrument"].apply(list)
    held_before = positions.groupby("date")["instrument"].apply(set)
    for position, date in enumerate(daily["date"].iloc[2:], start=2):
        day = trades[trades["date"] == date]
        assert (day["direction"] == "sell").sum() <= config.n_drop
        signal_date = daily["date"].iloc[position - 1]
        not_held = [n for n in ranked[signal_date] if n not in held_before[signal_date]]
        bought = day.loc[day["direction"] == "buy", "instrument"].tolist()
        assert bought == not_held[: len(bought)]
    summary = backtest_summary(result)
    assert 0 < summary["mean_turnover"] < 2
    assert summary["excess_return_with_cost"]["annualized_return"] < summary["excess_return_without_cost"]["annualized_return"]


def test_default_config_on_27_stocks_buys_them_all_on_day_two_and_holds(golden_scores_and_prices):
    scores, prices = golden_scores_and_prices
    result = run_topk_dropout(scores, prices)  # topk 50 > 27 instruments

    first_signal = scores[scores["date"] == scores["date"].min()]
    assert set(result.trades["date"]) == {result.daily["date"].iloc[1]}
    assert sorted(result.trades["instrument"]) == sorted(first_signal["instrument"])
    assert (result.daily["n_holdings"].iloc[1:] == len(first_signal)).all()
    # Close prices on the benchmark days match the equal-weight benchmark.
    bench = equal_weight_benchmark(prices).reindex(result.daily["date"])
    np.testing.assert_allclose(result.daily["bench"], bench.to_numpy(), rtol=0, atol=0)


def test_plot_equity_renders_a_png(golden_scores_and_prices):
    result = run_topk_dropout(*golden_scores_and_prices, TopkDropoutConfig(topk=10, n_drop=2))
    png = plot_equity(result)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
