"""Fixtures for the dagster-polytomic test: a running Syncline, started as tests/sdk starts it
(``support.syncline_server``: ``SYNCLINE_BIN``, ``DATABASE_URL``, ``REDIS_URL``).

This suite has its own venv, ``.venv-dagster`` (``scripts/python-env.sh dagster``), because
dagster-polytomic needs the 1.x Polytomic SDK while tests/sdk pins 25.9.10.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

import support
from support import SynclineServer

_server_logs: list[Path] = []


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynclineServer]:
    """A running `syncline serve` with fresh databases, torn down at session end."""
    workdir = tmp_path_factory.mktemp("syncline")
    _server_logs.append(workdir / "syncline.log")
    with support.syncline_server(workdir, suite="tests/dagster", prefix="dagster") as server_info:
        yield server_info


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """On failure, show where the server log is and its last lines."""
    support.report_logs(terminalreporter, exitstatus, _server_logs)
