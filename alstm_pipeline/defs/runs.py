"""Run housekeeping: a run whose process died never wedges the queue of this home."""

import dagster as dg

from alstm_pipeline.dead_runs import reap_dead_runs
from alstm_pipeline.settings import load_settings


@dg.sensor(name="reap_dead_runs", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="marks failed the runs whose process is gone (kill -9, out of memory, restart), so queued runs start")
def reap_dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """A killed run stays STARTED, and with one run at a time every queued run waits behind
    it; the next run on the home would notice it too, but a queued run never starts. Every
    30 s this marks such runs failed (dead_runs.py), which frees the queue."""
    marked = reap_dead_runs(context.instance, load_settings().home, "the reap_dead_runs sensor", log=context.log.warning)
    if marked:
        return dg.SkipReason(f"marked failed (process gone): {', '.join(marked)}")
    return dg.SkipReason("no run with a dead process")
