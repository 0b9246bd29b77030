"""Execution events through the official Polytomic SDK (`client.events`):

* a model sync run leaves `sync.running` then `sync.completed`, with the documented payload
  (the sync's name, target connection, schedule, counts);
* a failing run leaves `sync.failed` with its error;
* `events.get_types` lists every type, `events.list` filters by type, time and limit, refuses
  what it cannot answer with a 422 naming the parameter, and shows an organization only its own.
"""

from __future__ import annotations

import datetime as dt

from polytomic import Polytomic

import support
from test_bulk_sync_api import refused
from test_model_sync_api import Setup, create_sync, destination_table, setup  # noqa: F401 (the fixture)
from test_model_sync_flow import EXECUTION_TIMEOUT_S, wait_for_execution

TYPES = {"sync.running", "sync.completed", "sync.completed_with_errors", "sync.failed", "sync.canceled",
         "bulk_sync.running", "bulk_sync.completed", "bulk_sync.completed_with_error", "bulk_sync.failed",
         "bulk_sync.canceled"}


def run(setup: Setup, sync_id: str):
    started = setup.pt.model_sync.start(sync_id).data
    return wait_for_execution(setup.pt, sync_id, started.id, EXECUTION_TIMEOUT_S)


def events_of(pt: Polytomic, execution_id: str, **filters) -> list:
    """The events of execution `execution_id`, oldest first, as (type, payload as a dict)."""
    listed = pt.events.list(limit=100, **filters).data or []
    payloads = [(e.type, e.event.dict() if e.event else {}) for e in listed]
    return [(t, p) for t, p in payloads if p.get("execution_id") == execution_id]


def test_a_run_leaves_running_then_completed_with_the_documented_payload(setup: Setup):
    table = f"events_ok_{setup.suffix}"
    sync_id = create_sync(setup, destination_table(setup, table), people=f"(select * from {setup.people} "
                                                                         f"where email is not null) p")
    done = run(setup, sync_id)
    assert done.status == "completed", done
    events = events_of(setup.pt, done.id)
    assert [t for t, _ in events] == ["sync.running", "sync.completed"], events
    completed = events[1][1]
    sync = setup.pt.model_sync.get(sync_id).data
    assert completed["sync_id"] == sync_id and completed["sync_name"] == sync.name, completed
    assert completed["target_connection_id"] == setup.destination_id, completed
    assert completed["organization_id"] == setup.org_id and completed["trigger"] == "manual", completed
    assert (completed["inserted_count"], completed["updated_count"], completed["error_count"]) == (9, 0, 0), completed
    assert completed["schedule"]["frequency"] == "manual" and completed["status"] == "completed", completed


def test_a_failing_run_leaves_failed_with_its_error(setup: Setup):
    sync_id = create_sync(setup, destination_table(setup, f"events_fail_{setup.suffix}"))
    with setup.server.connect(setup.server.destination_db) as conn:
        conn.execute(f"drop table events_fail_{setup.suffix}")
    done = run(setup, sync_id)
    assert done.status == "failed", done
    events = events_of(setup.pt, done.id)
    assert [t for t, _ in events][-1] == "sync.failed", events
    assert "events_fail" in (events[-1][1].get("error") or ""), events


def test_types_and_filters(setup: Setup):
    assert set(setup.pt.events.get_types().data) == TYPES
    before = dt.datetime.now(dt.timezone.utc)
    sync_id = create_sync(setup, destination_table(setup, f"events_filter_{setup.suffix}"))
    done = run(setup, sync_id)
    only_running = setup.pt.events.list(type="sync.running", starting_after=before, limit=100).data
    assert [e.type for e in only_running] == ["sync.running"], only_running
    assert setup.pt.events.list(ending_before=before, limit=100).data is not None
    assert all(e.created_at < before for e in setup.pt.events.list(ending_before=before, limit=100).data)
    assert len(setup.pt.events.list(limit=1).data) == 1
    assert events_of(setup.pt, done.id, starting_after=before)[0][0] == "sync.running"
    refused(setup.pt.events.list, type="sync.exploded", field="type", what="an unknown type")
    refused(setup.pt.events.list, limit=101, field="limit", what="a limit over 100")

    suffix = support.random_suffix()
    other = setup.admin.organization.create(name=f"sdk-events-other-{suffix}").data
    try:
        user = setup.admin.users.create(other.id, email=f"other-{suffix}@example.com").data
        key = setup.admin.users.create_api_key(other.id, user.id).data
        outsider = Polytomic(base_url=setup.server.base_url, token=key.value, max_retries=0)
        assert outsider.events.list(limit=100).data == [], "another organization sees none of these events"
        refused(outsider.events.list, organization_id=setup.org_id, status=404, what="another organization's events")
    finally:
        setup.admin.organization.delete(other.id)
