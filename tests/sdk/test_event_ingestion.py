"""Segment's and RudderStack's Python clients, unmodified, send tracks, identifies, pages and
groups to Syncline's `/v1` tracking API through two event sources, `server` and `client`; every
event they were told was accepted is in the event store, once, with its source, normalized
(`receivedAt` stamped, `messageId` kept), and rudder-sdk-python's gzip bodies are read.
"""

from __future__ import annotations

import json

import pytest
import requests
import rudderstack.analytics.client as rudder
import segment.analytics.client as segment
from polytomic import Polytomic

import support


@pytest.fixture(scope="module")
def sources(server, admin: Polytomic) -> dict[str, tuple[str, str]]:
    """Two event sources of a fresh organization: name → (id, write key)."""
    suffix = support.random_suffix()
    org = admin.organization.create(name=f"sdk-events-{suffix}").data
    user = admin.users.create(org.id, email=f"admin-{suffix}@example.com").data
    token = admin.users.create_api_key(org.id, user.id).data.value
    made = {}
    for name in ("server", "client"):
        answer = requests.post(f"{server.base_url}/api/event_sources", json={"name": name},
                               headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        made[name] = (data["id"], data["write_key"])
    return made


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


def test_segment_and_rudderstack_clients_events_are_stored_once_per_source(server, sources):
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


def test_a_wrong_write_key_is_refused_and_not_retried_forever(server):
    errors = []
    seg = segment.Client("wk_not_a_key", host=server.base_url, sync_mode=True,
                         on_error=lambda error, batch: errors.append(error))
    with pytest.raises(Exception) as refused:
        seg.track("u", "E")
    assert "401" in str(refused.value) or "write key" in str(refused.value), refused.value
