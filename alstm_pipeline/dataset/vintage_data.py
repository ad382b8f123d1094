"""The data of one model vintage: its normaliser, train and valid samples, and the
samples it scores. Pure pandas/torch; the assets read the frames from the warehouse.

The chain is Qlib's (§5, §6): RobustZScoreNorm fitted on the vintage's fit window, then
the learn side (DropnaLabel, CSRankNorm) for train and valid, windows of STEP_LEN days
reaching back no further than the handler start.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alstm_pipeline.dataset.data_keys import infer_frame, learn_frame
from alstm_pipeline.dataset.processing import apply_normalizer, fit_normalizer, process_label
from alstm_pipeline.dataset.windows import STEP_LEN, SampleSet, build_samples


def history_start(calendar: pd.DatetimeIndex, start) -> pd.Timestamp:
    """The trading day ``STEP_LEN`` days before ``start``: windows reach that far back (§6)."""
    position = int(calendar.searchsorted(pd.Timestamp(start)))
    return calendar[max(0, position - STEP_LEN)]


def features_start(calendar: pd.DatetimeIndex, plan) -> pd.Timestamp:
    """First day of features a vintage reads: its fit window or its first window's history."""
    windows_from = max(history_start(calendar, plan.train_start), pd.Timestamp(plan.handler_start))
    return min(windows_from, pd.Timestamp(plan.fit_start))


def training_sets(
    features: pd.DataFrame, labels: pd.DataFrame, calendar: pd.DatetimeIndex, plan
) -> tuple[pd.DataFrame, SampleSet, SampleSet]:
    """(normaliser statistics, train samples, valid samples) of a vintage ``plan``.

    ``features`` are the model's feature columns of universe rows from
    ``features_start(calendar, plan)`` to ``plan.valid_end``; ``labels`` the raw LABEL0 of
    universe rows over the same days (CSRankNorm ranks across them, §5.1).
    """
    stats = fit_normalizer(features, plan.fit_start, plan.fit_end)
    first = max(history_start(calendar, plan.train_start), pd.Timestamp(plan.handler_start))
    usable = features[features["date"] >= first].reset_index(drop=True)
    frame = learn_frame(apply_normalizer(usable, stats), process_label(labels[labels["date"] >= first]))
    train = build_samples(frame, plan.train_start, plan.train_end, calendar)
    valid = build_samples(frame, plan.valid_start, plan.valid_end, calendar)
    return stats, train, valid


def validation_samples(
    features: pd.DataFrame, labels: pd.DataFrame, calendar: pd.DatetimeIndex, stats: pd.DataFrame, start, end
) -> SampleSet:
    """Learn-side samples of [start, end] normalised with ``stats`` (an incumbent model's own)."""
    frame = learn_frame(apply_normalizer(features, stats), process_label(labels))
    return build_samples(frame, start, end, calendar)


def inference_samples(
    features: pd.DataFrame, stats: pd.DataFrame, calendar: pd.DatetimeIndex, first_day, last_day
) -> SampleSet:
    """Samples of every universe row of [first_day, last_day] (test-side windows, §6),
    labels unknown. ``features`` start at ``history_start(calendar, first_day)``."""
    processed = apply_normalizer(features, stats)
    no_label = processed[["instrument", "date"]].assign(LABEL0=np.nan)
    return build_samples(infer_frame(processed, no_label), first_day, last_day, calendar)


def validation_figures(scores: np.ndarray, samples: SampleSet) -> tuple[float, float]:
    """(MSE, mean daily IC) of ``scores`` against the samples' learn labels: the loss Qlib
    early-stops on (§7.2) and the IC of the same rows, for the promotion gate."""
    return score_figures(scores, samples.labels[samples.index[:, -1]].numpy(), samples.dates)


def score_figures(scores: np.ndarray, target: np.ndarray, dates: np.ndarray) -> tuple[float, float]:
    """(MSE, mean daily IC) of per-sample ``scores`` against their learn labels ``target``
    on ``dates``; shared by the TS windows and the flat rows of Alpha360."""
    known = ~np.isnan(target)
    if not known.any():
        return float("nan"), float("nan")
    loss = float(np.mean((scores[known].astype(np.float64) - target[known]) ** 2))
    frame = pd.DataFrame({"date": dates[known], "score": scores[known].astype(np.float64), "label": target[known]})
    daily = frame.groupby("date").apply(lambda day: day["score"].corr(day["label"]), include_groups=False)
    return loss, float(daily.mean())
