"""Qlib's benchmark table for a seed unit: per-seed figures, mean ± std, and the ensemble (§10).

Qlib's examples/benchmarks README reports, per model, mean ± std (``statistics.stdev``,
ddof 1) over 20 seeds of IC, ICIR, Rank IC, Rank ICIR (SigAnaRecord, §8) and the
annualized return, information ratio and max drawdown of the excess return with cost
(PortAnaRecord, §9.5). Each seed is evaluated on its own scores; the ensemble (the mean of
the seeds' scores, what a SeedEnsemble predicts) gets its own row, which is not the mean
row: averaging scores and averaging figures are different things.

Pure pandas/numpy, no Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from alstm_pipeline.evaluation.backtest import backtest_summary, run_topk_dropout
from alstm_pipeline.evaluation.signal import calc_ic, ic_summary
from alstm_pipeline.evaluation.topk_dropout import TopkDropoutConfig

__all__ = ["BENCHMARK_COLUMNS", "ensemble_scores", "seed_benchmark_table", "seed_table_markdown", "signal_and_backtest"]

# Qlib's column order (§10); the last three are of the excess return with cost.
BENCHMARK_COLUMNS = (
    "IC",
    "ICIR",
    "Rank IC",
    "Rank ICIR",
    "Annualized return",
    "Information ratio",
    "Max drawdown",
)
_RISK_KEYS = {
    "Annualized return": "annualized_return",
    "Information ratio": "information_ratio",
    "Max drawdown": "max_drawdown",
}
_SCORE_COLUMNS = ["date", "instrument", "score"]


def _score_series(scores: pd.DataFrame, name: str) -> pd.Series:
    missing = [c for c in _SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores of {name} lack columns {missing} (need date, instrument, score)")
    frame = scores[_SCORE_COLUMNS].assign(date=pd.to_datetime(scores["date"]))
    return frame.set_index(["date", "instrument"])["score"]


def _label_series(label: pd.Series | pd.DataFrame) -> pd.Series:
    """(date, instrument)-indexed Series from a Series, or a frame with date, instrument and one value column."""
    if isinstance(label, pd.Series):
        return label
    values = [c for c in label.columns if c not in ("date", "instrument")]
    if len(values) != 1 or not {"date", "instrument"} <= set(label.columns):
        raise ValueError(f"label frame needs date, instrument and one value column; got {list(label.columns)}")
    frame = label.assign(date=pd.to_datetime(label["date"]))
    return frame.set_index(["date", "instrument"])[values[0]]


def ensemble_scores(seed_scores: Mapping[object, pd.DataFrame]) -> pd.DataFrame:
    """The ensemble's scores: per (date, instrument), the float64 mean of the seeds' scores, in
    the seeds' dtype (float32 scores give exactly what SeedEnsemble's predict gives).

    Every seed must score the same (date, instrument) rows: a seed missing a row would make
    the mean silently a mean of fewer seeds.
    """
    series = {seed: _score_series(frame, f"seed {seed}") for seed, frame in seed_scores.items()}
    joined = pd.DataFrame(series)
    if joined.isna().any().any():
        bad = joined.columns[joined.isna().any()].tolist()
        raise ValueError(f"seeds {bad} do not score the same (date, instrument) rows as the others (or hold NaN)")
    dtype = np.result_type(*[s.dtype for s in series.values()])
    mean = joined.astype(np.float64).mean(axis=1).astype(dtype)
    return mean.rename("score").reset_index()


def signal_and_backtest(
    scores: pd.DataFrame,
    label: pd.Series | pd.DataFrame,
    prices: pd.DataFrame,
    config: TopkDropoutConfig | None = None,
    benchmark: pd.Series | None = None,
) -> dict[str, float]:
    """One row of the table: IC, ICIR, Rank IC, Rank ICIR (§8) and the excess return with cost's
    annualized return, information ratio and max drawdown (§9.5) of one score frame."""
    ic, rank_ic = calc_ic(_score_series(scores, "scores"), _label_series(label))
    row = ic_summary(ic, rank_ic)
    backtest = backtest_summary(run_topk_dropout(scores, prices, config, benchmark))
    with_cost = backtest["excess_return_with_cost"]
    row.update({column: with_cost[key] for column, key in _RISK_KEYS.items()})
    return {column: row[column] for column in BENCHMARK_COLUMNS}


def seed_benchmark_table(
    seed_scores: Mapping[object, pd.DataFrame],
    label: pd.Series | pd.DataFrame,
    prices: pd.DataFrame,
    config: TopkDropoutConfig | None = None,
    benchmark: pd.Series | None = None,
    ensemble: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Qlib's benchmark table of a seed unit: one row per seed, then ``mean``, ``std`` and ``ensemble``.

    seed_scores: seed → frame (date, instrument, score) of that seed's model on the test
        segment (e.g. from predict_per_seed).
    label: the raw label of the test segment (DK_R, §8): a (date, instrument)-indexed
        Series or a frame with date, instrument and one value column.
    prices, config, benchmark: as run_topk_dropout takes them.
    ensemble: the ensemble's scores; default ensemble_scores(seed_scores).

    Columns BENCHMARK_COLUMNS. ``std`` is ddof 1 as Qlib's statistics.stdev (NaN for one
    seed). The index holds "seed <s>" labels, then "mean", "std", "ensemble".
    """
    if not seed_scores:
        raise ValueError("no seed scores to evaluate")
    rows = {f"seed {seed}": signal_and_backtest(scores, label, prices, config, benchmark) for seed, scores in seed_scores.items()}
    per_seed = pd.DataFrame.from_dict(rows, orient="index", columns=list(BENCHMARK_COLUMNS))
    ensemble = ensemble if ensemble is not None else ensemble_scores(seed_scores)
    summary = pd.DataFrame(
        [
            per_seed.mean(axis=0),
            per_seed.std(axis=0, ddof=1),
            pd.Series(signal_and_backtest(ensemble, label, prices, config, benchmark)),
        ],
        index=["mean", "std", "ensemble"],
    )
    return pd.concat([per_seed, summary[list(BENCHMARK_COLUMNS)]]).rename_axis("run")


def seed_table_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """Markdown of seed_benchmark_table for UI metadata: the seeds, a ``mean ± std`` row as Qlib
    prints it, and the ensemble."""

    def number(value: float) -> str:
        return "n/a" if pd.isna(value) else f"{value:.{digits}f}"

    columns = list(BENCHMARK_COLUMNS)
    lines = ["| run | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    seeds = [label for label in table.index if label not in ("mean", "std", "ensemble")]
    for label in seeds:
        lines.append(f"| {label} | " + " | ".join(number(table.at[label, c]) for c in columns) + " |")
    mean_std = [f"{number(table.at['mean', c])} ± {number(table.at['std', c])}" for c in columns]
    lines.append(f"| **mean ± std ({len(seeds)} seeds)** | " + " | ".join(mean_std) + " |")
    lines.append("| **ensemble (mean score)** | " + " | ".join(number(table.at["ensemble", c]) for c in columns) + " |")
    return "\n".join(lines)
