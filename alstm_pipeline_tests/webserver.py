"""Start the real Dagster webserver on loopback for a test, and stop it with no orphans."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from alstm_pipeline_tests.conftest import REPO_ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


@contextlib.contextmanager
def running_webserver(home: Path, timeout: float = 180.0, environ: dict[str, str] | None = None,
                      via_cli: bool = False) -> Iterator[tuple[int, int]]:
    """A ``dagster-webserver`` for the repo's workspace.yaml on 127.0.0.1; yields
    (port, process group id). ``environ`` replaces the test process's environment.
    ``via_cli``: the way the README opens the UI, ``alstm-pipeline ui`` (webserver and
    daemon), started outside the repository with only ALSTM_PIPELINE_HOME naming the home;
    its output is in ``home/webserver.log``.

    It runs in its own process group (``start_new_session``) so the whole group, the code
    server child included, is terminated at the end and nothing outlives the test.
    """
    port = free_port()
    env = {**(os.environ if environ is None else environ), "ALSTM_PIPELINE_HOME": str(home)}
    log = open(home / "webserver.log", "wb")
    if via_cli:
        env.pop("DAGSTER_HOME", None)
        command, cwd = [sys.executable, "-m", "alstm_pipeline.cli", "ui", "--port", str(port)], home
    else:
        env["DAGSTER_HOME"] = str(home / "dagster")
        (home / "dagster").mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"]
        cwd = REPO_ROOT
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"webserver exited with {server.returncode}: {(home / 'webserver.log').read_text()[-3000:]}")
            try:
                graphql(port, "{ version }")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"webserver did not answer on port {port} within {timeout} s")
                time.sleep(0.5)
        yield port, server.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        # `dagster dev` exits before its code servers do (they stop on their own heartbeat):
        # give the group a while, then stop what is left of it.
        deadline = time.monotonic() + 30
        while process_group_alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
