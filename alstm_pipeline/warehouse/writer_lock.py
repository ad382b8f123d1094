"""One writer at a time, by design: a run holds the home's writer lock from start to end.

DuckDB lets one process write a file. Runs started by the CLI execute in the CLI's process
and those started from the UI in a run worker; both take this lock when their warehouse
resource is set up, so a second run waits (saying who holds the lock) instead of failing
half-way on a locked file. The lock is an OS file lock (released by the kernel if the
holder dies), and the file carries the holder's description for the waiting message.

The holder clears its description when it lets go. A description found by whoever next
takes the lock therefore belongs to a holder that died holding it (kill -9, out of memory,
machine restart): ``on_stale`` / ``take_dead_holder`` hand it over, so the dead run can be
marked failed in the instance instead of staying STARTED and wedging the run queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

LOCK_FILE = "writer.lock"
REPORT_EVERY_SECONDS = 30.0


def _holder(handle) -> dict:
    """The description in the lock file ({} when there is none or it is unreadable)."""
    try:
        handle.seek(0)
        holder = json.loads(handle.read() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(handle) -> str:
    holder = _holder(handle)
    if not holder:
        return "another run"
    return f"run {holder.get('run_id', '?')} (pid {holder.get('pid', '?')}, since {holder.get('since', '?')})"


def _clear(handle) -> None:
    handle.seek(0)
    handle.truncate()
    handle.flush()


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextlib.contextmanager
def writer_lock(
    home: Path,
    run_id: str,
    on_wait: Callable[[str], None] | None = None,
    on_stale: Callable[[dict], None] | None = None,
) -> Iterator[None]:
    """Hold ``<home>/writer.lock`` for the body; wait (reporting every 30 s) while another run
    holds it. ``on_stale`` receives the description a dead holder left behind, if any."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / LOCK_FILE
    with open(path, "a+") as handle:
        began = time.monotonic()
        reported = 0.0
        while not _try_lock(handle):
            waited = time.monotonic() - began
            if on_wait is not None and (reported == 0.0 or waited - reported >= REPORT_EVERY_SECONDS):
                on_wait(f"waiting for the warehouse writer lock {path}: held by {_describe(handle)}; "
                        f"{waited:.0f} s so far (runs on one home execute one after another)")
                reported = max(waited, 1e-9)
            time.sleep(0.5)
        try:
            stale = _holder(handle)
            if stale and on_stale is not None:
                on_stale(stale)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"run_id": run_id, "pid": os.getpid(),
                                     "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}))
            handle.flush()
            yield
        finally:
            _clear(handle)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def take_dead_holder(home: Path, settle: Callable[[dict], None]) -> dict | None:
    """Without waiting: when no process holds the lock but a description remains, its holder
    died; ``settle`` it (e.g. mark its run failed), then clear it. Returns the description,
    or None (lock held by a live run, or released cleanly)."""
    path = home / LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        if not _try_lock(handle):
            return None  # a live run holds it: the kernel releases a dead holder's lock
        try:
            stale = _holder(handle)
            if stale:
                settle(stale)
                _clear(handle)
            return stale or None
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
