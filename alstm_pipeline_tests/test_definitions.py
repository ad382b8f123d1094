"""Loading the definitions reads no data; dg works; bad input is one report; one writer at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from alstm_pipeline.warehouse import Warehouse, WarehouseError, writer_lock
from alstm_pipeline_tests.conftest import REPO_ROOT, SAMPLE_PATH
from alstm_pipeline_tests.pipeline import TestPipeline

LOAD = ("from alstm_pipeline.definitions import build_definitions; "
        "print(sorted(k.to_user_string() for k in build_definitions().resolve_asset_graph().get_all_asset_keys()))")


def _csv_folder(path, bad: dict[str, str]):
    """Three good per-symbol CSVs from the bundled sample, plus the ``bad`` files given."""
    path.mkdir()
    bars = pd.read_parquet(SAMPLE_PATH, filters=[("date", ">=", pd.Timestamp("2016-06-01").date()),
                                                 ("date", "<=", pd.Timestamp("2016-06-30").date())])
    for code in ("AAPL", "IBM", "KO"):
        bars[bars["instrument"] == code].drop(columns="instrument").to_csv(path / f"{code}.csv", index=False)
    for name, text in bad.items():
        (path / name).write_text(text)
    return path


BAD_FILES = {
    "HTML.csv": "<html><body>404 Not Found</body></html>\n",
    "NEG.csv": "date,open,high,low,close,adj_close,volume\n2016-06-01,10,11,9,-10,10,100\n2016-06-02,10,11,9,10,10,-5\n",
}


@pytest.mark.parametrize("source", ["missing", "bad_csv_folder"])
def test_definitions_load_without_reading_the_source(tmp_path, source):
    path = tmp_path / "nowhere" if source == "missing" else _csv_folder(tmp_path / "csv", BAD_FILES)
    env = {**os.environ, "ALSTM_PIPELINE_SOURCE": str(path), "ALSTM_PIPELINE_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", LOAD], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "'raw_ohlcv'" in done.stdout and "'predictions'" in done.stdout


def test_dg_lists_and_checks_the_definitions():
    listed = subprocess.run(["dg", "list", "defs", "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    keys = {asset["asset_key"] for asset in json.loads(listed.stdout)["assets"]}
    assert {"raw_ohlcv", "alpha158_features", "alstm_model", "predictions", "ic_daily", "backtest_daily"} <= keys
    checked = subprocess.run(["dg", "check", "defs"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_folder_of_bad_csvs_fails_raw_ohlcv_once_naming_every_bad_file(tmp_path):
    pipeline = TestPipeline(tmp_path / "home", _csv_folder(tmp_path / "csv", BAD_FILES))
    error = pipeline.run_expecting_failure("+raw_ohlcv", "2016-06-01", "2016-06-30")
    assert "HTML.csv" in error and "NEG.csv" in error
    assert "2 of 5 files" in error
    assert not pipeline.warehouse.table_exists("raw_ohlcv")


def test_a_second_writer_waits_for_the_first_and_is_told_who_holds_the_lock(tmp_path):
    released = threading.Event()

    def first_run():
        with writer_lock(tmp_path, "run-one"):
            time.sleep(1.5)
        released.set()

    holder = threading.Thread(target=first_run)
    holder.start()
    time.sleep(0.3)
    messages: list[str] = []
    with writer_lock(tmp_path, "run-two", on_wait=messages.append):
        assert released.is_set()  # got the lock only after the first run let go
    holder.join()
    assert messages and "run run-one" in messages[0]


def _hold_read_only(path, seconds: float) -> subprocess.Popen:
    code = (f"import duckdb, time, sys; c = duckdb.connect({str(path)!r}, read_only=True); "
            f"print('open', flush=True); time.sleep({seconds}); c.close()")
    reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "open"
    return reader


def test_a_short_reader_is_waited_out_and_a_long_one_is_named(tmp_path):
    store = Warehouse(tmp_path / "w.duckdb")
    store.replace_table("t", pd.DataFrame({"x": [1]}))
    reader = _hold_read_only(store.path, 2.0)
    store.replace_table("t", pd.DataFrame({"x": [2]}))  # waits for the notebook-like reader
    reader.wait()
    assert store.query("SELECT x FROM t").iloc[0, 0] == 2

    reader = _hold_read_only(store.path, 20.0)
    impatient = Warehouse(store.path, lock_wait_seconds=1.0)
    with pytest.raises(WarehouseError, match=rf"process {reader.pid}.*Fix:"):
        impatient.replace_table("t", pd.DataFrame({"x": [3]}))
    reader.kill()
    reader.wait()
    assert store.query("SELECT x FROM t").iloc[0, 0] == 2
