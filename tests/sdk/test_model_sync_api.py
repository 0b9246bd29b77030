"""Model-sync source discovery, error handling and console logs through the official Polytomic
SDK, with a PostgreSQL source and destination:

* `model_sync.get_source` (the items of a model configuration, with the tables) and
  `get_source_fields` (the fields of a query or a table; a bad query is a 422 naming it);
* `model_sync.error_handling.get/update`: `auto_retry_record_errors` round trip and what the
  engine does with it — a record the destination rejects (a NOT NULL column) is sent again on
  the next run when on, and only once it changed when off, also across a run that waited for
  approval — and the 422s for what cannot be honoured (warning notifications, bad addresses);
* `model_sync.executions.get_console_logs`: the stage lines of a run with their counts, paged
  with `after`, holding no values of records.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest
import requests
from polytomic import Identity, ModelSyncV5Target, Polytomic, Schedule, Source, SyncField

import support
from test_bulk_sync_api import refused
from test_model_sync_flow import EXECUTION_TIMEOUT_S, TERMINAL, describe, wait_for_execution

PEOPLE = 10
# Person 4 has no email: the destination's NOT NULL column rejects it.
NO_EMAIL = 4


def person(i: int) -> tuple:
    """(id, email, score) of person `i`."""
    return (i, None if i == NO_EMAIL else f"person{i}@example.com", i * 10)


@dataclasses.dataclass
class Setup:
    server: object
    admin: Polytomic
    pt: Polytomic
    org_id: str
    source_id: str
    destination_id: str
    people: str
    suffix: str
    token: str

    def post(self, path: str) -> requests.Response:
        return requests.post(f"{self.server.base_url}{path}", headers={"Authorization": f"Bearer {self.token}"},
                             timeout=30)


@pytest.fixture(scope="module")
def setup(server, admin: Polytomic) -> Iterator[Setup]:
    suffix = support.random_suffix()
    org = admin.organization.create(name=f"sdk-msapi-{suffix}").data
    user = admin.users.create(org.id, email=f"admin-{suffix}@example.com").data
    key = admin.users.create_api_key(org.id, user.id).data
    pt = Polytomic(base_url=server.base_url, token=key.value, max_retries=0)
    people = f"msapi_people_{suffix}"
    with server.connect(server.source_db) as conn:
        conn.execute(f"create table {people} (id int primary key, email text, score int, seen timestamptz)")
        with conn.cursor() as cur:
            cur.executemany(f"insert into {people} (id, email, score) values (%s, %s, %s)",
                            [person(i) for i in range(1, PEOPLE + 1)])
    source = pt.connections.create(name="msapi source", type="postgresql",
                                   configuration=server.postgres_configuration(server.source_db, "pw-src")).data
    destination = pt.connections.create(
        name="msapi destination", type="postgresql",
        configuration=server.postgres_configuration(server.destination_db, "pw-dst")).data
    yield Setup(server, admin, pt, org.id, source.id, destination.id, people, suffix, key.value)
    admin.organization.delete(org.id)


def destination_table(setup: Setup, name: str) -> str:
    """A destination table whose email column refuses NULLs."""
    with setup.server.connect(setup.server.destination_db) as conn:
        conn.execute(f"create table {name} (id int primary key, email text not null, score int)")
    return f"public.{name}"


def destination_rows(setup: Setup, name: str) -> list[tuple]:
    with setup.server.connect(setup.server.destination_db) as conn:
        return [tuple(r) for r in conn.execute(f"select id, email, score from {name} order by id").fetchall()]


def sync_body(setup: Setup, table: str, model_id: str) -> dict:
    """A model sync of the people into `table`, on their id."""
    def source(field: str) -> Source:
        return Source(model_id=model_id, field=field)

    return dict(
        name=f"{table} {support.random_suffix()}",
        mode="updateOrCreate",
        active=True,
        schedule=Schedule(frequency="manual"),
        target=ModelSyncV5Target(connection_id=setup.destination_id, object=table),
        identity=Identity(source=source("id"), target="id", function="Equality"),
        fields=[SyncField(source=source(f), target=f) for f in ("email", "score")],
    )


def create_sync(setup: Setup, table: str, people: str = "", **options) -> str:
    """A sync of the people (of the module's table, or `people`) into `table`."""
    query = f"select id, email, score from {people or setup.people}"
    model = setup.pt.models.create(connection_id=setup.source_id, name=f"people {support.random_suffix()}",
                                   configuration={"query": query}).data
    return setup.pt.model_sync.create(**{**sync_body(setup, table, model.id), **options}).data.id


def start_and_wait(setup: Setup, sync_id: str, ends=TERMINAL):
    """Starts a run of the sync; returns the execution once its status is one of `ends`."""
    execution_id = setup.pt.model_sync.start(sync_id).data.id
    return wait_for_execution(setup.pt, sync_id, execution_id, EXECUTION_TIMEOUT_S, ends)


def run(setup: Setup, sync_id: str):
    """Runs the sync; the run must complete (with or without rejected records)."""
    done = start_and_wait(setup, sync_id)
    assert done.status in {"completed", "completed_with_errors"}, f"run did not complete: {describe(done)}"
    assert (done.status == "completed_with_errors") == (done.counts.error > 0), describe(done)
    return done


def test_get_source_offers_a_query_or_a_table(setup: Setup):
    meta = setup.pt.model_sync.get_source(setup.source_id).data
    assert meta.requires_one_of == ["query", "table"], meta
    assert meta.configuration["query"].type == "string", meta.configuration
    tables = meta.items["table"]
    assert tables.has_items is True, tables
    assert {"value": f"public.{setup.people}", "label": f"public.{setup.people}"} in tables.items, tables.items
    same = setup.pt.model_sync.get_source(setup.source_id, params={"table": [f"public.{setup.people}"]}).data
    assert same == meta, "no item depends on another"
    refused(setup.pt.model_sync.get_source, setup.source_id, params={"sheet": ["x"]}, field="params[sheet]",
            says="is not an item", what="an item the source does not have")


def test_get_source_refuses_what_cannot_be_a_source(setup: Setup):
    url = "s3://lake/prefix?region=eu-west-1&endpoint=http://127.0.0.1:9&allow_http=true"
    configuration = {"url": url, "format": "parquet", "aws_access_key_id": "k", "aws_secret_access_key": "s"}
    lake = setup.pt.connections.create(name="lake", type="files", validate=False, configuration=configuration).data
    refused(setup.pt.model_sync.get_source, lake.id, status=404, says="cannot be a model source",
            what="a files connection")
    refused(setup.pt.model_sync.get_source_fields, lake.id, params={"query": ["select 1"]}, status=404,
            what="fields of a files connection")
    refused(setup.pt.model_sync.get_source, "0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f", status=404,
            what="an unknown connection")


def test_get_source_fields_of_a_query_and_a_table(setup: Setup):
    query = f"select id, email, score * 1.5 as weighted, seen from {setup.people}"
    fields = setup.pt.model_sync.get_source_fields(setup.source_id, params={"query": [query]}).data
    shown = [(f.id, f.name, f.type, f.remote_type) for f in fields]
    assert shown == [
        ("id", "id", "number", "integer"),
        ("email", "email", "string", "text"),
        ("weighted", "weighted", "number", "numeric"),
        ("seen", "seen", "datetime", "timestamptz"),
    ], shown
    table = setup.pt.model_sync.get_source_fields(setup.source_id, params={"table": [f"public.{setup.people}"]}).data
    assert [f.name for f in table] == ["id", "email", "score", "seen"], table

    body = refused(setup.pt.model_sync.get_source_fields, setup.source_id,
                   params={"query": [f"select nope from {setup.people}"]}, field="params[query]",
                   says='column "nope" does not exist', what="a query naming a missing column")
    assert body["message"].startswith("params[query]: "), body
    refused(setup.pt.model_sync.get_source_fields, setup.source_id, params={"table": ["public.missing_table"]},
            field="params[table]", says="does not exist", what="a table that does not exist")
    refused(setup.pt.model_sync.get_source_fields, setup.source_id, field="params", says="give one of",
            what="no configuration")
    refused(setup.pt.model_sync.get_source_fields, setup.source_id,
            params={"query": ["select 1"], "table": [f"public.{setup.people}"]}, field="params[table]",
            says="give only one of", what="a query and a table")


def test_error_handling_round_trip_and_refusals(setup: Setup):
    sync_id = create_sync(setup, destination_table(setup, f"msapi_eh_{setup.suffix}"))
    handling = setup.pt.model_sync.error_handling
    defaults = handling.get(sync_id).data
    assert (defaults.auto_retry_record_errors, defaults.notify_on_record_errors, defaults.warning_notifications,
            defaults.subscribers) == (True, False, False, []), defaults
    assert handling.update(sync_id, auto_retry_record_errors=False).data.auto_retry_record_errors is False
    assert handling.get(sync_id).data.auto_retry_record_errors is False
    kept = handling.update(sync_id, notify_on_record_errors=False, subscribers=[]).data
    assert kept.auto_retry_record_errors is False, "an omitted setting stays as it is"

    refused(handling.update, sync_id, warning_notifications=True, field="warning_notifications",
            says="raises no warnings", what="warning notifications")
    refused(handling.update, sync_id, subscribers=["ops@example.com", "not an address"], field="subscribers[1]",
            says="must be an email address", what="a subscriber that is no email address")
    refused(handling.update, sync_id, auto_retry_record_errors=True, warning_notifications=True,
            field="warning_notifications", what="a refused body changes nothing")
    assert handling.get(sync_id).data.auto_retry_record_errors is False, "refused updates changed nothing"
    # Updating the sync itself keeps the setting.
    sync = setup.pt.model_sync.get(sync_id).data
    setup.pt.model_sync.update(sync_id, **sync_body(setup, sync.target.object, sync.model_ids[0]))
    assert handling.get(sync_id).data.auto_retry_record_errors is False

    member = setup.admin.users.create(setup.org_id, email=f"member-{setup.suffix}@example.com", role="member").data
    key = setup.admin.users.create_api_key(setup.org_id, member.id).data.value
    reader = Polytomic(base_url=setup.server.base_url, token=key, max_retries=0)
    assert reader.model_sync.error_handling.get(sync_id).data.auto_retry_record_errors is False
    refused(reader.model_sync.error_handling.update, sync_id, auto_retry_record_errors=True, status=403,
            what="a member updating the error handling")
    refused(handling.get, "0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f", status=404, what="an unknown sync")


def test_auto_retry_record_errors(setup: Setup):
    retrying = f"msapi_retry_{setup.suffix}"
    waiting = f"msapi_wait_{setup.suffix}"
    retry_sync = create_sync(setup, destination_table(setup, retrying))
    wait_sync = create_sync(setup, destination_table(setup, waiting))
    waits = setup.pt.model_sync.error_handling.update(wait_sync, auto_retry_record_errors=False).data
    assert waits.auto_retry_record_errors is False
    good = [person(i) for i in range(1, PEOPLE + 1) if i != NO_EMAIL]

    for sync_id, table in ((retry_sync, retrying), (wait_sync, waiting)):
        first = run(setup, sync_id).counts
        assert (first.insert, first.error) == (PEOPLE - 1, 1), first
        assert destination_rows(setup, table) == good

    # Nothing changed at the source: only the sync that retries sends the rejected record again.
    again = run(setup, retry_sync).counts
    assert (again.insert, again.update, again.error, again.total) == (0, 0, 1, 1), again
    held = run(setup, wait_sync).counts
    assert (held.insert, held.update, held.error, held.total) == (0, 0, 0, 0), held
    # Still unchanged: still held back, and still remembered as not delivered.
    assert run(setup, wait_sync).counts.total == 0

    # Once the record changes (it gets an email), both send it, as a record new to the destination.
    with setup.server.connect(setup.server.source_db) as conn:
        conn.execute(f"update {setup.people} set email = 'late@example.com' where id = {NO_EMAIL}")
    fixed = sorted(good + [(NO_EMAIL, "late@example.com", NO_EMAIL * 10)])
    for sync_id, table in ((retry_sync, retrying), (wait_sync, waiting)):
        counts = run(setup, sync_id).counts
        assert (counts.insert, counts.update, counts.error) == (1, 0, 0), counts
        assert destination_rows(setup, table) == fixed
    with setup.server.connect(setup.server.source_db) as conn:
        conn.execute(f"update {setup.people} set email = null where id = {NO_EMAIL}")


def test_held_records_stay_rejected_through_an_approved_run(setup: Setup):
    people = f"msapi_held_src_{setup.suffix}"
    with setup.server.connect(setup.server.source_db) as conn:
        conn.execute(f"create table {people} as select id, email, score from {setup.people}")
    table = f"msapi_held_{setup.suffix}"
    limits = {"blast_radius": {"max_delete_share": 0.5}}
    sync_id = create_sync(setup, destination_table(setup, table), people, mode="replace",
                          request_options={"additional_body_parameters": limits})
    setup.pt.model_sync.error_handling.update(sync_id, auto_retry_record_errors=False)
    first = run(setup, sync_id).counts
    assert (first.insert, first.error) == (PEOPLE - 1, 1), first

    # Deleting 6 of 10 is over the limit: the run waits, holding the unchanged rejected record.
    with setup.server.connect(setup.server.source_db) as conn:
        conn.execute(f"delete from {people} where id > {NO_EMAIL}")
    waiting = start_and_wait(setup, sync_id, ends=TERMINAL | {"waiting"})
    assert waiting.status == "waiting", describe(waiting)
    assert setup.post(f"/api/syncs/{sync_id}/executions/{waiting.id}/approve").status_code == 200
    approved = wait_for_execution(setup.pt, sync_id, waiting.id, EXECUTION_TIMEOUT_S)
    assert (approved.status, approved.counts.delete, approved.counts.error) == ("completed", PEOPLE - NO_EMAIL, 0)

    # The approved run still remembers the record as never delivered: once it changes, it is new.
    with setup.server.connect(setup.server.source_db) as conn:
        conn.execute(f"update {people} set email = 'late@example.com' where id = {NO_EMAIL}")
    fixed = run(setup, sync_id).counts
    assert (fixed.insert, fixed.update, fixed.error) == (1, 0, 0), fixed
    assert [r[0] for r in destination_rows(setup, table)] == list(range(1, NO_EMAIL + 1))


def test_console_logs_of_a_run(setup: Setup):
    table = f"msapi_log_{setup.suffix}"
    sync_id = create_sync(setup, destination_table(setup, table))
    execution = run(setup, sync_id)
    executions = setup.pt.model_sync.executions
    logs = executions.get_console_logs(sync_id, execution.id).data
    messages = [e.message for e in logs.entries]
    assert messages[0].startswith("started: model \"people ") and messages[0].endswith(
        f"into public.{table} on \"msapi destination\" (mode updateOrCreate)"), messages
    assert messages[1].startswith("the source estimates "), messages
    assert messages[2:] == [
        f"extract done: {PEOPLE} records read; {PEOPLE} new, 0 changed, 0 to delete; "
        "0 rejected (NULL or repeated identity)",
        f"load done: {PEOPLE - 1} inserted, 0 updated, 0 deleted, 1 rejected by the destination "
        "(sent again on the next run)",
        f"completed: {PEOPLE - 1} records written, 1 errors",
    ], messages
    assert [e.level for e in logs.entries] == ["info"] * 5
    assert all(e.id and e.timestamp for e in logs.entries), logs.entries
    assert not any("@example.com" in m for m in messages), "no value of a record is in the console log"
    assert logs.next_cursor == logs.entries[-1].id

    newest = executions.get_console_logs(sync_id, execution.id, limit=2).data
    assert [e.message for e in newest.entries] == messages[-2:], newest
    page = executions.get_console_logs(sync_id, execution.id, limit=2, after=logs.entries[0].id).data
    assert [e.message for e in page.entries] == messages[1:3] and page.next_cursor == logs.entries[2].id, page
    rest = executions.get_console_logs(sync_id, execution.id, after=page.next_cursor).data
    assert [e.message for e in rest.entries] == messages[3:] and rest.next_cursor == logs.next_cursor
    nothing = executions.get_console_logs(sync_id, execution.id, after=logs.next_cursor).data
    assert nothing.entries == [] and nothing.next_cursor == logs.next_cursor

    refused(executions.get_console_logs, sync_id, execution.id, after="x", status=400, field="after",
            what="a cursor that is not one")
    refused(executions.get_console_logs, sync_id, "0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f", status=404,
            what="an unknown execution")


def test_console_log_of_a_failed_run(setup: Setup):
    table = f"msapi_fail_{setup.suffix}"
    sync_id = create_sync(setup, destination_table(setup, table))
    with setup.server.connect(setup.server.destination_db) as conn:
        conn.execute(f"drop table {table}")
    done = start_and_wait(setup, sync_id)
    assert done.status == "failed", describe(done)
    entries = setup.pt.model_sync.executions.get_console_logs(sync_id, done.id).data.entries
    last = entries[-1]
    assert last.level == "error" and last.message.startswith("failed ("), entries
    assert done.errors and done.errors[0] in last.message, (done.errors, last.message)
