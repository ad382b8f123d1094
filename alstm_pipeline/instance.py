"""The Dagster instance runs are recorded in: SQLite under the home, or Postgres for a deployment.

- **Embedded default** — SQLite storage in ``$ALSTM_PIPELINE_HOME/dagster`` (or
  ``DAGSTER_HOME``), shared with ``dg dev`` through the repository's ``dagster.yaml``.
- **Postgres** — when ``ALSTM_PIPELINE_POSTGRES_URL`` or ``ALSTM_PIPELINE_POSTGRES_HOST``
  (with ``_PORT``, ``_USER``, ``_PASSWORD``, ``_DB``) is set: runs, events and schedules
  live in that database (``dagster-postgres``, the ``postgres`` extra). The instance file
  names the variables (``{env: ...}``), so a password is read from the environment by each
  process — CLI, webserver, daemon, code server — and never written to disk.
  ``deploy/dagster.postgres.yaml`` is the same file for a deployment's DAGSTER_HOME.

Both take the queued run coordinator (one run at a time: every run writes the one warehouse)
and run monitoring (a run whose worker never starts, or never stops after a cancel, is
failed by the daemon instead of hanging in the queue's only slot).

**Bookkeeping flags** (environment variables Dagster reads per call; measured in
``benchmarks/RESULTS.md``): ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1`` writes one
"planned" event per asset for a range run instead of one per partition (both storages);
``DAGSTER_EVENT_BATCH_SIZE`` writes a range run's materialization events in batches, one
INSERT each on Postgres (SQLite stores a batch event by event, so it gains nothing there).
The CLI sets them for itself unless the environment already does. The partition-subset
flag has a cost Dagster's source states: its partitions are no longer marked failed when
the run fails, because failed partitions are read from per-partition planned events.
``mark_failed_partitions`` restores exactly that after a failed run (runner.materialize
calls it), so the UI still shows which partitions failed (while a range run lasts, its
partitions do not show as in progress: the same per-partition events are missing). Nothing
adds those marks to runs the webserver or the daemon create (UI launches, schedules,
sensors), so a deployment starts them without the partition-subset flag; those runs cover a
few partitions each, where the flag saves little.
"""

from __future__ import annotations

import logging
import os

import dagster as dg

from alstm_pipeline.settings import Settings

# The first line of every instance file the CLI writes; a file without it is the user's and
# is never overwritten.
MARKER = "# Written by alstm-pipeline"

# Flags per storage (see the module docstring). 1,000 events per batch: a full-history
# range run of one asset is ~3,700 materializations, so four INSERTs.
BOOKKEEPING_FLAGS = {
    "sqlite": {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"},
    "postgres": {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1", "DAGSTER_EVENT_BATCH_SIZE": "1000"},
}

# The queued run coordinator and run monitoring, as the repository's dagster.yaml has them too.
COORDINATION_YAML = """\
# Runs from schedules, sensors and the UI wait in the queued run coordinator. The daemon
# fails a UI run whose worker never started or never finished canceling; a run whose
# process died (kill -9, out of memory) is marked failed by the reap_dead_runs sensor and
# by the next run on the home, so it never holds the queue's only slot.
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
run_monitoring:
  enabled: true
  # A CLI run stays NOT_STARTED while Dagster records its planned partitions (minutes for
  # years of days without the partition-subset flag, DESIGN.md known costs): a shorter
  # start timeout would fail it mid-run.
  start_timeout_seconds: 3600
  cancel_timeout_seconds: 180
  poll_interval_seconds: 30
"""

COMMON_YAML = """\
# One run at a time: every run writes the same warehouse (the runs also hold the home's
# writer lock).
concurrency:
  runs:
    max_concurrent_runs: 1
""" + COORDINATION_YAML + """\
telemetry:
  enabled: false
"""

_POSTGRES_PARTS = (
    # (dagster-postgres field, variable, required)
    ("hostname", "ALSTM_PIPELINE_POSTGRES_HOST", True),
    ("port", "ALSTM_PIPELINE_POSTGRES_PORT", False),
    ("username", "ALSTM_PIPELINE_POSTGRES_USER", True),
    ("password", "ALSTM_PIPELINE_POSTGRES_PASSWORD", False),
    ("db_name", "ALSTM_PIPELINE_POSTGRES_DB", True),
)


def instance_storage() -> str:
    """``postgres`` when ALSTM_PIPELINE_POSTGRES_URL or _HOST is set, else ``sqlite``; a
    ValueError names every problem of the Postgres variables at once."""
    env = os.environ.get
    url, host = env("ALSTM_PIPELINE_POSTGRES_URL"), env("ALSTM_PIPELINE_POSTGRES_HOST")
    if not url and not host:
        return "sqlite"
    problems = []
    if url and host:
        problems.append("set ALSTM_PIPELINE_POSTGRES_URL or ALSTM_PIPELINE_POSTGRES_HOST, not both")
    if url and not url.startswith("postgresql+psycopg2://"):
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which dagster-postgres does not install.
        problems.append("ALSTM_PIPELINE_POSTGRES_URL must start with postgresql+psycopg2:// (the driver dagster-postgres ships)")
    if host:
        problems += [f"{name} is not set" for name in ("ALSTM_PIPELINE_POSTGRES_USER", "ALSTM_PIPELINE_POSTGRES_DB")
                     if not env(name)]
    if problems:
        raise ValueError("Postgres instance storage: " + "; ".join(problems))
    return "postgres"


def postgres_storage_yaml(all_parts: bool = False) -> str:
    """The ``storage:`` block for Postgres, naming the variables set now (``all_parts``: every
    one, as in deploy/dagster.postgres.yaml). Optional parts left unset take Dagster's
    defaults (port 5432, no password)."""
    if os.environ.get("ALSTM_PIPELINE_POSTGRES_URL") and not all_parts:
        return "storage:\n  postgres:\n    postgres_url:\n      env: ALSTM_PIPELINE_POSTGRES_URL\n"
    lines = ["storage:", "  postgres:", "    postgres_db:"]
    for field, variable, required in _POSTGRES_PARTS:
        if required or all_parts or os.environ.get(variable):
            lines += [f"      {field}:", f"        env: {variable}"]
    # SQLAlchemy 2.1 reads a bare "postgresql" scheme as psycopg 3; dagster-postgres ships psycopg2.
    lines.append("      scheme: postgresql+psycopg2")
    return "\n".join(lines) + "\n"


def instance_yaml(storage: str) -> str:
    """The instance file for ``storage`` (SQLite: the default storage under the folder)."""
    head = f"{MARKER}: the Dagster instance its runs and the UI share ({storage}).\n"
    return head + (postgres_storage_yaml() if storage == "postgres" else "") + COMMON_YAML


def deploy_instance_yaml() -> str:
    """deploy/dagster.postgres.yaml: a deployment's DAGSTER_HOME/dagster.yaml (every variable named)."""
    return DEPLOY_HEADER + postgres_storage_yaml(all_parts=True) + COMMON_YAML


DEPLOY_HEADER = """\
# The Dagster instance of a deployment: copy to $DAGSTER_HOME/dagster.yaml for the webserver,
# the daemon and the code server (generated by alstm_pipeline.instance.deploy_instance_yaml).
# Every process reads the server from the environment and needs all five variables set:
# ALSTM_PIPELINE_POSTGRES_HOST, _PORT, _USER, _PASSWORD, _DB. Start them with the bookkeeping
# flag of README "Deploying beyond one machine": DAGSTER_EVENT_BATCH_SIZE=1000.
"""


def apply_bookkeeping_flags(storage: str) -> dict[str, str]:
    """Set the storage's flags in this process unless the environment sets them; returns those in force."""
    for name, value in BOOKKEEPING_FLAGS[storage].items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in BOOKKEEPING_FLAGS[storage]}


def open_home_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance of this home: its dagster.yaml (re)written for the configured
    storage unless it is the user's own file, the bookkeeping flags applied."""
    storage = instance_storage()
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = instance_yaml(storage)
    if not config.exists() or (config.read_text().startswith(MARKER) and config.read_text() != wanted):
        config.write_text(wanted)
    apply_bookkeeping_flags(storage)
    return dg.DagsterInstance.from_config(str(home))


def mark_failed_partitions(instance: dg.DagsterInstance, run_id: str) -> int:
    """After a failed run: one planned event per partition it planned as a subset and did not
    materialise, so those partitions read as failed, as without the partition-subset flag
    (Dagster derives failed partitions from the latest per-partition planned event of a
    failed run). Returns how many were marked; 0 for runs planned per partition."""
    planned = [record.event_log_entry.dagster_event for record in
               instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records]
    subsets = [event for event in planned if event.event_specific_data.partitions_subset is not None]
    if not subsets:
        return 0
    # Materialised in the run, or already marked (a second call marks nothing).
    done = {(event.asset_key, event.partition) for event in planned if event.partition is not None}
    done |= {(event.asset_key, event.partition) for event in
             (record.event_log_entry.dagster_event for record in
              instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records)}
    marked = 0
    for event in subsets:
        data = event.event_specific_data
        for key in data.partitions_subset.get_partition_keys():
            if (data.asset_key, key) in done:
                continue
            per_partition = data._replace(partition=key, partitions_subset=None)
            instance.report_dagster_event(
                event._replace(event_specific_data=per_partition,
                               message=f"{data.asset_key.to_user_string()} partition {key} was planned and not materialized: the run failed"),
                run_id, logging.DEBUG)
            marked += 1
    return marked
