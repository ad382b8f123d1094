"""Loss curves as PNG bytes, for Dagster metadata and the checkpoint folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import io
from collections.abc import Mapping, Sequence

if TYPE_CHECKING:  # matplotlib loads on the first plot, not when the package is imported
    from matplotlib.figure import Figure


def _curves(source) -> tuple[Sequence[float | None], Sequence[float | None], int | None]:
    if isinstance(source, Mapping):
        return source["train_losses"], source["valid_losses"], source.get("best_epoch")
    return source.train_losses, source.valid_losses, getattr(source, "best_epoch", None)


def _seed_curves(source) -> list[dict] | None:
    """Per-seed figures of a K > 1 seed card or SeedsResult; None for a single run."""
    if isinstance(source, Mapping):
        per_seed = source.get("per_seed")
        return per_seed if per_seed and len(per_seed) > 1 else None
    runs = getattr(source, "runs", None)
    if runs and len(runs) > 1:
        return [{"seed": r.seed, "valid_losses": r.valid_losses, "best_epoch": r.best_epoch} for r in runs]
    return None


def plot_losses(source) -> bytes:
    """PNG of train and valid loss per epoch, the best epoch marked.

    `source` is a checkpoint card (or any mapping with ``train_losses``/``valid_losses``,
    optional ``best_epoch``) or a TrainResult. Missing values (None/NaN) leave gaps.
    """
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    seed_curves = _seed_curves(source)
    if seed_curves is not None:
        return _plot_seed_curves(seed_curves)
    if hasattr(source, "runs"):
        source = source.runs[0]
    train, valid, best_epoch = _curves(source)
    if len(valid) == 0:
        raise ValueError("no epochs to plot: the loss lists are empty")
    as_float = lambda values: [float("nan") if v is None else float(v) for v in values]  # noqa: E731

    # A bare Figure + Agg canvas: no pyplot global state, safe in worker threads.
    figure = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(range(len(train)), as_float(train), marker=".", label="train loss")
    axes.plot(range(len(valid)), as_float(valid), marker=".", label="valid loss")
    if best_epoch is not None and best_epoch >= 0:
        axes.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}")
    axes.set_xlabel("epoch")
    axes.set_ylabel("MSE")
    axes.set_title("ALSTM training")
    axes.grid(alpha=0.3)
    axes.legend()
    return _png(figure)


def _plot_seed_curves(per_seed: list[dict]) -> bytes:
    """Valid loss per epoch of each seed, its best epoch dotted: early stopping is per seed."""
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    as_float = lambda values: [float("nan") if v is None else float(v) for v in values]  # noqa: E731
    figure = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for entry in per_seed:
        valid = as_float(entry["valid_losses"])
        (line,) = axes.plot(range(len(valid)), valid, linewidth=1, label=f"seed {entry['seed']}")
        best = entry.get("best_epoch")
        if best is not None and 0 <= best < len(valid):
            axes.plot([best], [valid[best]], marker="o", color=line.get_color())
    axes.set_xlabel("epoch")
    axes.set_ylabel("valid MSE")
    axes.set_title(f"ALSTM training, {len(per_seed)} seeds (dot: best epoch)")
    axes.grid(alpha=0.3)
    if len(per_seed) <= 10:
        axes.legend(fontsize="small")
    return _png(figure)


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
