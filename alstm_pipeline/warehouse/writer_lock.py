"""One writer at a time, by design: a run holds the home's writer lock from start to end.

DuckDB lets one process write a file. Runs started by the CLI execute in the CLI's process
and those started from the UI in a run worker; both take this lock when their warehouse
resource is set up, so a second run waits (saying who holds the lock) instead of failing
half-way on a locked file. The lock is an OS file lock (released by the kernel if the
holder dies), and the file carries the holder's description for the waiting message.
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


def _describe(handle) -> str:
    try:
        handle.seek(0)
        holder = json.loads(handle.read() or "{}")
    except (OSError, ValueError):
        return "another run"
    if not holder:
        return "another run"
    return f"run {holder.get('run_id', '?')} (pid {holder.get('pid', '?')}, since {holder.get('since', '?')})"


@contextlib.contextmanager
def writer_lock(home: Path, run_id: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``<home>/writer.lock`` for the body; wait (reporting every 30 s) while another run holds it."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / LOCK_FILE
    with open(path, "a+") as handle:
        began = time.monotonic()
        reported = 0.0
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - began
                if on_wait is not None and (reported == 0.0 or waited - reported >= REPORT_EVERY_SECONDS):
                    on_wait(f"waiting for the warehouse writer lock {path}: held by {_describe(handle)}; "
                            f"{waited:.0f} s so far (runs on one home execute one after another)")
                    reported = max(waited, 1e-9)
                time.sleep(0.5)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"run_id": run_id, "pid": os.getpid(),
                                     "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}))
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
