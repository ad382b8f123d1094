"""Model vintages: which data a model may train on, and which model may score a day.

Pure (no Dagster, no SQL). The point-in-time rule of the project lives here:

- A *vintage* is a model trained for a ``serves_from`` day. It may use training and
  validation samples up to ``trained_through``, which is strictly before ``serves_from``,
  and whose labels (two trading days of look-ahead, semantics §4) are known by then.
- The score of day D comes from the newest *promoted* vintage with ``serves_from <= D``
  (and therefore ``trained_through < D``). Re-scoring D later picks the same vintage,
  whatever was trained since, because later vintages serve from later days.

Rolling retraining follows Qlib's ``RollingGen`` with sliding windows (``ROLL_SD``): the
test period is cut into windows of ``step`` trading days; vintage k serves window k, its
valid window is the ``valid_days`` trading days ending at ``trained_through`` and its train
window the ``train_days`` before that; the normaliser is fitted on the train window
(Qlib updates fit_start/fit_end with the train segment). Qlib truncates train and valid
so that they end ``trunc_days`` trading days before the test start (``trunc_segments``):
``trained_through = calendar[index(serves_from) - trunc_days]``. Qlib fits at the close of
the first test day; we fit the evening before it, so our default is one day more than the
label horizon (``DEFAULT_TRUNC_DAYS = 3``); ``trunc_days=2`` gives Qlib's windows exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from alstm_pipeline.features import LABEL_LOOKAHEAD_ROWS

DEFAULT_TRUNC_DAYS = LABEL_LOOKAHEAD_ROWS + 1
MODES = ("fixed", "rolling")


class VintageError(ValueError):
    """A vintage whose windows cannot be built from the data at hand."""


def _day(stamp) -> str:
    return pd.Timestamp(stamp).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class VintagePlan:
    """The windows of one vintage, all inclusive day strings (YYYY-MM-DD)."""

    serves_from: str
    mode: str
    train_start: str
    train_end: str
    valid_start: str
    valid_end: str
    fit_start: str
    fit_end: str
    handler_start: str
    trained_through: str

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise VintageError(f"mode must be one of {MODES}, not {self.mode!r}")
        if not self.trained_through < self.serves_from:
            raise VintageError(
                f"vintage {self.serves_from}: trained through {self.trained_through}, which is not before the "
                "first day it would score; shorten the valid segment or move the test start"
            )
        if not (self.train_start <= self.train_end and self.valid_start <= self.valid_end):
            raise VintageError(f"vintage {self.serves_from}: empty train or valid window ({self})")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def days_text(days, limit: int = 10) -> str:
    """Days as text for a message: the first ``limit`` and how many there are."""
    days = list(days)
    shown = ", ".join(_day(day) for day in days[:limit])
    return shown + (f" … ({len(days)} days)" if len(days) > limit else "")


def vintage_key(serves_from) -> str:
    """The partition key of a vintage: its first serving day."""
    return _day(serves_from)


def fixed_plan(
    serves_from,
    calendar: pd.DatetimeIndex,
    train: tuple[str, str],
    valid: tuple[str, str],
    fit: tuple[str, str],
    handler_start: str,
) -> VintagePlan:
    """Qlib's fixed split (the benchmark YAML): configured segments, no truncation; the
    vintage's last sample is the last trading day of the valid segment."""
    valid_days = calendar[(calendar >= pd.Timestamp(valid[0])) & (calendar <= pd.Timestamp(valid[1]))]
    if valid_days.empty:
        raise VintageError(f"fixed split: the valid segment {valid[0]}..{valid[1]} holds no trading day of the data")
    return VintagePlan(
        serves_from=vintage_key(serves_from), mode="fixed",
        train_start=_day(train[0]), train_end=_day(train[1]),
        valid_start=_day(valid[0]), valid_end=_day(valid[1]),
        fit_start=_day(fit[0]), fit_end=_day(fit[1]),
        handler_start=_day(handler_start), trained_through=_day(valid_days[-1]),
    )


def rolling_plan(
    serves_from, calendar: pd.DatetimeIndex, train_days: int, valid_days: int, trunc_days: int = DEFAULT_TRUNC_DAYS
) -> VintagePlan:
    """RollingGen's windows for the vintage first serving ``serves_from`` (see module doc)."""
    if train_days < 1 or valid_days < 1 or trunc_days < 1:
        raise VintageError(f"train_days, valid_days and trunc_days must be ≥ 1 (got {train_days}, {valid_days}, {trunc_days})")
    start = int(calendar.searchsorted(pd.Timestamp(serves_from)))  # first trading day on/after serves_from
    last = start - trunc_days
    first = last - valid_days - train_days + 1
    if first < 0:
        have = f"{calendar[0].date()}..{calendar[-1].date()}" if len(calendar) else "no trading days"
        raise VintageError(
            f"vintage {vintage_key(serves_from)}: needs {train_days + valid_days + trunc_days} trading days before it "
            f"(train {train_days}, valid {valid_days}, truncation {trunc_days}); the data has {have}"
        )
    valid_start = last - valid_days + 1
    return VintagePlan(
        serves_from=vintage_key(serves_from), mode="rolling",
        train_start=_day(calendar[first]), train_end=_day(calendar[valid_start - 1]),
        valid_start=_day(calendar[valid_start]), valid_end=_day(calendar[last]),
        fit_start=_day(calendar[first]), fit_end=_day(calendar[valid_start - 1]),
        handler_start=_day(calendar[first]), trained_through=_day(calendar[last]),
    )


def rolling_keys(calendar: pd.DatetimeIndex, test_start, test_end, step: int) -> list[str]:
    """First serving day of each rolling window: every ``step``-th trading day of the test
    period, starting with its first trading day (RollingGen's test windows)."""
    if step < 1:
        raise VintageError(f"step must be ≥ 1 trading day, got {step}")
    days = calendar[(calendar >= pd.Timestamp(test_start)) & (calendar <= pd.Timestamp(test_end))]
    if days.empty:
        raise VintageError(f"the test period {_day(test_start)}..{_day(test_end)} holds no trading day of the data")
    return [vintage_key(day) for day in days[::step]]


def serving_versions(days: pd.DatetimeIndex, registry: pd.DataFrame) -> pd.Series:
    """The model version that scores each day (None where no vintage may), by the rule in
    the module doc. ``registry`` has columns version, serves_from, trained_through,
    created_at, status."""
    days = pd.DatetimeIndex(days)
    promoted = registry[registry["status"] == "promoted"].sort_values(["serves_from", "created_at"])
    chosen = np.full(len(days), None, dtype=object)
    # Each vintage claims the days it may score; a later one (by serves_from, then
    # created_at) overwrites, so every day ends with the newest eligible vintage.
    for row in promoted.itertuples():
        eligible = (days >= pd.Timestamp(row.serves_from)) & (days > pd.Timestamp(row.trained_through))
        chosen[np.asarray(eligible)] = row.version
    return pd.Series(chosen, index=days, dtype=object)


def in_force(registry: pd.DataFrame, serves_from) -> pd.Series | None:
    """The promoted vintage that would score ``serves_from`` without a new one (the
    incumbent a new vintage is compared with), or None."""
    day = pd.Timestamp(serves_from)
    version = serving_versions(pd.DatetimeIndex([day]), registry).iloc[0] if len(registry) else None
    if version is None:
        return None
    return registry[registry["version"] == version].iloc[-1]


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str


def promotion_gate(
    candidate_loss: float,
    candidate_ic: float,
    incumbent_loss: float | None,
    incumbent_ic: float | None,
    max_loss_increase: float,
    max_ic_drop: float,
) -> GateDecision:
    """Promote a new vintage unless, on its own validation window, its loss exceeds the
    incumbent's by more than ``max_loss_increase`` (relative) or its IC falls more than
    ``max_ic_drop`` below the incumbent's. Without an incumbent it is promoted."""
    if incumbent_loss is None or incumbent_ic is None:
        return GateDecision(True, "no vintage in force: promoted")
    if not pd.notna(candidate_loss) or not pd.notna(candidate_ic):
        return GateDecision(False, f"candidate has no finite validation figures (loss {candidate_loss}, IC {candidate_ic})")
    problems = []
    if candidate_loss > incumbent_loss * (1 + max_loss_increase):
        problems.append(
            f"validation loss {candidate_loss:.6f} > in-force {incumbent_loss:.6f} × (1 + {max_loss_increase})"
        )
    if candidate_ic < incumbent_ic - max_ic_drop:
        problems.append(f"validation IC {candidate_ic:.4f} < in-force {incumbent_ic:.4f} − {max_ic_drop}")
    if problems:
        return GateDecision(False, "; ".join(problems) + ": the vintage in force keeps serving")
    return GateDecision(
        True, f"validation loss {candidate_loss:.6f} (in force {incumbent_loss:.6f}), IC {candidate_ic:.4f} (in force {incumbent_ic:.4f})"
    )
