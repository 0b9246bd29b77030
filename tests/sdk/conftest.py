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
* Sync error emails go to a real SMTP server (aiosmtpd) on a free local port (``mailbox``);
  a run is "long" after 15 s (``LONGSYNC_THRESHOLD=0.25`` minutes).

``scripts/services.sh`` makes sure PostgreSQL and Redis are up; ``scripts/python-env.sh``
builds the venv. The server's log is kept in pytest's temporary directory and its tail is
printed in the terminal summary when anything failed.
"""

from __future__ import annotations

import email
import email.message
import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller
from polytomic import Polytomic

import support
from slack_standin import SlackStandIn
from support import SynclineServer  # test_access.py imports it from here too

# Filled in by the `server` fixture; read by pytest_terminal_summary.
_server_logs: list[Path] = []


@pytest.fixture(scope="session")
def slack() -> Iterator[SlackStandIn]:
    """The local Slack the server's notification rules post to: channel `#polku`, which takes
    one message every 1.5 s (stricter than Slack's 1/s, so the server meets its 429s)."""
    standin = SlackStandIn(tokens=["xoxb-sdk-test", "xoxb-own-bot"], channels=["#polku", "#elsewhere", "#own"],
                           joined=["#polku", "#own"], hooks={"/services/T1/B1/hook": "#hooked"}, interval=1.5, burst=1)
    yield standin
    standin.close()


class Mailbox:
    """What a real SMTP server (aiosmtpd) received: (recipients, message) pairs."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], email.message.Message]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        with self._lock:
            self.received.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"

    def messages(self) -> list[tuple[list[str], email.message.Message]]:
        with self._lock:
            return list(self.received)


@pytest.fixture(scope="session")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server on a free local port, and what it received."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, slack: SlackStandIn, mailbox) -> Iterator[SynclineServer]:
    """A running `syncline serve` with fresh databases, torn down at session end."""
    workdir = tmp_path_factory.mktemp("syncline")
    _server_logs.append(workdir / "syncline.log")
    env = {"SLACK_API_URL": f"{slack.url}/api/", "SLACK_TOKEN": "xoxb-sdk-test", "SLACK_CHANNEL": "#polku",
           "SMTP_URL": f"smtp://127.0.0.1:{mailbox[1]}", "SMTP_FROM": "Syncline <syncline@example.com>",
           "LONGSYNC_THRESHOLD": "0.25"}
    with support.syncline_server(workdir, suite="tests/sdk", prefix="sdk", env=env) as server_info:
        yield server_info


@pytest.fixture(scope="session")
def admin(server: SynclineServer) -> Polytomic:
    """SDK client authenticated with the deployment key (partner scope)."""
    return Polytomic(base_url=server.base_url, token=server.deployment_key)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """On failure, show where the server log is and its last lines."""
    support.report_logs(terminalreporter, exitstatus, _server_logs)
