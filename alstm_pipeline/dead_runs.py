"""Runs whose process is gone: noticed by the next run, the CLI or a sensor, marked failed.

A run killed outright (kill -9, the out-of-memory killer, a machine restart) cannot record
its own end: it stays STARTED in the instance, and with one run at a time
(``max_concurrent_runs: 1``) every queued UI run, schedule and sensor run waits behind it
forever. Two facts tell such a run apart from a live one, both on this machine:

- the writer lock: its holder's description survives the holder (the kernel drops the lock,
  not the text), so whoever next takes the lock knows that run died holding it;
- the ``alstm_pipeline/pid`` and ``alstm_pipeline/host`` tags every run gets when it starts:
  a run in progress here whose process no longer exists died (before or after the lock).

Such a run is marked FAILURE (CANCELED if it was being canceled) through the instance's
public API, with a message naming the process and who noticed; its partitions keep their
previous rows, because every partition write is one transaction.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from alstm_pipeline.warehouse.writer_lock import take_dead_holder

PID_TAG = "alstm_pipeline/pid"
HOST_TAG = "alstm_pipeline/host"
# NOT_STARTED too: a CLI run killed while Dagster was still writing its planned events.
_UNFINISHED = (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
               dg.DagsterRunStatus.CANCELING)


def process_tags() -> dict[str, str]:
    """The tags that let the next run check whether this run's process still exists."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie, killed but not yet reaped
    by its parent, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def mark_dead(instance: dg.DagsterInstance, run_id: str, why: str, noticed_by: str) -> bool:
    """Record run ``run_id`` as ended (FAILURE, or CANCELED when it was being canceled) if it
    is still unfinished in the instance; True when it was marked."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status not in _UNFINISHED:
        return False
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    message = (f"{why}; noticed by {noticed_by} at {when}. Its partitions keep their previous rows (each "
               "partition write is one transaction): re-run them.")
    if run.status == dg.DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message)
    else:
        instance.report_run_failed(run, message)
    return True


def settle_dead_holder(instance: dg.DagsterInstance, holder: dict, noticed_by: str) -> str | None:
    """Mark the run a dead writer-lock holder described; its id when it was marked."""
    run_id = str(holder.get("run_id", ""))
    why = (f"the run's process (pid {holder.get('pid', '?')}) died while holding the warehouse writer lock "
           f"(held since {holder.get('since', '?')}): killed (kill -9, out of memory or a restart)")
    return run_id if run_id and mark_dead(instance, run_id, why, noticed_by) else None


def reap_dead_runs(instance: dg.DagsterInstance, home: Path, noticed_by: str,
                   log: Callable[[str], None] | None = None) -> list[str]:
    """Mark every unfinished run of this machine whose process is gone; returns their ids.
    Cheap (one lock try, one query): called when a run starts and by the reap sensor."""
    marked: list[str] = []

    def settle(holder: dict) -> None:
        run_id = settle_dead_holder(instance, holder, noticed_by)
        if run_id:
            marked.append(run_id)

    take_dead_holder(home, settle)
    host = socket.gethostname()
    records = instance.get_run_records(filters=dg.RunsFilter(statuses=list(_UNFINISHED), tags={HOST_TAG: host}))
    for record in records:
        run = record.dagster_run
        pid = run.tags.get(PID_TAG, "")
        if run.run_id in marked or not pid.isdigit() or process_alive(int(pid)):
            continue
        why = f"the run's process (pid {pid} on {host}) is gone: killed (kill -9, out of memory or a restart)"
        if mark_dead(instance, run.run_id, why, noticed_by):
            marked.append(run.run_id)
    if log is not None:
        for run_id in marked:
            log(f"run {run_id} had died without recording its end (its process is gone): marked failed")
    return marked
