"""Loss curves as PNG bytes, for Dagster metadata and the checkpoint folder."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _curves(source) -> tuple[Sequence[float | None], Sequence[float | None], int | None]:
    if isinstance(source, Mapping):
        return source["train_losses"], source["valid_losses"], source.get("best_epoch")
    return source.train_losses, source.valid_losses, getattr(source, "best_epoch", None)


def plot_losses(source) -> bytes:
    """PNG of train and valid loss per epoch, the best epoch marked.

    `source` is a checkpoint card (or any mapping with ``train_losses``/``valid_losses``,
    optional ``best_epoch``) or a TrainResult. Missing values (None/NaN) leave gaps.
    """
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
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
