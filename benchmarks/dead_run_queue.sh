#!/bin/bash
# kill -9 a CLI run, queue a UI-style run (dagster job launch → the instance's queue), start
# the daemon: with no manual action the reap_dead_runs sensor marks the killed run failed and
# the daemon launches the queued run. Prints each run's status every 3 s, then the reasons.
#   bash benchmarks/dead_run_queue.sh        (from the repository root, venv active)
set -u
H=$(mktemp -d -t dead_run_queue_XXXX)
printf "%s\t2000-01-01\t2030-12-31\n" AAPL AMZN BA C CVX GE IBM JPM KO MRK PG XOM > "$H/universe.txt"
export ALSTM_PIPELINE_HOME=$H ALSTM_PIPELINE_UNIVERSE=$H/universe.txt ALSTM_PIPELINE_MLFLOW=0 DAGSTER_HOME=$H/dagster
alstm-pipeline run --select +raw_ohlcv,trading_calendar --start 2014-01-02 --end 2014-12-31 > "$H/first.log" 2>&1 \
  || { echo "first run failed"; tail "$H/first.log"; exit 1; }
alstm-pipeline run --select alpha158_features,labels --start 2014-01-02 --end 2014-12-31 > "$H/killed.log" 2>&1 &
P=$!
until [ -s "$H/writer.lock" ]; do sleep 0.2; done
kill -9 $P; wait $P 2>/dev/null
echo "killed with kill -9: $(cat "$H/writer.lock")"
printf 'ops:\n  add_rolling_vintages:\n    config:\n      test_start: "2014-06-02"\n      test_end: "2014-12-31"\n      step: 40\n' > "$H/config.yaml"
dagster job launch -m alstm_pipeline.definitions -j plan_rolling_vintages -c "$H/config.yaml" > "$H/launch.log" 2>&1
T0=$(date +%s)
dagster-daemon run -m alstm_pipeline.definitions > "$H/daemon.log" 2>&1 &
D=$!
STATUS='import dagster as dg
i = dg.DagsterInstance.get()
print(" ".join(f"{r.dagster_run.job_name}:{r.dagster_run.status.value}" for r in i.get_run_records()))'
for _ in $(seq 1 100); do
  sleep 3
  S=$(python -c "$STATUS")
  echo "$(( $(date +%s) - T0 )) s after the daemon started: $S"
  case "$S" in *plan_rolling_vintages:SUCCESS*|*plan_rolling_vintages:FAILURE*) break;; esac
done
kill -TERM $D; sleep 5; kill -9 $D 2>/dev/null; wait $D 2>/dev/null  # a background job ignores SIGINT
python -c 'import dagster as dg
i = dg.DagsterInstance.get()
for r in i.get_run_records():
    e = i.all_logs(r.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    print(r.dagster_run.job_name, r.dagster_run.status.value, e[-1].message[:160] if e else "")'
echo "home: $H"
