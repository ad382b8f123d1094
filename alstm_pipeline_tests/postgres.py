"""A real PostgreSQL server on 127.0.0.1 in a temp dir, for tests and benchmarks.

The distribution's server binaries (Debian/Ubuntu: ``apt-get install postgresql``, found
under /usr/lib/postgresql/<version>/bin; elsewhere on PATH or ``pg_config --bindir``) run a
throw-away cluster: ``initdb`` into a fresh folder, ``pg_ctl start`` listening on loopback
only (its socket in the same folder), one database, one password-protected role; stopped
and deleted at the end. ``initdb`` refuses to run as root, so as root the server runs as
the ``postgres`` system user (``runuser``), which owns the folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alstm_pipeline_tests.webserver import free_port

USER = "alstm"
PASSWORD = "alstm-test"
DATABASE = "dagster"


class PostgresUnavailable(RuntimeError):
    """No server binaries, or the server could not start: the reason, for a skip message."""


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str
    data_dir: Path  # the cluster's folder (postmaster.pid), for benchmarks reading the server's CPU

    @property
    def url(self) -> str:
        # SQLAlchemy 2.1 reads plain postgresql:// as psycopg 3; dagster-postgres ships psycopg2.
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def env(self) -> dict[str, str]:
        """The project's variables selecting this server as the Dagster instance storage."""
        return {
            "ALSTM_PIPELINE_POSTGRES_HOST": self.host,
            "ALSTM_PIPELINE_POSTGRES_PORT": str(self.port),
            "ALSTM_PIPELINE_POSTGRES_USER": self.user,
            "ALSTM_PIPELINE_POSTGRES_PASSWORD": self.password,
            "ALSTM_PIPELINE_POSTGRES_DB": self.database,
        }


def server_bindir() -> Path:
    """The folder holding initdb and pg_ctl, newest version first; PostgresUnavailable if none."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    if shutil.which("pg_config"):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        if bindir:
            candidates.append(bindir)
    for folder in candidates:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl): install them, e.g. apt-get install -y postgresql")


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' system user for initdb") from None
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], what: str, timeout: float = 60) -> None:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({done.returncode}): {(done.stdout + done.stderr).strip()[-2000:]}")


@contextlib.contextmanager
def running_postgres(durable: bool = False) -> Iterator[Postgres]:
    """A fresh cluster on 127.0.0.1 and a free port; yields its connection details.

    ``durable=False`` (tests) turns fsync and synchronous commit off: a test's data need not
    survive a power cut. Benchmarks pass ``durable=True`` to measure the server as deployed.
    """
    bindir = server_bindir()
    root = Path(tempfile.mkdtemp(prefix="alstm-postgres-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    password_file = root / "password"
    password_file.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        server_user = pwd.getpwnam("postgres")
        for path in (root, socket_dir, password_file):
            os.chown(path, server_user.pw_uid, server_user.pw_gid)
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    started = False
    try:
        # Password (scram) over TCP, as a deployment connects; trust only on the private socket.
        _run([str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={password_file}",
              "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-locale"], "initdb")
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options,
              "-w", "-t", "60", "start"], "pg_ctl start")
        started = True
        _run([str(bindir / "createdb"), "-h", str(socket_dir), "-p", str(port), "-U", USER, DATABASE], "createdb")
        yield Postgres("127.0.0.1", port, USER, PASSWORD, DATABASE, data)
    finally:
        if started:
            subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def postgres_or_skip() -> Iterator[Postgres]:
    """A fixture body: a real server for the fixture's scope; the test is skipped, with the
    reason, only if it cannot start."""
    server = running_postgres()
    try:
        pg = server.__enter__()
    except PostgresUnavailable as reason:
        pytest.skip(f"no PostgreSQL server could start here: {reason}")
    try:
        yield pg
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A real server for a test module (the instance and topology tests)."""
    yield from postgres_or_skip()
