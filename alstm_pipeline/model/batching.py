"""Batch orders that consume torch's global RNG exactly as Qlib's DataLoaders do (§7.2).

Qlib iterates `torch.utils.data.DataLoader(..., batch_size=800, drop_last=True)` with
`num_workers=0`. Each time such a loader starts a pass it draws one int64 "base seed"
from the global generator; a shuffling loader then draws one more int64 that seeds a
private generator, whose `randperm` is the pass's sample order. We draw the same numbers
in the same order and build the same permutation, so a seeded run follows Qlib's
shuffles (and any dropout draws in between) without a DataLoader or per-sample Python.
"""

from __future__ import annotations

import torch


def _draw_int64(source: torch.Generator | None = None) -> int:
    """One int64 from `source` (default: the global CPU generator), the way DataLoader/RandomSampler draw it."""
    return int(torch.empty((), dtype=torch.int64).random_(generator=source).item())


def shuffled_pass_order(n_samples: int, source: torch.Generator | None = None) -> torch.Tensor:
    """Sample order of one shuffled pass (training or train scoring): base seed, then shuffle seed.

    `source` replaces the global generator when several seeds train side by side: each
    seed's run then owns a copy of the stream it would have drawn alone (training.py).
    """
    _draw_int64(source)  # the loader iterator's base seed (used only by worker processes)
    generator = torch.Generator()
    generator.manual_seed(_draw_int64(source))
    return torch.randperm(n_samples, generator=generator)


def sequential_pass_start(source: torch.Generator | None = None) -> None:
    """A non-shuffled pass (validation scoring) still draws the loader's base seed."""
    _draw_int64(source)


def full_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split `order` into batches of `batch_size`, dropping the last partial one (drop_last=True)."""
    n_batches = order.shape[0] // batch_size
    return list(order[: n_batches * batch_size].view(n_batches, batch_size))
