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
import urllib.parse
from pathlib import Path
from typing import Iterator, Optional

import psycopg
import pytest
from polytomic import Polytomic

import support
from support import log_tail, url_with_database

# Filled in by the `server` fixture; read by pytest_terminal_summary.
_server_logs: list[Path] = []


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


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynclineServer]:
    """A running `syncline serve` with fresh databases, torn down at session end."""
    admin_dsn = support.admin_dsn()
    parsed = urllib.parse.urlsplit(admin_dsn)
    suffix = support.random_suffix()
    state_db, source_db, destination_db = (
        f"syncline_sdk_{suffix}",
        f"sdk_src_{suffix}",
        f"sdk_dst_{suffix}",
    )
    databases = [state_db, source_db, destination_db]
    workdir = tmp_path_factory.mktemp("syncline")
    _server_logs.append(workdir / "syncline.log")
    syncline = None
    server_info: Optional[SynclineServer] = None
    try:
        with support.stop_session_on_startup_error("tests/sdk"):
            support.create_databases(admin_dsn, databases)
            syncline = support.start_syncline(
                workdir,
                url_with_database(admin_dsn, state_db),
                {
                    "REDIS_KEY_PREFIX": f"sdk-{suffix}",
                    "DEPLOYMENT": "sdk-test",
                    "ROLE": "api,worker,scheduler",
                    "WORKER_HEARTBEAT_SECONDS": "2",
                },
            )
        server_info = SynclineServer(
            base_url=syncline.base_url,
            deployment_key=syncline.deployment_key,
            dsn=admin_dsn,
            state_db=state_db,
            source_db=source_db,
            destination_db=destination_db,
            pg_host=parsed.hostname or "127.0.0.1",
            pg_port=parsed.port or 5432,
            pg_user=urllib.parse.unquote(parsed.username or "postgres"),
            log_path=syncline.log_path,
        )
        yield server_info
    finally:
        if syncline is not None:
            support.stop(syncline.process)
        support.drop_databases(admin_dsn, databases)
    logged = server_info.log_path.read_text(errors="replace") if server_info else ""
    leaked = [p for p in server_info.passwords if p in logged] if server_info else []
    assert not leaked, f"connection passwords reached the server log {server_info.log_path}"


@pytest.fixture(scope="session")
def admin(server: SynclineServer) -> Polytomic:
    """SDK client authenticated with the deployment key (partner scope)."""
    return Polytomic(base_url=server.base_url, token=server.deployment_key)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """On failure, show where the server log is and its last lines."""
    support.report_logs(terminalreporter, exitstatus, _server_logs)
