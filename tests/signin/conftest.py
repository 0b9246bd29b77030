"""Fixtures for the sign-in tests: a real OpenID Connect provider (``oidc-provider-mock``),
`syncline serve` processes pointed at it, and a scripted browser.

* ``oidc_provider`` starts ``oidc-provider-mock`` from this venv; its issuer is
  ``http://127.0.0.1:<port>``, the host every request here uses (the mock derives ``iss`` and
  its endpoint URLs from the Host header).
* ``start_syncline(issuer)`` starts a `syncline serve` (``SYNCLINE_BIN``) with a fresh
  state database, its own ``REDIS_KEY_PREFIX`` and ``OIDC_ISSUER_URL=issuer``; ``server`` is
  the one pointed at ``oidc_provider`` that most tests share.
* ``RewritingProxy`` sits in front of a provider and keeps the Host header, so the provider
  names itself after the proxy; tests use it to make the provider issue tokens a client must
  refuse.

PostgreSQL and Redis come from ``DATABASE_URL`` and ``REDIS_URL`` (see tests/support.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, Optional

import psycopg
import pytest
import requests

import support

CLIENT_ID = "test-client"
DEPLOYMENT = "signin-test"
ROOT_USER = "root@example.com"

_logs: list[Path] = []


@dataclasses.dataclass(frozen=True)
class OidcProvider:
    url: str
    port: int
    process: subprocess.Popen

    def set_user(self, email: str, **claims: object) -> None:
        """The claims the provider gives the user whose subject is `email`."""
        sub = urllib.parse.quote(email, safe="@")
        resp = requests.put(f"{self.url}/users/{sub}", json={"email": email, **claims}, timeout=10)
        assert resp.status_code == 204, resp.text


@dataclasses.dataclass(frozen=True)
class Server:
    """A running Syncline and its state database."""

    base_url: str
    deployment_key: str
    state_dsn: str

    def sql(self, query: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.state_dsn, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def counts(self) -> dict[str, int]:
        tables = ("users", "organizations", "sessions")
        return {table: self.sql(f"select count(*) from {table}")[0][0] for table in tables}

    @contextlib.contextmanager
    def creates_nothing(self) -> Iterator[None]:
        """Asserts the block leaves users, organizations and sessions as they were."""
        before = self.counts()
        yield
        assert self.counts() == before

    def partner(self, method: str, path: str, **json: object) -> dict:
        """Calls the API with the deployment key; answers `data`."""
        resp = requests.request(
            method,
            f"{self.base_url}{path}",
            json=json or None,
            headers={"Authorization": f"Bearer {self.deployment_key}"},
            timeout=10,
        )
        assert resp.ok, resp.text
        return resp.json()["data"]

    def role_of(self, email: str) -> list[tuple[str, str]]:
        """(organization name, role name) of each membership of `email`."""
        return self.sql(
            "select o.name, r.name from users u join organizations o on o.id = u.organization_id"
            " join user_roles ur on ur.user_id = u.id join roles r on r.id = ur.role_id"
            " where lower(u.email) = lower(%s) order by o.created_at",
            email,
        )


class Browser:
    """A browser for Syncline (it keeps Syncline's cookies) following redirects by hand."""

    def __init__(self, server: Server):
        self.server = server
        self.http = requests.Session()

    def start(self, return_to: Optional[str] = None) -> str:
        """GET /auth/login; answers the provider's authorization URL it redirects to."""
        params = {"return_to": return_to} if return_to is not None else None
        resp = self.http.get(f"{self.server.base_url}/auth/login", params=params, allow_redirects=False)
        assert resp.status_code == 302, resp.text
        return resp.headers["Location"]

    @staticmethod
    def authorize(authorize_url: str, email: str) -> str:
        """The user picks `email` at the provider; answers the callback URL it redirects to."""
        resp = requests.post(authorize_url, data={"sub": email}, allow_redirects=False, timeout=10)
        assert resp.status_code == 302, resp.text
        return resp.headers["Location"]

    def callback(self, url: str) -> requests.Response:
        return self.http.get(url, allow_redirects=False)

    def sign_in(self, email: str, return_to: Optional[str] = None) -> requests.Response:
        return self.callback(self.authorize(self.start(return_to), email))

    def api(self, method: str, path: str, csrf: bool = True) -> requests.Response:
        """Calls the API with the session cookie (and the CSRF header unless `csrf` is false)."""
        headers = {"X-CSRF-Token": self.http.cookies["syncline_csrf"]} if csrf else {}
        return self.http.request(method, f"{self.server.base_url}{path}", headers=headers)


def with_query(url: str, **changes: str) -> str:
    """`url` with query parameters replaced."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(changes)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


Rewrite = Callable[[str, dict[str, str], bytes], tuple[dict[str, str], bytes]]


class RewritingProxy:
    """An HTTP proxy in front of `target`. It keeps the Host header, so the provider behind it
    names itself (issuer, endpoints) after the proxy. `request(path, headers, body)` may
    rewrite what is forwarded, `response(path, headers, body)` what is answered."""

    HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}

    def __init__(self, target: str, request: Optional[Rewrite] = None, response: Optional[Rewrite] = None):
        target_parts = urllib.parse.urlsplit(target)
        hop_by_hop = self.HOP_BY_HOP

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop_by_hop}
                if request:
                    headers, body = request(self.path, headers, body)
                upstream = http.client.HTTPConnection(target_parts.hostname, target_parts.port, timeout=10)
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                out_headers = {k: v for k, v in answer.getheaders() if k.lower() not in hop_by_hop}
                out_body = answer.read()
                upstream.close()
                if response:
                    out_headers, out_body = response(self.path, out_headers, out_body)
                self.send_response(answer.status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(out_body)))
                self.end_headers()
                self.wfile.write(out_body)

            do_GET = do_POST = do_PUT = forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def start_oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., OidcProvider]]:
    """Starts `oidc-provider-mock` (on `port`, else a free one) with extra command-line `args`;
    stopped at session end. Each start has a new signing key."""
    processes = []

    def start(*args: str, port: Optional[int] = None) -> OidcProvider:
        port = port or support.free_tcp_port()
        log_path = tmp_path_factory.mktemp("oidc") / "provider.log"
        _logs.append(log_path)
        binary = Path(sys.executable).parent / "oidc-provider-mock"
        argv = [str(binary), "--port", str(port), *args]
        proc = support.start_process(argv, log_path, {**os.environ, "NO_COLOR": "1"}, log_path.parent)
        processes.append(proc)
        url = f"http://127.0.0.1:{port}"
        with support.stop_session_on_startup_error("tests/signin"):
            support.wait_until_ready(proc, f"{url}/.well-known/openid-configuration", log_path)
        return OidcProvider(url, port, proc)

    try:
        yield start
    finally:
        for proc in processes:
            support.stop(proc)


@pytest.fixture(scope="session")
def oidc_provider(start_oidc_provider: Callable[..., OidcProvider]) -> OidcProvider:
    return start_oidc_provider()


@pytest.fixture(scope="session")
def start_syncline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Starts a `syncline serve` with a fresh state database and OIDC_ISSUER_URL=`issuer`."""
    dsn = support.admin_dsn()
    started: list[tuple[support.Syncline, str]] = []

    def start(issuer: str) -> Server:
        database = f"syncline_signin_{support.random_suffix()}"
        workdir = tmp_path_factory.mktemp("syncline")
        _logs.append(workdir / "syncline.log")
        state_dsn = support.url_with_database(dsn, database)
        env = {
            "OIDC_ISSUER_URL": issuer,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": "test-secret",
            "ROOT_USER": ROOT_USER,
            "DEPLOYMENT": DEPLOYMENT,
            "ROLE": "api",
        }
        try:
            with support.stop_session_on_startup_error("tests/signin"):
                support.create_databases(dsn, [database])
                syncline = support.start_syncline(workdir, state_dsn, env)
        except BaseException:
            support.drop_databases(dsn, [database])
            raise
        started.append((syncline, database))
        return Server(syncline.base_url, syncline.deployment_key, state_dsn)

    try:
        yield start
    finally:
        for syncline, database in started:
            support.stop(syncline.process)
            support.drop_databases(dsn, [database])


@pytest.fixture(scope="session")
def server(start_syncline: Callable[..., Server], oidc_provider: OidcProvider) -> Server:
    """The Syncline most tests share, signing in with `oidc_provider`."""
    return start_syncline(oidc_provider.url)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    support.report_logs(terminalreporter, exitstatus, _logs)
