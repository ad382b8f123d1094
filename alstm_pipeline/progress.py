"""Progress lines on long work: done/total, elapsed and an ETA, at most every 30 s.

Pure (no Dagster): the training loops call a ``Progress`` per batch, the warehouse resource
per Dagster bookkeeping poll; the line goes to whatever ``log`` they were given (the run's
logger: the terminal and the run's log in the UI).
"""

from __future__ import annotations

import time
from collections.abc import Callable

REPORT_EVERY_SECONDS = 30.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class Progress:
    """Call ``update(done, total)`` as often as you like; it logs at most every ``every``
    seconds (the first time after ``every`` seconds of work), so short work stays quiet."""

    def __init__(self, what: str, log: Callable[[str], None], every: float | None = None) -> None:
        self.what, self.log = what, log
        self.every = REPORT_EVERY_SECONDS if every is None else every
        self.started = self.last = time.monotonic()

    def update(self, done: int, total: int, unit: str = "") -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        eta = f", about {_duration(elapsed / done * (total - done))} left" if 0 < done < total else ""
        self.log(f"{self.what}: {done}/{total}{unit} ({100.0 * done / max(total, 1):.0f} %) after {_duration(elapsed)}{eta}")

    def __call__(self, done: int, total: int) -> None:
        self.update(done, total)
