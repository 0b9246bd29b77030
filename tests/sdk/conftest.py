"""Fixtures for the Polytomic-SDK compatibility tests.

The suite drives a real, running Syncline server with the official, unmodified Polytomic
Python SDK (``polytomic==25.9.10``). This file starts that server once per test session:

* ``SYNCLINE_BIN`` (required) names the built ``syncline`` binary; it is run as
  ``$SYNCLINE_BIN serve`` with every role (api, worker, scheduler) in one process.
* ``DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/postgres``) is the
  PostgreSQL server used for everything: a fresh state database for Syncline plus a source
  and a destination database for the syncs, all dropped at the end.
* ``REDIS_URL`` (default ``redis://127.0.0.1:6379``) carries the job queue; a random
  ``REDIS_KEY_PREFIX`` keeps this session's keys apart from any other user of that Redis.

``scripts/services.sh`` makes sure PostgreSQL and Redis are up; ``scripts/python-env.sh``
builds the venv. The server's log is kept in pytest's temporary directory and its tail is
printed in the terminal summary when anything failed.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import socket
import string
import subprocess
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Iterator, Optional

import psycopg
import pytest
import requests
from psycopg import sql
from polytomic import Polytomic

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
STARTUP_TIMEOUT_S = 60
SHUTDOWN_GRACE_S = 30
LOG_TAIL_LINES = 80

# Filled in by the `server` fixture; read by pytest_terminal_summary.
_server_logs: list[Path] = []


def random_suffix(n: int = 8) -> str:
    """Lower-case alphanumerics: safe inside database names, emails and key prefixes."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def url_with_database(url: str, dbname: str) -> str:
    """The same PostgreSQL URL pointing at another database (query options kept)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"<could not read {path}: {err}>"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "<empty log>"


@dataclasses.dataclass(frozen=True)
class SynclineServer:
    base_url: str
    deployment_key: str
    # PostgreSQL: the admin URL the databases were created through, and the databases.
    dsn: str
    state_db: str
    source_db: str
    destination_db: str
    # How Syncline's PostgreSQL *connections* (the ones created through the API) reach them.
    pg_host: str
    pg_port: int
    pg_user: str
    log_path: Path
    process: subprocess.Popen
    # Every connection password handed out; none may appear in the server log.
    passwords: list[str] = dataclasses.field(default_factory=list)

    @property
    def source_dsn(self) -> str:
        return url_with_database(self.dsn, self.source_db)

    @property
    def destination_dsn(self) -> str:
        return url_with_database(self.dsn, self.destination_db)

    @property
    def state_dsn(self) -> str:
        return url_with_database(self.dsn, self.state_db)

    def connect(self, dbname: str) -> psycopg.Connection:
        """An autocommit psycopg connection to one of this session's databases."""
        return psycopg.connect(url_with_database(self.dsn, dbname), autocommit=True)

    def postgres_configuration(self, dbname: str, password: str) -> dict:
        """Connection configuration for a Syncline `postgresql` connection to `dbname`.

        The server uses trust auth for loopback TCP, so the password is never checked; it is
        there so the tests can verify that it is never echoed back by the API.
        """
        self.passwords.append(password)
        return {
            "hostname": self.pg_host,
            "port": self.pg_port,
            "database": dbname,
            "username": self.pg_user,
            "password": password,
            "ssl": False,
        }

    def log(self) -> str:
        return log_tail(self.log_path)


def _create_databases(admin_dsn: str, names: list[str]) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_databases(admin_dsn: str, names: list[str]) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _abort(message: str) -> None:
    """Stop the whole session with one clear message (every test here needs the server).

    pytest.fail in a session fixture would repeat the same error for every test.
    """
    pytest.exit(f"tests/sdk: {message}", returncode=pytest.ExitCode.TESTS_FAILED)


def _drop_databases_quietly(admin_dsn: str, names: list[str]) -> None:
    try:
        _drop_databases(admin_dsn, names)
    except psycopg.Error as err:
        warnings.warn(f"could not drop test databases {names}: {err}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server (and anything it spawned), wait, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group: start_new_session=True
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=SHUTDOWN_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _wait_until_ready(proc: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            _abort(
                f"syncline serve exited with code {code} before answering GET /status.txt; "
                f"its log tail is printed above ({log_path})"
            )
        try:
            resp = requests.get(f"{base_url}/status.txt", timeout=2)
            if resp.status_code == 200:
                return
            last_problem = f"HTTP {resp.status_code}: {resp.text[:200]!r}"
        except requests.RequestException as err:
            last_problem = f"{type(err).__name__}: {err}"
        time.sleep(0.25)
    _abort(
        f"syncline serve did not answer 200 on GET {base_url}/status.txt within "
        f"{STARTUP_TIMEOUT_S} s (last: {last_problem}); its log tail is printed above "
        f"({log_path})"
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynclineServer]:
    """A running `syncline serve` with fresh databases, torn down at session end."""
    binary = os.environ.get("SYNCLINE_BIN", "").strip()
    if not binary:
        _abort(
            "SYNCLINE_BIN is not set: point it at the built server binary, e.g.\n"
            "  SYNCLINE_BIN=target/debug/syncline .venv/bin/pytest tests/sdk -q"
        )
    binary_path = Path(binary).resolve()
    if not (binary_path.is_file() and os.access(binary_path, os.X_OK)):
        _abort(
            f"SYNCLINE_BIN={binary!r} is not an executable file (resolved: {binary_path}); "
            "build the server first."
        )

    admin_dsn = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    parsed = urllib.parse.urlsplit(admin_dsn)
    pg_host = parsed.hostname or "127.0.0.1"
    pg_port = parsed.port or 5432
    pg_user = urllib.parse.unquote(parsed.username or "postgres")

    suffix = random_suffix()
    state_db, source_db, destination_db = (
        f"syncline_sdk_{suffix}",
        f"sdk_src_{suffix}",
        f"sdk_dst_{suffix}",
    )
    databases = [state_db, source_db, destination_db]
    try:
        _create_databases(admin_dsn, databases)
    except psycopg.Error as err:
        _drop_databases_quietly(admin_dsn, databases)
        _abort(
            f"could not create the test databases through DATABASE_URL={admin_dsn!r}: {err}\n"
            "Is PostgreSQL running? Try scripts/services.sh."
        )

    workdir = tmp_path_factory.mktemp("syncline")
    payloads = workdir / "payloads"
    payloads.mkdir()
    log_path = workdir / "syncline.log"
    _server_logs.append(log_path)

    port = free_tcp_port()
    base_url = f"http://127.0.0.1:{port}"
    deployment_key = random_suffix(32)
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": url_with_database(admin_dsn, state_db),
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": f"sdk-{suffix}",
            "POLYTOMIC_URL": base_url,
            "PORT": str(port),
            "ROOT_USER": "root@example.com",
            "DEPLOYMENT": "sdk-test",
            "DEPLOYMENT_KEY": deployment_key,
            "GOOGLE_CLIENT_ID": "test-client",
            "GOOGLE_CLIENT_SECRET": "test-secret",
            "JOB_PAYLOAD_PATH": payloads.as_uri(),  # file:///.../payloads
            "ROLE": "api,worker,scheduler",
            "WORKER_HEARTBEAT_SECONDS": "2",
            "LOG_LEVEL": "info",
            "RUST_BACKTRACE": "1",
        }
    )

    proc: Optional[subprocess.Popen] = None
    server_info: Optional[SynclineServer] = None
    try:
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [str(binary_path), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=workdir,
                start_new_session=True,  # own process group: clean signalling at teardown
            )
        _wait_until_ready(proc, base_url, log_path)
        server_info = SynclineServer(
            base_url=base_url,
            deployment_key=deployment_key,
            dsn=admin_dsn,
            state_db=state_db,
            source_db=source_db,
            destination_db=destination_db,
            pg_host=pg_host,
            pg_port=pg_port,
            pg_user=pg_user,
            log_path=log_path,
            process=proc,
        )
        yield server_info
    finally:
        if proc is not None:
            _stop(proc)
        _drop_databases_quietly(admin_dsn, databases)
    logged = log_path.read_text(errors="replace")
    leaked = [p for p in server_info.passwords if p in logged] if server_info else []
    assert not leaked, f"connection passwords reached the server log {log_path}"


@pytest.fixture(scope="session")
def admin(server: SynclineServer) -> Polytomic:
    """SDK client authenticated with the deployment key (partner scope)."""
    return Polytomic(base_url=server.base_url, token=server.deployment_key)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """On failure, show where the server log is and its last lines."""
    if exitstatus == 0 or not _server_logs:
        return
    for path in _server_logs:
        terminalreporter.section(f"syncline server log (tail): {path}")
        terminalreporter.write_line(log_tail(path))
