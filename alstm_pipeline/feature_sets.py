"""The two ALSTM configurations of Qlib's benchmark, as one interface the assets call.

- ``alpha158_ts``: Alpha158's 20 ALSTM columns, 20-day windows, ``pytorch_alstm_ts.py``
  (``train_alstm``), Qlib's ``workflow_config_alstm_Alpha158.yaml``.
- ``alpha360``: the 360 Alpha360 columns, one flat row per sample, ``pytorch_alstm.py``
  (``train_alstm_flat``), ``workflow_config_alstm_Alpha360.yaml`` (docs/alpha360.md).

Each gives its feature table, its columns, the days a vintage or a scored day reads, the
training and inference samples, the trainer and predictor, and the gate's validation
figures. Pure pandas/torch: no Dagster, no SQL (the assets read the frames).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from typing import TYPE_CHECKING

from alstm_pipeline.dataset.data_keys import infer_frame, learn_frame
from alstm_pipeline.dataset.processing import ALSTM_FEATURES, apply_normalizer, fit_normalizer, process_label
from alstm_pipeline.features import ALPHA360_NAMES

if TYPE_CHECKING:
    from alstm_pipeline.model import TrainConfig
    from alstm_pipeline.model.training_flat import FlatSet

# Torch-backed modules (windows, the model) are imported by the methods that use them:
# the Dagster definitions import this module and load without torch (issue: < 3 s).


def _flat_set(frame, columns):
    from alstm_pipeline.model.training_flat import flat_set

    return flat_set(frame, columns)


def _vintage_data():
    from alstm_pipeline.dataset import vintage_data

    return vintage_data

DEFAULT_FEATURE_SET = "alpha158_ts"


def _ts_profiles() -> dict[str, TrainConfig]:
    from alstm_pipeline.model import PROFILES

    return dict(PROFILES)


def _alpha360_profiles() -> dict[str, TrainConfig]:
    from alstm_pipeline.model import ALPHA360_PROFILE

    # The Alpha360 analogue of the "quick" profile (same cap, patience and skipped train
    # scoring as QUICK_PROFILE); "benchmark" is the YAML: 200 epochs, early stop 20.
    return {"quick": replace(ALPHA360_PROFILE, n_epochs=20, early_stop=5, score_train=False), "benchmark": ALPHA360_PROFILE}


def _in(frame: pd.DataFrame, start, end) -> pd.DataFrame:
    dates = frame["date"]
    return frame[(dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))].reset_index(drop=True)


@dataclass(frozen=True)
class FeatureSet:
    """One configuration; the methods take the frames the assets read from the warehouse."""

    name: str
    table: str  # the feature asset and its table
    columns: tuple[str, ...]  # what the model reads (and the normaliser is fitted on)
    profiles: Callable[[], dict[str, TrainConfig]]

    def train_config(self, profile: str, **overrides) -> TrainConfig:
        profiles = self.profiles()
        if profile not in profiles:
            raise ValueError(f"unknown training profile {profile!r} for {self.name}; choose one of {sorted(profiles)}")
        return replace(profiles[profile], **overrides)

    # The methods below are the Alpha158 TS ones; Alpha360 overrides them.
    def features_start(self, calendar: pd.DatetimeIndex, plan) -> pd.Timestamp:
        """First feature day a vintage ``plan`` reads."""
        return _vintage_data().features_start(calendar, plan)

    def history_start(self, calendar: pd.DatetimeIndex, first_day) -> pd.Timestamp:
        """First feature day that scoring days from ``first_day`` on reads."""
        return _vintage_data().history_start(calendar, first_day)

    def training_sets(self, features, labels, calendar, plan):
        """(normaliser statistics, train samples, valid samples)."""
        return _vintage_data().training_sets(features, labels, calendar, plan)

    def validation_samples(self, features, labels, calendar, stats, start, end):
        """Learn-side samples of [start, end] normalised with ``stats`` (an incumbent's)."""
        return _vintage_data().validation_samples(features, labels, calendar, stats, start, end)

    def inference_samples(self, features, stats, calendar, first_day, last_day):
        """Samples of every universe row of [first_day, last_day], with ``dates`` and ``instruments``."""
        return _vintage_data().inference_samples(features, stats, calendar, first_day, last_day)

    def train(self, train, valid, config: TrainConfig, log: Callable[[str], None], initial_models=None):
        """The seed unit of ``config`` (one model per seed; ``.predictor`` scores with their mean)."""
        from alstm_pipeline.model import train_seeds

        return train_seeds(train, valid, config, log=log, initial_models=initial_models)

    def predict(self, model, samples) -> np.ndarray:
        from alstm_pipeline.model import predict

        return predict(model, samples)

    def validation_figures(self, scores: np.ndarray, samples) -> tuple[float, float]:
        """(MSE, mean daily IC) on the learn labels: the promotion gate's figures."""
        return _vintage_data().validation_figures(scores, samples)


@dataclass(frozen=True)
class FlatFeatureSet(FeatureSet):
    """Alpha360: a sample is the day's own processed row, so nothing reads earlier days
    (the 60 lags are already columns of the row)."""

    def features_start(self, calendar, plan) -> pd.Timestamp:
        return min(self._first_sample_day(plan), pd.Timestamp(plan.fit_start))

    def history_start(self, calendar, first_day) -> pd.Timestamp:
        return pd.Timestamp(first_day)

    @staticmethod
    def _first_sample_day(plan) -> pd.Timestamp:
        return max(pd.Timestamp(plan.train_start), pd.Timestamp(plan.handler_start))

    def _learn(self, features, labels, stats) -> pd.DataFrame:
        columns = self.columns
        return learn_frame(apply_normalizer(features, stats, columns), process_label(labels), columns)

    def training_sets(self, features, labels, calendar, plan) -> tuple[pd.DataFrame, FlatSet, FlatSet]:
        # Same chain as Qlib's Alpha360 handler: RobustZScoreNorm + Fillna on all 360 columns
        # (no FilterCol), DropnaLabel + CSRankNorm; then the segments' rows (date-major).
        stats = fit_normalizer(features, plan.fit_start, plan.fit_end, columns=self.columns)
        first = self._first_sample_day(plan)
        frame = self._learn(_in(features, first, plan.valid_end), _in(labels, first, plan.valid_end), stats)
        train = _flat_set(_in(frame, plan.train_start, plan.train_end), self.columns)
        valid = _flat_set(_in(frame, plan.valid_start, plan.valid_end), self.columns)
        return stats, train, valid

    def validation_samples(self, features, labels, calendar, stats, start, end) -> FlatSet:
        return _flat_set(_in(self._learn(features, labels, stats), start, end), self.columns)

    def inference_samples(self, features, stats, calendar, first_day, last_day) -> FlatSet:
        processed = apply_normalizer(_in(features, first_day, last_day), stats, self.columns)
        no_label = processed[["instrument", "date"]].assign(LABEL0=np.nan)
        return _flat_set(infer_frame(processed, no_label, self.columns), self.columns)

    def train(self, train, valid, config: TrainConfig, log: Callable[[str], None], initial_models=None):
        # Seed units exist for the TS loop only so far (train_seeds); one seed here.
        if len(config.seed_list) > 1:
            raise ValueError("alpha360: seeds (several models per vintage) are not supported yet; train one seed")
        from alstm_pipeline.model.training_flat import train_alstm_flat

        return train_alstm_flat(train, valid, config, log=log, initial_model=(initial_models or [None])[0])

    def predict(self, model, samples) -> np.ndarray:
        from alstm_pipeline.model.training_flat import predict_flat

        return predict_flat(model, samples)

    def validation_figures(self, scores: np.ndarray, samples: FlatSet) -> tuple[float, float]:
        return _vintage_data().score_figures(scores, np.asarray(samples.labels, dtype=np.float64), samples.dates)


FEATURE_SETS: dict[str, FeatureSet] = {
    "alpha158_ts": FeatureSet("alpha158_ts", "alpha158_features", tuple(ALSTM_FEATURES), _ts_profiles),
    "alpha360": FlatFeatureSet("alpha360", "alpha360_features", tuple(ALPHA360_NAMES),
                               _alpha360_profiles),
}


def get(name: str) -> FeatureSet:
    """The configuration called ``name`` (one-line error naming the choices otherwise)."""
    if name not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {name!r}; choose one of {', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[name]


def of_feature_set(registry: pd.DataFrame, name: str) -> pd.DataFrame:
    """The registry rows of one configuration: vintages of the other one never serve its
    days nor stand as its incumbent (both live in one registry)."""
    if "feature_set" not in registry:
        return registry if name == DEFAULT_FEATURE_SET else registry.iloc[0:0]
    return registry[registry["feature_set"] == name]
