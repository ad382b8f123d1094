"""K seeds' ALSTM models as one predictor: the ensemble's score is the mean of the seeds' scores.

Qlib publishes mean ± std over 20 seeds (semantics doc §10); training them as one unit
gives both the per-seed figures and a seed-averaged predictor. The mean is taken in
float64 over each member's float32 score (the score `predict` gives for that member
alone) and returned as float32, so the ensemble's score does not depend on the order in
which the members' float32 sums would round.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from alstm_pipeline.model.network import ALSTMModel

ENSEMBLE_METHOD = "mean of the seeds' float32 scores, averaged in float64, returned as float32"


class SeedEnsemble(nn.Module):
    """Member models of one architecture, one per seed; state_dict keys ``members.<i>.<Qlib key>``."""

    def __init__(self, members: Sequence[ALSTMModel], seeds: Sequence[int | None]) -> None:
        super().__init__()
        if len(members) == 0:
            raise ValueError("an ensemble needs at least one member model")
        if len(seeds) != len(members):
            raise ValueError(f"{len(members)} member models but {len(seeds)} seeds")
        architectures = {tuple(sorted(m.architecture().items())) for m in members}
        if len(architectures) != 1:
            raise ValueError(f"ensemble members differ in architecture: {sorted(architectures)}")
        self.members = nn.ModuleList(members)
        self.seeds = list(seeds)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def d_feat(self) -> int:
        return self.members[0].d_feat

    def architecture(self) -> dict[str, object]:
        """The members' (shared) architecture."""
        return self.members[0].architecture()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, T, d_feat] → [B] float32: the float64 mean of the members' scores."""
        return torch.stack([member(inputs).double() for member in self.members]).mean(dim=0).float()


def members_of(predictor: ALSTMModel | SeedEnsemble) -> list[tuple[int | None, ALSTMModel]]:
    """(seed, model) pairs of a predictor; a bare model is one member with an unknown seed."""
    if isinstance(predictor, SeedEnsemble):
        return list(zip(predictor.seeds, predictor.members, strict=True))
    return [(None, predictor)]
