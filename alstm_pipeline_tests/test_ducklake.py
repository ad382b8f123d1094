"""The warehouse API on every backend, and what only DuckLake gives: writers side by side,
readers during writes, dated views. Real catalogs (SQLite, DuckDB file, Postgres on
127.0.0.1 in a temp dir) and real Parquet files in a temp dir."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pandas as pd
import pytest

from alstm_pipeline import cli
from alstm_pipeline.defs.resources import WarehouseResource, project_resources
from alstm_pipeline.settings import load_settings
from alstm_pipeline.warehouse import Warehouse, WarehouseError, registry, tables
from alstm_pipeline.warehouse import backends
from alstm_pipeline.warehouse.backends import open_warehouse
from alstm_pipeline.warehouse.ducklake import DuckLakeWarehouse
from alstm_pipeline_tests.backends import warehouse_spec
from alstm_pipeline_tests.conftest import REPO_ROOT, SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

INSTRUMENTS = [f"S{k:03d}" for k in range(200)]  # above DuckLake's inlining limit: real Parquet files


def _scores(day: str, offset: float, version: str = "v1") -> pd.DataFrame:
    return pd.DataFrame({"date": pd.Timestamp(day), "instrument": INSTRUMENTS,
                         "score": np.arange(len(INSTRUMENTS), dtype="float64") + offset, "model_version": version})


def _vintage(version: str, status: str = "promoted") -> dict:
    day = pd.Timestamp("2020-03-02")
    return {"version": version, "vintage": "2020-03-02", "mode": "rolling", "serves_from": day,
            "trained_through": day - pd.Timedelta(days=5), "created_at": pd.Timestamp.now(tz="UTC").tz_convert(None),
            "status": status, "gate_reason": "test", "checkpoint": f"models/{version}", "sha256": "0" * 64}


# --- the same API on every backend -------------------------------------------------------------------

def test_registry_promotes_supersedes_and_keeps_normaliser_order(tmp_path, make_warehouse):
    store = make_warehouse(tmp_path)
    # Features in a non-alphabetical order: read_normalizer returns them as written.
    stats = pd.DataFrame({"feature": ["ROC5", "KMID", "STD20"], "median": [0.1, 0.2, 0.3], "scale": [1.0, 2.0, 3.0]})
    registry.register_vintage(store, _vintage("a"), stats)
    registry.register_vintage(store, _vintage("b"), stats.assign(median=[9.0, 8.0, 7.0]))
    registry.register_vintage(store, _vintage("b"), stats.assign(median=[9.0, 8.0, 7.0]))  # re-registered: replaces itself

    known = registry.read_registry(store).set_index("version")
    assert known["status"].to_dict() == {"a": "superseded", "b": "promoted"}
    normalizer = registry.read_normalizer(store, "b")
    assert normalizer["feature"].tolist() == ["ROC5", "KMID", "STD20"]
    assert normalizer["median"].tolist() == [9.0, 8.0, 7.0]


def test_partition_rewrite_replaces_only_its_range_and_backtest_keeps_execution_order(tmp_path, make_warehouse):
    store = make_warehouse(tmp_path)
    tables.write_predictions(store, pd.concat([_scores("2020-03-02", 0), _scores("2020-03-03", 0)]),
                             pd.Timestamp("2020-03-02"), pd.Timestamp("2020-03-03"))
    tables.write_predictions(store, _scores("2020-03-03", 100, "v2"), pd.Timestamp("2020-03-03"), pd.Timestamp("2020-03-03"))
    stored = tables.read_predictions(store)
    assert len(stored) == 2 * len(INSTRUMENTS) and not stored.duplicated(["date", "instrument"]).any()
    assert stored.groupby("date")["model_version"].unique().map(list).tolist() == [["v1"], ["v2"]]
    assert tables.vintages_used(store, "2020-03-01", "2020-03-31")["model_version"].tolist() == ["v1", "v2"]

    day = pd.Timestamp("2020-03-02")
    trades = pd.DataFrame({"date": day, "instrument": ["ZZZ", "AAA", "MMM"], "direction": ["sell", "buy", "buy"],
                           "amount": 1.0, "price": 1.0, "value": 1.0, "cost": 0.0})
    positions = pd.DataFrame({"date": day, "instrument": ["AAA"], "amount": 1.0, "price": 1.0, "weight": 1.0})
    daily = pd.DataFrame({"date": [day], "return": [0.01], "bench": [0.0], "cost": [0.0], "turnover": [0.1]})
    assert tables.write_backtest(store, daily, positions, trades) == {"backtest_daily": 1, "backtest_positions": 1,
                                                                      "backtest_trades": 3}
    assert tables.read_backtest_trades(store)["instrument"].tolist() == ["ZZZ", "AAA", "MMM"]
    assert tables.table_summary(store, "predictions") == (400, "2020-03-02", "2020-03-03")


def test_raw_and_features_assets_write_the_same_rows_on_ducklake_as_on_the_duckdb_file(tmp_path, request):
    """A real asset run (universe, raw_ohlcv, the calendar, Alpha158 features and labels over
    a few days) on DuckLake equals the same run on the DuckDB file, which the golden tests pin."""
    stored = {}
    for backend in ("duckdb", "ducklake-sqlite"):
        home = tmp_path / backend
        store = open_warehouse(warehouse_spec(backend, home, request), home)
        pipeline = TestPipeline(home, SAMPLE_PATH, warehouse=store)
        pipeline.run("universe,raw_ohlcv,trading_calendar", "2016-01-04", "2016-07-08")
        pipeline.run("alpha158_features,labels", "2016-06-27", "2016-07-01")
        stored[backend] = {name: store.read_dates(name, None, None) for name in ("raw_ohlcv", "alpha158_features", "labels")}
    assert isinstance(store, DuckLakeWarehouse)
    assert len(stored["ducklake-sqlite"]["alpha158_features"]) == 5 * 100
    for name, frame in stored["duckdb"].items():
        pd.testing.assert_frame_equal(stored["ducklake-sqlite"][name], frame, check_exact=True)


# --- DuckLake only: writers side by side, readers during writes, dated views --------------------

WRITER = textwrap.dedent("""
    import sys, time, numpy as np, pandas as pd
    from pathlib import Path
    from alstm_pipeline.warehouse.backends import open_warehouse
    spec, home, first, days, go = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
    replays = []
    store = open_warehouse(spec, home, on_wait=replays.append)
    while not go.exists():
        time.sleep(0.01)
    for day in pd.bdate_range(first, periods=days):
        frame = pd.DataFrame({"instrument": [f"S{k:03d}" for k in range(500)], "date": day,
                              "close": np.arange(500, dtype="float32")})
        store.replace_date_range("raw_ohlcv", frame, day, day)
    print(f"replayed {len(replays)}")
""")


def _writer(spec: str, home, first: str, days: int, go) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, spec, str(home), first, str(days), str(go)],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("backend", ["ducklake-sqlite", "ducklake-postgres"])
def test_two_runs_writing_different_partitions_at_once_both_succeed(tmp_path, backend, request):
    spec = warehouse_spec(backend, tmp_path, request)
    store = open_warehouse(spec, tmp_path)
    go = tmp_path / "go"
    writers = [_writer(spec, tmp_path, "2020-01-01", 12, go), _writer(spec, tmp_path, "2021-01-01", 12, go)]
    go.touch()
    outcomes = [writer.communicate(timeout=600) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], [err[-2000:] for _, err in outcomes]
    counts = store.query("SELECT date, count(*) AS n FROM raw_ohlcv GROUP BY date")
    assert len(counts) == 24 and (counts["n"] == 500).all()


RUN = textwrap.dedent("""
    import sys
    from pathlib import Path
    from alstm_pipeline.warehouse.backends import open_warehouse
    from alstm_pipeline_tests.conftest import SAMPLE_PATH
    from alstm_pipeline_tests.pipeline import TestPipeline
    home = Path(sys.argv[2])
    TestPipeline(home, SAMPLE_PATH, warehouse=open_warehouse(sys.argv[1], home)).run("raw_ohlcv", sys.argv[3], sys.argv[4])
""")


@pytest.mark.parametrize("backend", ["ducklake-sqlite", "ducklake-postgres"])
def test_two_dagster_runs_materialising_different_days_at_once_both_succeed(tmp_path, backend, request):
    """Two processes each run the raw_ohlcv asset (its checks included) over their own days;
    with a DuckLake catalog neither waits for the other's writer lock."""
    spec = warehouse_spec(backend, tmp_path, request)
    store = open_warehouse(spec, tmp_path)
    TestPipeline(tmp_path, SAMPLE_PATH, warehouse=store).run("universe,raw_ohlcv,trading_calendar", "2016-06-20", "2016-06-24")
    runs = [subprocess.Popen([sys.executable, "-c", RUN, spec, str(tmp_path), first, last], cwd=REPO_ROOT,
                             stderr=subprocess.PIPE, text=True)
            for first, last in (("2016-06-27", "2016-07-01"), ("2016-07-05", "2016-07-08"))]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [error[-3000:] for error in errors]
    counts = store.query("SELECT date, count(*) AS n FROM raw_ohlcv GROUP BY date ORDER BY date")
    assert len(counts) == 14 and (counts["n"] == 100).all()


@pytest.mark.parametrize("backend", ["ducklake-sqlite", "ducklake-postgres"])
def test_a_commit_that_loses_to_another_writer_is_replayed_and_both_land(tmp_path, backend, request):
    """Deterministic conflict: a transaction opened before another writer's commit on the
    same table commits after it; DuckLake refuses it, the warehouse replays it."""
    spec = warehouse_spec(backend, tmp_path, request)
    messages: list[str] = []
    store = open_warehouse(spec, tmp_path, on_wait=messages.append)
    first, second = pd.Timestamp("2020-03-02"), pd.Timestamp("2020-03-03")
    key = ("date", "instrument")
    store.replace_date_range("scores", pd.concat([_scores("2020-03-02", 0), _scores("2020-03-03", 0)]), first, second, key=key)
    other_committed, failure = threading.Event(), []

    def other_writer() -> None:
        try:
            store.replace_date_range("scores", _scores("2020-03-03", 200, "other"), second, second, key=key)
        except BaseException as error:  # surfaced by the assertion below
            failure.append(error)
        other_committed.set()

    with store.transaction() as con:
        store.replace_date_range("scores", _scores("2020-03-02", 100, "mine"), first, first, key=key, con=con)
        threading.Thread(target=other_writer).start()
        other_committed.wait(timeout=300)
    assert not failure
    assert any("replaying" in message for message in messages)
    stored = store.query("SELECT * FROM scores ORDER BY date, instrument")
    assert stored.groupby("date")["model_version"].unique().map(list).tolist() == [["mine"], ["other"]]
    assert len(stored) == 2 * len(INSTRUMENTS)


READER_WRITER = textwrap.dedent("""
    import sys, numpy as np, pandas as pd
    from pathlib import Path
    from alstm_pipeline.warehouse.backends import open_warehouse
    store = open_warehouse(sys.argv[1], Path(sys.argv[2]))
    for round in range(int(sys.argv[3])):
        day = pd.Timestamp("2020-01-01") + pd.offsets.BDay(round % 5)
        frame = pd.DataFrame({"instrument": [f"S{k:03d}" for k in range(500)], "date": day,
                              "close": np.float32(round)})
        store.replace_date_range("raw_ohlcv", frame, day, day)
""")


@pytest.mark.parametrize("backend", ["ducklake-sqlite", "ducklake-postgres"])
def test_a_reader_never_fails_and_sees_whole_partitions_while_a_run_writes(tmp_path, backend, request):
    spec = warehouse_spec(backend, tmp_path, request)
    store = open_warehouse(spec, tmp_path)
    day = pd.Timestamp("2020-01-01")
    store.replace_date_range("raw_ohlcv", pd.DataFrame({"instrument": ["S000"], "date": [day], "close": [np.float32(0)]}),
                             day, day)
    writer = subprocess.Popen([sys.executable, "-c", READER_WRITER, spec, str(tmp_path), "40"], cwd=REPO_ROOT,
                              stderr=subprocess.PIPE, text=True)
    reads = 0
    while writer.poll() is None or reads == 0:
        frame = store.read_dates("raw_ohlcv", None, None)
        reads += 1
        # Atomic partition replace: a day holds one write's rows, all 500 of them (or the seed row).
        per_day = frame.groupby("date").agg(rows=("close", "size"), writes=("close", "nunique"))
        assert (per_day["writes"] == 1).all() and per_day["rows"].isin([1, 500]).all(), per_day
    assert writer.wait() == 0, writer.stderr.read()[-2000:]
    assert reads > 1


def test_a_dated_view_shows_the_predictions_as_served_before_a_rescore(tmp_path, request):
    spec = warehouse_spec("ducklake-sqlite", tmp_path, request)
    store = open_warehouse(spec, tmp_path)
    day = pd.Timestamp("2020-03-02")
    tables.write_predictions(store, _scores("2020-03-02", 0, "served"), day, day)
    served = store.snapshots().iloc[-1]
    tables.write_predictions(store, _scores("2020-03-02", 0.5, "rescored"), day, day)

    for when in (served["snapshot_time"], int(served["snapshot_id"])):
        then = tables.read_predictions(store.as_of(when), day, day)
        pd.testing.assert_frame_equal(then, tables.read_predictions(store, day, day).assign(
            score=lambda f: f["score"] - 0.5, model_version="served"))
    assert set(tables.read_predictions(store)["model_version"]) == {"rescored"}
    with pytest.raises(WarehouseError, match="read-only"):
        tables.write_predictions(store.as_of(int(served["snapshot_id"])), _scores("2020-03-02", 9), day, day)
    with pytest.raises(WarehouseError, match="no such snapshot"):
        store.as_of(pd.Timestamp("2000-01-01"))
    with pytest.raises(WarehouseError, match="keeps no snapshots"):
        Warehouse(tmp_path / "w.duckdb").as_of(served["snapshot_time"])


def test_maintenance_merges_files_and_forgets_old_snapshots_but_keeps_the_rows(tmp_path, request):
    store = open_warehouse(warehouse_spec("ducklake-sqlite", tmp_path, request), tmp_path)
    for offset in range(3):  # three rewrites of two days: each leaves files of the old rows behind
        for day in ("2020-03-02", "2020-03-03"):
            tables.write_predictions(store, _scores(day, offset), pd.Timestamp(day), pd.Timestamp(day))
    before = store.snapshots()
    files = lambda: sorted(p for p in (tmp_path / "lake" / "data").rglob("*.parquet"))  # noqa: E731
    count = len(files())
    expected = tables.read_predictions(store)

    left = store.maintain(keep_since=pd.Timestamp.now(tz="UTC"))
    assert len(left) < len(before) and len(files()) < count
    pd.testing.assert_frame_equal(tables.read_predictions(store), expected)
    with pytest.raises(WarehouseError, match="no such snapshot"):
        store.as_of(int(before["snapshot_id"].iloc[1]))


def test_export_as_of_writes_the_scores_as_they_were_stored_then(tmp_path, monkeypatch, request, capsys):
    spec = warehouse_spec("ducklake-sqlite", tmp_path, request)
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path))
    monkeypatch.setenv("ALSTM_PIPELINE_WAREHOUSE", spec)
    store = load_settings().open_warehouse()
    day = pd.Timestamp("2020-03-02")
    tables.write_predictions(store, _scores("2020-03-02", 0, "served"), day, day)
    served = int(store.snapshots()["snapshot_id"].iloc[-1])
    tables.write_predictions(store, _scores("2020-03-02", 0.5, "rescored"), day, day)

    assert cli.main(["export", "predictions", "--as-of", str(served), "--out", str(tmp_path / "served.parquet")]) == 0
    exported = pd.read_parquet(tmp_path / "served.parquet")
    assert exported["score"].tolist() == _scores("2020-03-02", 0)["score"].tolist()

    monkeypatch.delenv("ALSTM_PIPELINE_WAREHOUSE")
    tables.write_predictions(load_settings().open_warehouse(), _scores("2020-03-02", 0), day, day)
    assert cli.main(["export", "predictions", "--as-of", "2020-03-03"]) == 2
    assert "keeps no snapshots" in capsys.readouterr().err


# --- configuration ------------------------------------------------------------------------------------

def test_the_setting_chooses_the_backend_and_the_resource_follows(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSTM_PIPELINE_HOME", str(tmp_path))
    monkeypatch.delenv("ALSTM_PIPELINE_WAREHOUSE", raising=False)
    assert type(load_settings().open_warehouse()) is Warehouse
    assert project_resources()["warehouse"].ducklake_catalog == ""

    monkeypatch.setenv("ALSTM_PIPELINE_WAREHOUSE", "ducklake")
    lake = load_settings().open_warehouse()
    assert isinstance(lake, DuckLakeWarehouse)
    assert lake.catalog == f"sqlite:{tmp_path / 'lake' / 'catalog.sqlite'}" and lake.data_path == f"{tmp_path / 'lake' / 'data'}/"
    resource = project_resources()["warehouse"]
    assert resource.get() == lake and WarehouseResource.of(lake) == resource
    assert resource.home == tmp_path  # the writer lock and the MLflow store stay in the home

    monkeypatch.setenv("ALSTM_PIPELINE_WAREHOUSE", "ducklake:postgres:dbname=lake host=db.internal")
    monkeypatch.setenv("ALSTM_PIPELINE_WAREHOUSE_DATA", "s3://bucket/lake")
    lake = load_settings().open_warehouse()
    assert (lake.catalog, lake.data_path, lake.concurrent) == ("postgres:dbname=lake host=db.internal", "s3://bucket/lake/", True)

    monkeypatch.setenv("ALSTM_PIPELINE_WAREHOUSE", "parquet:/tmp/x")
    with pytest.raises(ValueError, match="ALSTM_PIPELINE_WAREHOUSE='parquet:/tmp/x' names no warehouse"):
        load_settings()


def test_a_worker_reopens_the_same_warehouse_from_its_location(tmp_path, make_warehouse):
    """Parallel vintage workers and candidate steps get the warehouse as plain strings
    (backends.location, JSON in a Dagster step) and read the rows the run wrote, on every
    backend; before, they always opened the DuckDB file."""
    store = make_warehouse(tmp_path)
    tables.write_predictions(store, _scores("2020-03-02", 0), pd.Timestamp("2020-03-02"), pd.Timestamp("2020-03-02"))
    where = json.loads(json.dumps(backends.location(store)))
    reopened = backends.reopen(where)
    assert type(reopened) is type(store)
    pd.testing.assert_frame_equal(tables.read_predictions(reopened), tables.read_predictions(store), check_exact=True)
