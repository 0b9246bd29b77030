"""OIDC sign-in for the web UI against a real OpenID Connect provider (oidc-provider-mock).

Each rejected sign-in must answer the JSON error object with a message naming the problem, and
create no user, organization or session.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.parse
from types import SimpleNamespace

import pytest
import requests

import support
from conftest import CLIENT_ID, DEPLOYMENT, ROOT_USER, Browser, RewritingProxy, with_query


def set_cookies(resp: requests.Response) -> dict[str, str]:
    """Each Set-Cookie header of `resp` by cookie name."""
    return {h.split("=", 1)[0]: h for h in resp.raw.headers.getlist("Set-Cookie")}


def assert_error(resp: requests.Response, status: int, *words: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"status", "message", "key", "metadata"}, body
    assert body["status"] == status
    for word in words:
        assert word in body["message"], body


@pytest.fixture(scope="session")
def acme(server, oidc_provider) -> SimpleNamespace:
    """An organization with SSO domain acme.test, a member and a member whose email the
    provider marks unverified."""
    org = server.partner("POST", "/api/organizations", name="Acme", sso_domain="acme.test")
    member, unverified = f"member-{secrets.token_hex(4)}@acme.test", "unverified@acme.test"
    for email in (member, unverified):
        server.partner("POST", f"/api/organizations/{org['id']}/users", email=email, role="member")
    oidc_provider.set_user(member, email_verified=True)
    oidc_provider.set_user(unverified, email_verified=False)
    return SimpleNamespace(id=org["id"], member=member, unverified=unverified)


def test_sign_in_opens_a_session(server, oidc_provider, acme):
    browser = Browser(server)
    login = browser.http.get(
        f"{server.base_url}/auth/login", params={"return_to": "/syncs?tab=runs"}, allow_redirects=False
    )
    assert login.status_code == 302, login.text
    authorize_url = login.headers["Location"]
    assert authorize_url.startswith(f"{oidc_provider.url}/oauth2/authorize?")
    request = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))
    assert request["response_type"] == "code"
    assert request["client_id"] == CLIENT_ID
    assert request["redirect_uri"] == f"{server.base_url}/auth"
    assert set(request["scope"].split()) == {"openid", "email", "profile"}
    assert request["code_challenge_method"] == "S256" and request["code_challenge"]
    assert request["state"] and request["nonce"]
    binding = set_cookies(login)["syncline_signin"]
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/auth", "Max-Age=600"):
        assert attribute in binding, binding

    done = browser.callback(browser.authorize(authorize_url, acme.member))
    assert done.status_code == 303, done.text
    assert done.headers["Location"] == "/syncs?tab=runs"
    cookies = set_cookies(done)
    assert "HttpOnly" in cookies["syncline_session"] and "SameSite=Lax" in cookies["syncline_session"]
    assert "HttpOnly" not in cookies["syncline_csrf"]
    assert server.sql("select count(*) from sign_in_attempts where state = %s", request["state"]) == [(0,)]

    me = browser.api("GET", "/api/me")
    assert me.status_code == 200, me.text
    me = me.json()["data"]
    assert (me["email"], me["role"], me["organization_id"]) == (acme.member, "member", acme.id)
    assert me["credential"]["method"] == "session"
    events = server.sql(
        "select organization_id::text, actor_email, ip from audit_events where action = 'user.sign_in' and actor_id = %s",
        me["id"],
    )
    assert events == [(acme.id, acme.member, "127.0.0.1")]

    own_keys = f"/api/organization/users/{me['id']}/keys"
    assert_error(browser.api("POST", own_keys, csrf=False), 403, "X-CSRF-Token")
    minted = browser.api("POST", own_keys)
    assert minted.status_code == 200, minted.text

    assert_error(browser.api("POST", "/auth/logout", csrf=False), 403, "X-CSRF-Token")
    token = browser.http.cookies["syncline_session"]
    out = browser.api("POST", "/auth/logout")
    assert out.status_code == 204, out.text
    assert all("Max-Age=0" in cookie for cookie in set_cookies(out).values())
    assert set(set_cookies(out)) == {"syncline_session", "syncline_csrf"}
    assert_error(browser.api("GET", "/api/me", csrf=False), 401, "or session")
    revoked = requests.get(f"{server.base_url}/api/me", cookies={"syncline_session": token})
    assert_error(revoked, 401, "the session has ended")


def test_return_to_stays_on_this_site(server, acme):
    for outside in ("https://evil.example/", "//evil.example/", "syncs"):
        done = Browser(server).sign_in(acme.member, return_to=outside)
        assert done.status_code == 303, done.text
        assert done.headers["Location"] == "/"


def test_forged_state_is_rejected(server, acme):
    browser = Browser(server)
    callback = browser.authorize(browser.start(), acme.member)
    with server.creates_nothing():
        resp = browser.callback(with_query(callback, state=secrets.token_urlsafe(32)))
    assert_error(resp, 400, "sign-in attempt is unknown or was already used")


def test_state_must_belong_to_this_browser(server, acme):
    callback = Browser.authorize(Browser(server).start(), acme.member)
    other = Browser(server)
    other.start()  # its own sign-in cookie, for another attempt
    with server.creates_nothing():
        resp = other.callback(callback)
    assert_error(resp, 400, "another browser")


def test_replayed_callback_is_rejected(server, acme):
    browser = Browser(server)
    callback = browser.authorize(browser.start(), acme.member)
    assert browser.callback(callback).status_code == 303
    with server.creates_nothing():
        resp = browser.callback(callback)
    assert_error(resp, 400, "sign-in attempt is unknown or was already used")


def test_used_code_is_refused_in_a_fresh_attempt(server, acme):
    browser = Browser(server)
    used = browser.authorize(browser.start(), acme.member)
    assert browser.callback(used).status_code == 303
    fresh = browser.authorize(browser.start(), acme.member)
    old_code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(used).query))["code"]
    with server.creates_nothing():
        resp = browser.callback(with_query(fresh, code=old_code))
    assert_error(resp, 401, "identity provider refused the authorization code", "invalid_grant")


def test_wrong_nonce_is_rejected(server, acme):
    browser = Browser(server)
    authorize_url = with_query(browser.start(), nonce=secrets.token_urlsafe(16))
    with server.creates_nothing():
        resp = browser.callback(browser.authorize(authorize_url, acme.member))
    assert_error(resp, 401, "ID token was rejected", "nonce")


def test_provider_denial_is_reported(server):
    browser = Browser(server)
    denied = requests.post(browser.start(), data={"action": "deny"}, allow_redirects=False)
    assert denied.status_code == 302, denied.text
    with server.creates_nothing():
        resp = browser.callback(denied.headers["Location"])
    assert_error(resp, 401, "identity provider refused the sign-in", "access_denied")


def test_stranger_is_turned_away(server, oidc_provider):
    stranger = f"stranger-{secrets.token_hex(4)}@example.org"
    oidc_provider.set_user(stranger, email_verified=True)
    with server.creates_nothing():
        resp = Browser(server).sign_in(stranger)
    assert_error(resp, 403, "no organization has a user with this email")


def test_unverified_email_is_turned_away(server, acme):
    with server.creates_nothing():
        resp = Browser(server).sign_in(acme.unverified)
    assert_error(resp, 403, "not verified")


def test_verified_email_of_the_sso_domain_joins_as_member(server, oidc_provider, acme):
    newcomer = f"New-{secrets.token_hex(4)}@ACME.test"
    oidc_provider.set_user(newcomer)  # email_verified absent: not enough to join
    with server.creates_nothing():
        assert_error(Browser(server).sign_in(newcomer), 403, "no organization has a user with this email")
    oidc_provider.set_user(newcomer, email_verified=True)
    browser = Browser(server)
    assert browser.sign_in(newcomer).status_code == 303
    assert server.role_of(newcomer) == [("Acme", "Member")]
    me = browser.api("GET", "/api/me").json()["data"]
    assert (me["organization_id"], me["role"]) == (acme.id, "member")


def test_root_user_creates_the_first_organization(start_syncline, oidc_provider):
    fresh = start_syncline(oidc_provider.url)
    root = ROOT_USER.upper()  # compared case-insensitively
    oidc_provider.set_user(root, email_verified=True)
    assert fresh.counts() == {"users": 0, "organizations": 0, "sessions": 0}
    browser = Browser(fresh)
    assert browser.sign_in(root).status_code == 303
    assert fresh.role_of(root) == [(DEPLOYMENT, "Admin")]
    me = browser.api("GET", "/api/me").json()["data"]
    assert (me["organization_name"], me["role"]) == (DEPLOYMENT, "admin")
    assert Browser(fresh).sign_in(root).status_code == 303
    assert fresh.counts() == {"users": 1, "organizations": 1, "sessions": 2}


def test_root_user_joins_the_oldest_organization(start_syncline, oidc_provider):
    fresh = start_syncline(oidc_provider.url)
    fresh.partner("POST", "/api/organizations", name="First")
    fresh.partner("POST", "/api/organizations", name="Second")
    oidc_provider.set_user(ROOT_USER, email_verified=True)
    assert Browser(fresh).sign_in(ROOT_USER).status_code == 303
    assert fresh.role_of(ROOT_USER) == [("First", "Admin")]
    assert fresh.counts()["organizations"] == 2


def test_rotated_provider_keys_are_fetched_again(start_oidc_provider, start_syncline):
    provider = start_oidc_provider()
    fresh = start_syncline(provider.url)
    provider.set_user(ROOT_USER, email_verified=True)
    assert Browser(fresh).sign_in(ROOT_USER).status_code == 303  # the keys are now cached
    support.stop(provider.process)
    rotated = start_oidc_provider(port=provider.port)  # same issuer, a new signing key
    rotated.set_user(ROOT_USER, email_verified=True)
    done = Browser(fresh).sign_in(ROOT_USER)
    assert done.status_code == 303, done.text


def test_expired_id_token_is_rejected(start_oidc_provider, start_syncline):
    # The provider signs ID tokens that expired 10 minutes before they were issued. It also
    # answers `"expires_in": -600` for the access token, which no client can parse (the field
    # is unsigned), so a proxy leaves that optional field out; the ID token passes untouched.
    expired = start_oidc_provider("--token-max-age=-600")

    def without_expires_in(path: str, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        if not path.startswith("/oauth2/token"):
            return headers, body
        token = json.loads(body)
        assert token.pop("expires_in") == -600
        return headers, json.dumps(token).encode()

    proxy = RewritingProxy(expired.url, response=without_expires_in)
    try:
        fresh = start_syncline(proxy.url)
        expired.set_user(ROOT_USER, email_verified=True)
        with fresh.creates_nothing():
            resp = Browser(fresh).sign_in(ROOT_USER)
        assert_error(resp, 401, "ID token was rejected", "Expired: ID token expired at")
    finally:
        proxy.close()


def test_token_for_another_audience_is_rejected(oidc_provider, start_syncline):
    other = "another-client"

    def as_other_client(path: str, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        if not path.startswith("/oauth2/token"):
            return headers, body
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if "client_id" in form:
            form["client_id"] = other
        for name, value in headers.items():
            if name.lower() == "authorization" and value.startswith("Basic "):
                secret = base64.b64decode(value[6:]).decode().split(":", 1)[1]
                headers[name] = "Basic " + base64.b64encode(f"{other}:{secret}".encode()).decode()
        return headers, urllib.parse.urlencode(form).encode()

    proxy = RewritingProxy(oidc_provider.url, request=as_other_client)
    try:
        fresh = start_syncline(proxy.url)
        oidc_provider.set_user(ROOT_USER, email_verified=True)
        browser = Browser(fresh)
        authorize_url = browser.start()
        assert authorize_url.startswith(proxy.url)
        with fresh.creates_nothing():
            resp = browser.callback(browser.authorize(with_query(authorize_url, client_id=other), ROOT_USER))
        assert_error(resp, 401, "ID token was rejected", "audiences", other)
    finally:
        proxy.close()


def test_unreachable_provider_does_not_stop_the_api(start_syncline):
    fresh = start_syncline(f"http://127.0.0.1:{support.free_tcp_port()}")
    assert_error(requests.get(f"{fresh.base_url}/auth/login", allow_redirects=False), 503, "cannot be reached")
    assert_error(requests.get(f"{fresh.base_url}/auth", params={"state": "x", "code": "y"}), 400, "unknown")


def test_sessions_end_when_idle_too_long_or_too_old(server, oidc_provider, acme):
    """Idle timeout 8 hours, absolute lifetime 7 days (moved back in the state database)."""
    for moved in (
        "last_seen_at = now() - interval '8 hours 1 minute'",
        "expires_at = now() - interval '1 second'",
    ):
        browser = Browser(server)
        assert browser.sign_in(acme.member).status_code == 303
        assert browser.api("GET", "/api/me").status_code == 200
        user_id = browser.api("GET", "/api/me").json()["data"]["id"]
        server.sql(f"update sessions set {moved} where user_id = %s returning id", user_id)
        assert_error(browser.api("GET", "/api/me"), 401, "the session has ended")


def test_deleting_the_user_ends_their_sessions(server, oidc_provider, acme):
    email = f"leaver-{secrets.token_hex(4)}@acme.test"
    user = server.partner("POST", f"/api/organizations/{acme.id}/users", email=email)
    oidc_provider.set_user(email, email_verified=True)
    browser = Browser(server)
    assert browser.sign_in(email).status_code == 303
    assert browser.api("GET", "/api/me").status_code == 200
    server.partner("DELETE", f"/api/organizations/{acme.id}/users/{user['id']}")
    assert_error(browser.api("GET", "/api/me"), 401, "the session has ended")
