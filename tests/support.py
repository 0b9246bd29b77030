"""Helpers shared by the Python suites (tests/sdk, tests/signin, tests/dagster): throwaway
PostgreSQL databases, free ports, `syncline serve` and `moto_server` processes with their logs.

Importable as ``support`` because tests/pytest.ini puts this directory on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Callable, Iterator, Optional

import psycopg
import pytest
import requests
from psycopg import sql

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
STARTUP_TIMEOUT_S = 60
SHUTDOWN_GRACE_S = 30
LOG_TAIL_LINES = 80


class StartupError(Exception):
    """Something a suite needs could not be started; the message says what and where to look."""


@contextlib.contextmanager
def stop_session_on_startup_error(suite: str) -> Iterator[None]:
    """Turns a StartupError into one clear stop of the whole pytest session: the tests all need
    what failed, and failing each of them would repeat the same message."""
    try:
        yield
    except StartupError as err:
        pytest.exit(f"{suite}: {err}", returncode=pytest.ExitCode.TESTS_FAILED)


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


def admin_dsn() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def create_databases(dsn: str, names: list[str]) -> None:
    """Creates `names`; on failure drops what was made and raises StartupError."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as err:
        drop_databases(dsn, names)
        raise StartupError(
            f"could not create the test databases through DATABASE_URL={dsn!r}: {err}\n"
            "Is PostgreSQL running? Try scripts/services.sh."
        ) from err


def drop_databases(dsn: str, names: list[str]) -> None:
    """Drops `names` (forcing out connections); only warns when that fails."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in names:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    except psycopg.Error as err:
        warnings.warn(f"could not drop test databases {names}: {err}")


def start_process(argv: list[str], log_path: Path, env: dict, cwd: Path) -> subprocess.Popen:
    """Starts `argv` in its own process group, its output going to `log_path`."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # own process group: clean signalling at teardown
        )


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, wait, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
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


def wait_until_ready(
    proc: subprocess.Popen,
    url: str,
    log_path: Path,
    ready: Callable[[requests.Response], bool] = lambda r: r.status_code == 200,
) -> None:
    """Polls GET `url` until `ready`; raises StartupError when the process exits or time runs out."""
    name = Path(str(proc.args[0])).name
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise StartupError(
                f"{name} exited with code {code} before answering GET {url}; see its log "
                f"({log_path}):\n{log_tail(log_path)}"
            )
        try:
            resp = requests.get(url, timeout=2)
            if ready(resp):
                return
            last_problem = f"HTTP {resp.status_code}: {resp.text[:200]!r}"
        except requests.RequestException as err:
            last_problem = f"{type(err).__name__}: {err}"
        time.sleep(0.25)
    raise StartupError(
        f"{name} did not answer GET {url} within {STARTUP_TIMEOUT_S} s (last: {last_problem}); "
        f"see its log ({log_path}):\n{log_tail(log_path)}"
    )


def syncline_binary() -> Path:
    """The server binary named by SYNCLINE_BIN."""
    binary = os.environ.get("SYNCLINE_BIN", "").strip()
    if not binary:
        raise StartupError(
            "SYNCLINE_BIN is not set: point it at the built server binary, e.g.\n"
            "  SYNCLINE_BIN=target/debug/syncline .venv/bin/pytest tests/sdk -q"
        )
    path = Path(binary).resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise StartupError(
            f"SYNCLINE_BIN={binary!r} is not an executable file (resolved: {path}); build the server first."
        )
    return path


@dataclasses.dataclass(frozen=True)
class Syncline:
    """A running `syncline serve`."""

    base_url: str
    deployment_key: str
    log_path: Path
    process: subprocess.Popen

    def log(self) -> str:
        return log_tail(self.log_path)


def start_syncline(workdir: Path, state_dsn: str, env: dict[str, str]) -> Syncline:
    """`$SYNCLINE_BIN serve` on a free port with its state in `state_dsn`, once it answers
    GET /status.txt. `env` adds to or overrides the defaults (which include a random
    REDIS_KEY_PREFIX); POLYTOMIC_URL is the server's own base URL unless `env` names another.
    """
    binary = syncline_binary()
    payloads = workdir / "payloads"
    payloads.mkdir(exist_ok=True)
    log_path = workdir / "syncline.log"
    port = free_tcp_port()
    base_url = f"http://127.0.0.1:{port}"
    deployment_key = random_suffix(32)
    full_env = dict(os.environ)
    full_env.update(
        {
            "DATABASE_URL": state_dsn,
            "REDIS_URL": redis_url(),
            "REDIS_KEY_PREFIX": f"test-{random_suffix()}",
            "POLYTOMIC_URL": base_url,
            "PORT": str(port),
            "ROOT_USER": "root@example.com",
            "DEPLOYMENT": "test",
            "DEPLOYMENT_KEY": deployment_key,
            "GOOGLE_CLIENT_ID": "test-client",
            "GOOGLE_CLIENT_SECRET": "test-secret",
            "JOB_PAYLOAD_PATH": payloads.as_uri(),  # file:///.../payloads
            "LOG_LEVEL": "info",
            "RUST_BACKTRACE": "1",
        }
    )
    full_env.update(env)
    proc: Optional[subprocess.Popen] = None
    try:
        proc = start_process([str(binary), "serve"], log_path, full_env, workdir)
        wait_until_ready(proc, f"{base_url}/status.txt", log_path)
    except BaseException:
        if proc is not None:
            stop(proc)
        raise
    return Syncline(base_url=base_url, deployment_key=deployment_key, log_path=log_path, process=proc)


@dataclasses.dataclass(frozen=True)
class SynclineServer:
    """A `syncline serve` with every role, and the PostgreSQL databases made for its tests."""

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


@contextlib.contextmanager
def syncline_server(workdir: Path, suite: str, prefix: str, env: Optional[dict] = None) -> Iterator[SynclineServer]:
    """A running `syncline serve` (api, worker and scheduler in one process) with a fresh state,
    source and destination database named after `prefix`, its log in `workdir`, and `env` set;
    stops it and drops the databases on exit, then fails if a connection password reached the
    log. A startup failure stops the whole session of `suite`."""
    admin = admin_dsn()
    parsed = urllib.parse.urlsplit(admin)
    suffix = random_suffix()
    databases = [f"syncline_{prefix}_{suffix}", f"{prefix}_src_{suffix}", f"{prefix}_dst_{suffix}"]
    syncline: Optional[Syncline] = None
    server: Optional[SynclineServer] = None
    try:
        with stop_session_on_startup_error(suite):
            create_databases(admin, databases)
            syncline = start_syncline(
                workdir,
                url_with_database(admin, databases[0]),
                {
                    "REDIS_KEY_PREFIX": f"{prefix}-{suffix}",
                    "DEPLOYMENT": f"{prefix}-test",
                    "ROLE": "api,worker,scheduler",
                    "WORKER_HEARTBEAT_SECONDS": "2",
                    **(env or {}),
                },
            )
        server = SynclineServer(
            base_url=syncline.base_url,
            deployment_key=syncline.deployment_key,
            dsn=admin,
            state_db=databases[0],
            source_db=databases[1],
            destination_db=databases[2],
            pg_host=parsed.hostname or "127.0.0.1",
            pg_port=parsed.port or 5432,
            pg_user=urllib.parse.unquote(parsed.username or "postgres"),
            log_path=syncline.log_path,
        )
        yield server
    finally:
        if syncline is not None:
            stop(syncline.process)
        drop_databases(admin, databases)
    logged = server.log_path.read_text(errors="replace") if server else ""
    leaked = [p for p in server.passwords if p in logged] if server else []
    assert not leaked, f"connection passwords reached the server log {server.log_path}"


@dataclasses.dataclass(frozen=True)
class Moto:
    """A running `moto_server`: a local S3 (any access key is accepted)."""

    endpoint: str
    log_path: Path
    process: subprocess.Popen


def start_moto(workdir: Path) -> Moto:
    """`moto_server` of this venv on a free port of 127.0.0.1, once it answers GET /."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        raise StartupError(f"{binary} is missing: run scripts/python-env.sh")
    port = free_tcp_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = workdir / "moto.log"
    proc = start_process([str(binary), "-H", "127.0.0.1", "-p", str(port)], log_path, dict(os.environ), workdir)
    try:
        wait_until_ready(proc, f"{endpoint}/", log_path)
    except BaseException:
        stop(proc)
        raise
    return Moto(endpoint=endpoint, log_path=log_path, process=proc)


def report_logs(terminalreporter, exitstatus: int, paths: list[Path]) -> None:
    """For pytest_terminal_summary: on failure, where each log is and its last lines."""
    if exitstatus == 0:
        return
    for path in filter(Path.exists, paths):
        terminalreporter.section(f"log (tail): {path}")
        terminalreporter.write_line(log_tail(path))
