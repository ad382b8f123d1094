"""Per-seed benchmark table (Qlib's mean ± std over seeds, semantics doc §10) on real prices.

Data: 12 stocks of the bundled sample, 2019-01-02 .. 2019-06-28, adjusted close; label
Ref(close,-2)/Ref(close,-1) - 1 (§4); each seed's scores are the label plus that seed's
noise, so the seeds differ and their IC is positive but below 1.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alstm_pipeline.evaluation import TopkDropoutConfig, backtest_summary, calc_ic, ic_summary, run_topk_dropout
from alstm_pipeline.evaluation.seeds import (
    BENCHMARK_COLUMNS,
    ensemble_scores,
    seed_benchmark_table,
    seed_table_markdown,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sp500_sample.parquet"
CONFIG = TopkDropoutConfig(topk=4, n_drop=1)
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def market():
    bars = pd.read_parquet(SAMPLE, columns=["instrument", "date", "adj_close"])
    bars["date"] = pd.to_datetime(bars["date"])
    instruments = sorted(bars["instrument"].unique())[:12]
    bars = bars[bars["instrument"].isin(instruments) & bars["date"].between("2019-01-02", "2019-06-28")]
    prices = bars.rename(columns={"adj_close": "close"}).sort_values(["instrument", "date"]).reset_index(drop=True)
    close = prices.groupby("instrument")["close"]
    label = (close.shift(-2) / close.shift(-1) - 1).rename("LABEL0")
    labels = prices[["date", "instrument"]].assign(LABEL0=label.to_numpy())
    seed_scores = {}
    for seed in SEEDS:
        noise = np.random.default_rng(seed).standard_normal(len(labels)) * 0.02
        score = (labels["LABEL0"].fillna(0.0) + noise).astype(np.float32)
        seed_scores[seed] = labels[["date", "instrument"]].assign(score=score.to_numpy())
    return prices, labels, seed_scores


@pytest.fixture(scope="module")
def table(market):
    prices, labels, seed_scores = market
    return seed_benchmark_table(seed_scores, labels, prices, CONFIG)


def _direct_row(scores: pd.DataFrame, labels: pd.DataFrame, prices: pd.DataFrame) -> list[float]:
    """The figures computed by calling the evaluation functions by hand."""
    ic, rank_ic = calc_ic(scores.set_index(["date", "instrument"])["score"], labels.set_index(["date", "instrument"])["LABEL0"])
    signal = ic_summary(ic, rank_ic)
    risk = backtest_summary(run_topk_dropout(scores, prices, CONFIG))["excess_return_with_cost"]
    return [
        signal["IC"],
        signal["ICIR"],
        signal["Rank IC"],
        signal["Rank ICIR"],
        risk["annualized_return"],
        risk["information_ratio"],
        risk["max_drawdown"],
    ]


def test_each_seed_row_is_that_seeds_own_ic_and_backtest(table, market):
    prices, labels, seed_scores = market
    assert list(table.columns) == list(BENCHMARK_COLUMNS)
    assert list(table.index) == ["seed 0", "seed 1", "seed 2", "mean", "std", "ensemble"]
    for seed in SEEDS:
        assert table.loc[f"seed {seed}"].tolist() == pytest.approx(_direct_row(seed_scores[seed], labels, prices), rel=1e-12)
    ic = table.loc[["seed 0", "seed 1", "seed 2"], "IC"]
    assert (0.1 < ic).all() and (ic < 0.9).all() and ic.nunique() == 3  # real, distinct signals
    assert (table.loc[["seed 0", "seed 1", "seed 2"], "Max drawdown"] <= 0).all()


def test_mean_and_std_rows_are_over_the_seeds_with_ddof_1(table):
    seeds = table.loc[["seed 0", "seed 1", "seed 2"]]
    for column in BENCHMARK_COLUMNS:
        values = seeds[column].tolist()
        assert table.at["mean", column] == pytest.approx(statistics.mean(values), rel=1e-12)
        assert table.at["std", column] == pytest.approx(statistics.stdev(values), rel=1e-9)


def test_ensemble_row_scores_the_mean_of_the_seeds_scores(table, market):
    prices, labels, seed_scores = market
    mean_scores = ensemble_scores(seed_scores)
    stacked = np.stack([seed_scores[s]["score"].to_numpy().astype(np.float64) for s in SEEDS])
    np.testing.assert_array_equal(mean_scores["score"].to_numpy(), stacked.mean(axis=0).astype(np.float32))
    assert table.loc["ensemble"].tolist() == pytest.approx(_direct_row(mean_scores, labels, prices), rel=1e-12)
    # Averaging the noise makes the ensemble's signal stronger than any seed's.
    assert table.at["ensemble", "IC"] > table.loc[["seed 0", "seed 1", "seed 2"], "IC"].max()


def test_one_seed_has_no_std(market):
    prices, labels, seed_scores = market
    table = seed_benchmark_table({7: seed_scores[0]}, labels, prices, CONFIG)
    assert table.loc["std"].isna().all()
    assert table.loc["ensemble"].tolist() == pytest.approx(table.loc["seed 7"].tolist(), rel=1e-12)
    assert "n/a" in seed_table_markdown(table)


def test_seeds_scoring_different_rows_are_refused(market):
    _, _, seed_scores = market
    with pytest.raises(ValueError, match=r"seeds \[1\] do not score the same"):
        ensemble_scores({0: seed_scores[0], 1: seed_scores[1].iloc[:-3]})


def test_markdown_shows_seeds_mean_plus_minus_std_and_ensemble(table):
    text = seed_table_markdown(table)
    lines = text.splitlines()
    assert lines[0].startswith("| run | IC | ICIR |") and len(lines) == 2 + 3 + 2
    assert lines[2].startswith("| seed 0 | ")
    mean_std = f"{table.at['mean', 'IC']:.4f} ± {table.at['std', 'IC']:.4f}"
    assert f"| **mean ± std (3 seeds)** | {mean_std} |" in text
    assert lines[-1].startswith(f"| **ensemble (mean score)** | {table.at['ensemble', 'IC']:.4f} |")
