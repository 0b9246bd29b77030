"""Segment's and RudderStack's Python clients, unmodified, send tracks, identifies, pages and
groups to Syncline's `/v1` tracking API through two event sources, `server` and `client`; every
event they were told was accepted is in the event store, once, with its source, normalized
(`receivedAt` stamped, `messageId` kept), and rudder-sdk-python's gzip bodies are read. Each
source's route delivers its events to its own table (`polku.server`, `polku.client`) with the
user's name from identify calls, and the local Slack hears exactly one `user.first_named` per
named user.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
import rudderstack.analytics.client as rudder
import segment.analytics.client as segment
from polytomic import Polytomic

import support


@pytest.fixture(scope="module")
def token(server, admin: Polytomic) -> str:
    """An API key of a fresh organization's admin."""
    suffix = support.random_suffix()
    org = admin.organization.create(name=f"sdk-events-{suffix}").data
    user = admin.users.create(org.id, email=f"admin-{suffix}@example.com").data
    return admin.users.create_api_key(org.id, user.id).data.value


def api(server, token: str, method: str, path: str, body: dict | None = None) -> dict:
    answer = requests.request(method, f"{server.base_url}/api{path}", json=body,
                              headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


@pytest.fixture(scope="module")
def sources(server, token: str) -> dict[str, tuple[str, str]]:
    """Two event sources, name → (id, write key), each routed to its own table in schema
    `polku` of the destination database with the user's name, and telling Slack of new users."""
    configuration = server.postgres_configuration(server.destination_db, "pw-events-warehouse")
    warehouse = api(server, token, "POST", "/connections",
                    {"name": "warehouse", "type": "postgresql", "configuration": configuration})
    made = {}
    for name in ("server", "client"):
        rules = [{"events": ["user.first_named"]}]
        data = api(server, token, "POST", "/event_sources", {"name": name, "notifications": rules})
        api(server, token, "POST", f"/event_sources/{data['id']}/routes",
            {"connection_id": warehouse["id"], "schema": "polku", "enrichment": ["name"]})
        made[name] = (data["id"], data["write_key"])
    return made


def wait_for(check, timeout: float = 60.0):
    """`check()` once it is truthy, polled every 0.2 s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)
    return value


def warehouse_rows(server, sql: str) -> list[tuple]:
    with server.connect(server.destination_db) as conn:
        try:
            return conn.execute(sql).fetchall()
        except Exception:  # the table is not there yet
            return []


def stored(server, source_id: str) -> dict[str, dict]:
    """The stored messages of one source, by messageId."""
    with server.connect(server.state_db) as conn:
        tables = [f"events_{row[0]}" for row in conn.execute("select id from event_partitions").fetchall()]
        events = {}
        for table in tables:
            for message_id, message in conn.execute(
                f"select message_id, convert_from(message, 'UTF8') from {table} where source_id = %s",
                (source_id,),
            ).fetchall():
                assert message_id not in events, f"{message_id} stored twice"
                events[message_id] = json.loads(message)
        return events


def send_all(client) -> None:
    """Tracks, identifies, pages and groups for two users, then waits for them to be sent."""
    for user in ("u1", "u2"):
        client.identify(user, {"name": f"name of {user}", "email": f"{user}@example.com"})
        client.track(user, "Order Completed", {"revenue": 12.5, "items": [1, 2]})
        client.page(user, category="Docs", name="Install", properties={"path": "/install"})
        client.group(user, "g1", {"name": "Acme"})
    client.flush()


def test_segment_and_rudderstack_clients_events_are_stored_routed_and_named_once(server, sources, slack):
    errors = []
    on_error = lambda error, batch: errors.append(error)  # noqa: E731
    base = server.base_url
    (server_id, server_key), (client_id, client_key) = sources["server"], sources["client"]
    seg = segment.Client(server_key, host=base, on_error=on_error, max_retries=1)
    rud = rudder.Client(client_key, host=base, on_error=on_error, max_retries=1)  # gzip by default
    send_all(seg)
    send_all(rud)
    seg.shutdown()
    rud.shutdown()
    assert errors == [], errors

    for source_id, library in ((server_id, "analytics-python"), (client_id, "analytics-python")):
        events = stored(server, source_id)
        kinds = sorted(event["type"] for event in events.values())
        assert kinds == ["group"] * 2 + ["identify"] * 2 + ["page"] * 2 + ["track"] * 2, kinds
        for message_id, event in events.items():
            assert event["messageId"] == message_id
            assert event["context"]["library"]["name"] == library
            assert event["receivedAt"].endswith("Z") and event["timestamp"].endswith("Z"), event
        track = next(e for e in events.values() if e["type"] == "track")
        assert track["properties"] == {"revenue": 12.5, "items": [1, 2]}, track
    rudder_identify = next(e for e in stored(server, client_id).values() if e["type"] == "identify")
    assert rudder_identify["context"]["traits"]["name"].startswith("name of"), rudder_identify

    for table in ("server", "client"):
        rows = wait_for(lambda: len(r := warehouse_rows(
            server, f"select type, user_id, user_name, properties_revenue, properties_items from polku.{table}")) == 8 and r)
        tracks = sorted((user, name, float(revenue), items) for kind, user, name, revenue, items in rows if kind == "track")
        assert tracks == [("u1", "name of u1", 12.5, [1, 2]), ("u2", "name of u2", 12.5, [1, 2])], (table, rows)
    named = wait_for(lambda: len(slack.messages) >= 2 and list(slack.messages))
    time.sleep(2)  # anything more would have arrived by now
    texts = sorted(m["text"] for m in slack.messages if "name of" in m["text"])
    assert len(texts) == 2 and "u1 is name of u1" in texts[0] and "u2 is name of u2" in texts[1], slack.messages
    assert all(m["channel"] == "#polku" for m in named)


def test_slack_hears_every_new_user_once_past_its_rate_limit(server, token, sources, slack):
    """Three users named at once: the channel takes one message every 1.5 s, so Syncline's
    one per second meets a 429 and waits its Retry-After; each user is still announced once."""
    refused_before = slack.rate_limited
    _, key = sources["server"]
    seg = segment.Client(key, host=server.base_url, max_retries=1)
    for user in ("r1", "r2", "r3"):
        seg.identify(user, {"name": f"Rate {user}"})
    seg.flush()
    seg.shutdown()
    texts = wait_for(lambda: len(t := [m["text"] for m in slack.messages if "Rate r" in m["text"]]) >= 3 and t, 30)
    time.sleep(2)
    assert sorted(m["text"] for m in slack.messages if "Rate r" in m["text"]) == sorted(texts)
    assert len(texts) == 3, texts
    assert slack.rate_limited > refused_before, "the stand-in's limit was met and waited out"


def test_a_channel_the_bot_is_not_in_is_recorded_and_not_retried(server, token, sources, slack):
    source_id, key = sources["client"]
    api(server, token, "PUT", f"/event_sources/{source_id}",
        {"name": "client", "notifications": [{"events": ["user.first_named"], "channel": "#elsewhere"}]})
    rud = rudder.Client(key, host=server.base_url, max_retries=1)
    rud.identify("x1", {"name": "Nowhere"})
    rud.flush()
    rud.shutdown()

    def recorded():
        with server.connect(server.state_db) as conn:
            return conn.execute("select notified_at is not null, last_error, attempts from event_log "
                                "where kind = 'user.first_named' and subject = 'x1'").fetchone()
    notified, error, attempts = wait_for(lambda: (row := recorded()) and row[1] and row)
    assert notified and "not_in_channel" in error and attempts == 1, (notified, error, attempts)
    assert not [m for m in slack.messages if "Nowhere" in m["text"]]


def test_rules_with_their_own_bot_token_or_an_incoming_webhook_post_there(server, token, sources, slack):
    source_id, key = sources["client"]
    rules = [{"events": ["user.first_named"], "channel": "#own", "token": "xoxb-own-bot"},
             {"events": ["user.first_named"], "webhook_url": f"{slack.url}/services/T1/B1/hook"}]
    shown = api(server, token, "PUT", f"/event_sources/{source_id}", {"name": "client", "notifications": rules})
    assert shown["notifications"] == [
        {"events": ["user.first_named"], "channel": "#own", "secret": "token"},
        {"events": ["user.first_named"], "secret": "webhook_url"},
    ], "secrets are never shown"
    assert "xoxb-own-bot" not in json.dumps(shown) and "/services/" not in json.dumps(shown)
    rud = rudder.Client(key, host=server.base_url, max_retries=1)
    rud.identify("w1", {"name": "Hooked"})
    rud.flush()
    rud.shutdown()
    heard = wait_for(lambda: len(h := [m for m in slack.messages if "Hooked" in m["text"]]) >= 2 and h, 30)
    time.sleep(2)
    assert sorted(m["channel"] for m in slack.messages if "Hooked" in m["text"]) == ["#hooked", "#own"], heard
    with server.connect(server.state_db) as conn:
        sealed = conn.execute("select notification_secrets from event_sources where id = %s", (source_id,)).fetchone()[0]
    assert sealed and b"xoxb-own-bot" not in bytes(sealed), "the rule's secrets are sealed"


def test_a_wrong_write_key_is_refused_and_not_retried_forever(server):
    errors = []
    seg = segment.Client("wk_not_a_key", host=server.base_url, sync_mode=True,
                         on_error=lambda error, batch: errors.append(error))
    with pytest.raises(Exception) as refused:
        seg.track("u", "E")
    assert "401" in str(refused.value) or "write key" in str(refused.value), refused.value
