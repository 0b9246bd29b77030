"""The bulk sync API surface, driven through the official Polytomic SDK (polytomic==25.9.10):
every ``client.bulk_sync`` method (32) and the 9 ``client.schemas`` methods, against a PostgreSQL source with two
tables in a database of its own and a PostgreSQL destination.

The engine that runs bulk syncs is not part of this surface: a started execution stays queued
(enough for the 409 on a second start and for cancels). Where a shape needs what the engine
writes (per-schema progress, console log lines), the test writes those rows into the state
database for an execution that already ended, as the engine would have, and reads them back
through the API.

The tests run in file order and share one module-scoped `flow`; a step whose inputs were not
produced by an earlier (failed) step is skipped with a note.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import socket
import threading
import time
from typing import Iterator, Optional

import psycopg
import pytest
import requests
from polytomic import (
    BulkSchema,
    BulkSyncAdditionalScheduleRequest,
    BulkSyncDefaultScheduleRequest,
    BulkSyncScheduleApi,
    Polytomic,
    SchemaConfiguration,
    SchemaPrimaryKeyOverrideInput,
    UpdateBulkField,
    UserFieldRequest,
)
from polytomic.core.api_error import ApiError

import support

SOURCE_SETUP = """
create table users (
    id bigint primary key,
    email text not null,
    name text,
    updated_at timestamptz not null
);
insert into users select g, 'user' || g || '@example.com', 'User ' || g,
                         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour'
from generate_series(1, 25) as g;
create table orders (
    id integer primary key,
    user_id bigint not null,
    total numeric(10, 2),
    placed_at timestamp not null,
    note text
);
insert into orders select g, 1 + g % 25, g * 1.25, timestamp '2024-02-01' + g * interval '1 minute', null
from generate_series(1, 40) as g;
"""


@dataclasses.dataclass
class Flow:
    server: object
    admin: Polytomic
    suffix: str
    source_db: str
    destination_db: str
    org_id: Optional[str] = None
    user_id: Optional[str] = None
    pt: Optional[Polytomic] = None
    token: Optional[str] = None
    src_id: Optional[str] = None
    dst_id: Optional[str] = None
    sync_id: Optional[str] = None
    daily_schedule_id: Optional[str] = None
    execution_id: Optional[str] = None
    stall_id: Optional[str] = None
    stalled_sync_id: Optional[str] = None
    cleaned_up: bool = False

    def need(self, *names: str) -> None:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            pytest.skip(f"needs {', '.join(missing)} from an earlier step, which failed")

    def state(self) -> psycopg.Connection:
        return self.server.connect(self.server.state_db)


@pytest.fixture(scope="module")
def flow(server, admin):
    suffix = support.random_suffix()
    source_db, destination_db = f"sdk_bulk_src_{suffix}", f"sdk_bulk_dst_{suffix}"
    support.create_databases(server.dsn, [source_db, destination_db])
    with server.connect(source_db) as conn:
        conn.execute(SOURCE_SETUP)
    state = Flow(server=server, admin=admin, suffix=suffix, source_db=source_db, destination_db=destination_db)
    try:
        yield state
    finally:
        if not state.cleaned_up and state.org_id:
            try:
                admin.organization.delete(state.org_id)
            except Exception:  # noqa: BLE001 - cleanup after an already-reported failure
                pass
        support.drop_databases(server.dsn, [source_db, destination_db])


@pytest.fixture(scope="module")
def tarpit() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (kept open while the module runs)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


# ----------------------------------------------------------------------------- helpers


def body_of(err: ApiError) -> dict:
    body = err.body
    if hasattr(body, "dict"):
        body = body.dict()
    return body if isinstance(body, dict) else {"message": str(body)}


def refused(call, *args, status: int = 422, field: Optional[str] = None, says: str = "", what: str, **kwargs) -> dict:
    """Call an SDK method that must fail with `status`, naming `field` in the error metadata and
    saying `says`; returns the error body."""
    try:
        result = call(*args, **kwargs)
    except ApiError as err:
        body = body_of(err)
        assert err.status_code == status, f"{what}: expected HTTP {status}, got {err.status_code}: {body}"
        if field is not None:
            assert (body.get("metadata") or {}).get("field") == field, f"{what}: error names no {field!r}: {body}"
        assert says in (body.get("message") or ""), f"{what}: message should say {says!r}: {body}"
        return body
    pytest.fail(f"{what}: expected HTTP {status}, but the call succeeded: {result!r}"[:2000])


def create_body(flow: Flow, **changes) -> dict:
    body = dict(
        name="pg -> pg bulk",
        source_connection_id=flow.src_id,
        destination_connection_id=flow.dst_id,
        destination_configuration={"schema": "bulk_out"},
        default_schedule=BulkSyncDefaultScheduleRequest(frequency="manual"),
        mode="replicate",
    )
    body.update(changes)
    return body


def fields_of(schema) -> dict:
    return {f.id: f for f in schema.fields or []}


# ------------------------------------------------------------------------------- steps


def test_organization_and_connections(flow: Flow):
    admin = flow.admin
    org = admin.organization.create(name=f"bulk-{flow.suffix}")
    flow.org_id = org.data.id
    user = admin.users.create(flow.org_id, email=f"bulk-{flow.suffix}@example.com")
    flow.user_id = user.data.id
    key = admin.users.create_api_key(flow.org_id, flow.user_id)
    flow.token = key.data.value
    # No automatic retries: the statuses asserted here surface at once.
    flow.pt = Polytomic(base_url=flow.server.base_url, token=flow.token, max_retries=0)
    password = f"bulk-pw-{secrets.token_hex(8)}"
    src = flow.pt.connections.create(
        name="bulk-src", type="postgresql", configuration=flow.server.postgres_configuration(flow.source_db, password)
    )
    dst = flow.pt.connections.create(
        name="bulk-dst",
        type="postgresql",
        configuration=flow.server.postgres_configuration(flow.destination_db, password),
    )
    flow.src_id, flow.dst_id = src.data.id, dst.data.id


def test_schema_cache_starts_empty(flow: Flow):
    flow.need("src_id")
    status = flow.pt.schemas.get_status(flow.src_id).data
    assert status.cache_status == "none", f"schemas.get_status before any discovery: {status!r}"
    assert status.last_refresh_finished is None


def test_get_source_lists_the_tables_with_fields(flow: Flow):
    flow.need("src_id")
    source = flow.pt.bulk_sync.get_source(flow.src_id, include_fields=True).data
    schemas = {s.id: s for s in source.schemas or []}
    assert set(schemas) == {"public.users", "public.orders"}, f"get_source schemas: {list(schemas)}"
    assert source.capabilities.supports_tracking_fields is True, f"capabilities: {source.capabilities!r}"
    users = fields_of(schemas["public.users"])
    assert list(users) == ["id", "email", "name", "updated_at"], f"users fields in column order: {list(users)}"
    assert (users["id"].type, users["id"].remote_type, users["id"].is_primary_key) == ("number", "bigint", True)
    assert users["id"].source_primary_key is True and users["id"].primary_key_override is None
    assert (users["email"].type, users["email"].is_primary_key) == ("string", False)
    assert users["updated_at"].type == "datetime"
    assert fields_of(schemas["public.orders"])["total"].type == "number"
    bare = flow.pt.bulk_sync.get_source(flow.src_id).data
    assert all(s.fields is None for s in bare.schemas), "without include_fields the schemas carry no fields"
    status = flow.pt.schemas.get_status(flow.src_id).data
    assert status.cache_status == "fresh" and status.last_refresh_finished is not None, f"{status!r}"


def test_get_destination_describes_configuration_and_modes(flow: Flow):
    flow.need("dst_id")
    dest = flow.pt.bulk_sync.get_destination(flow.dst_id).data
    assert set(dest.configuration["properties"]) == {"schema", "soft_delete_column"}, dest.configuration
    assert [m.id for m in dest.modes] == ["replicate", "snapshot", "append"], dest.modes
    replicate = dest.modes[0]
    assert replicate.requires_identity is True and replicate.label == "Replicate", replicate
    assert dest.supported_resync_modes == ["refetch", "resync", "rebuild"]
    assert dest.supports_history_mode is False


def test_refresh_finds_a_new_column(flow: Flow):
    flow.need("src_id")
    with flow.server.connect(flow.source_db) as conn:
        conn.execute("alter table users add column plan text")
    before = flow.pt.schemas.get_status(flow.src_id).data.last_refresh_finished
    flow.pt.schemas.refresh(flow.src_id)
    deadline = time.monotonic() + 30
    while True:
        status = flow.pt.schemas.get_status(flow.src_id).data
        if status.cache_status == "fresh" and status.last_refresh_finished != before:
            break
        assert status.cache_status in {"refreshing", "fresh"}, f"refresh failed: {status!r}"
        assert time.monotonic() < deadline, f"the refresh did not finish: {status!r}"
        time.sleep(0.2)
    schema = flow.pt.schemas.get(flow.src_id, "public.users").data
    assert schema.id == "public.users" and "plan" in fields_of(schema), f"schemas.get after refresh: {schema!r}"
    refused(flow.pt.schemas.get, flow.src_id, "public.nothing", status=404, what="schemas.get of an unknown schema")


def test_records_are_a_sample_of_the_table(flow: Flow):
    flow.need("src_id")
    records = flow.pt.schemas.get_records(flow.src_id, "public.orders").data
    assert len(records) == 10, f"get_records answers 10 records: {records!r}"
    assert set(records[0]) == {"id", "user_id", "total", "placed_at", "note"}, records[0]
    ids = {r["id"] for r in records}
    assert ids <= set(range(1, 41)), ids


def test_primary_key_overrides(flow: Flow):
    flow.need("src_id")
    pt = flow.pt
    pt.schemas.set_primary_keys(
        flow.src_id,
        "public.orders",
        fields=[
            SchemaPrimaryKeyOverrideInput(field_id="user_id", is_primary_key=True),
            SchemaPrimaryKeyOverrideInput(field_id="id", is_primary_key=True),
        ],
    )
    fields = fields_of(pt.schemas.get(flow.src_id, "public.orders").data)
    assert [f for f in fields if fields[f].is_primary_key] == ["id", "user_id"], fields
    assert fields["user_id"].primary_key_override is True and fields["user_id"].source_primary_key is False
    assert fields["total"].primary_key_override is False, "with an override every field says whether it is in it"
    refused(
        pt.schemas.set_primary_keys,
        flow.src_id,
        "public.orders",
        fields=[SchemaPrimaryKeyOverrideInput(field_id="missing", is_primary_key=True)],
        field="fields[0].field_id",
        says="not a field of public.orders",
        what="set_primary_keys with an unknown field",
    )
    pt.schemas.reset_primary_keys(flow.src_id, "public.orders")
    fields = fields_of(pt.schemas.get(flow.src_id, "public.orders").data)
    assert [f for f in fields if fields[f].is_primary_key] == ["id"], fields
    assert fields["id"].primary_key_override is None, "after a reset no field carries an override"


def test_patch_field_edits_the_key_and_refuses_definitions(flow: Flow):
    flow.need("src_id")
    pt = flow.pt
    field = pt.schemas.patch_field(flow.src_id, "public.users", "email").data
    assert (field.id, field.type, field.is_primary_key) == ("email", "string", False), field
    field = pt.schemas.patch_field(
        flow.src_id,
        "public.users",
        "email",
        request_options={"additional_body_parameters": {"primary_key_override": True}},
    ).data
    assert field.is_primary_key is True and field.primary_key_override is True, field
    refused(
        pt.schemas.patch_field,
        flow.src_id,
        "public.users",
        "email",
        label="E-mail",
        field="label",
        says="user-defined fields are for API sources",
        what="patch_field with a label",
    )
    pt.schemas.reset_primary_keys(flow.src_id, "public.users")
    assert fields_of(pt.schemas.get(flow.src_id, "public.users").data)["email"].is_primary_key is False


def test_user_defined_fields_are_refused(flow: Flow):
    flow.need("src_id")
    refused(
        flow.pt.schemas.upsert_field,
        flow.src_id,
        "public.users",
        fields=[UserFieldRequest(field_id="full_name", label="Full name", type="string")],
        field="fields[0]",
        says="user-defined field \"full_name\"",
        what="upsert_field",
    )
    refused(
        flow.pt.schemas.delete_field,
        flow.src_id,
        "public.users",
        "email",
        field="field_id",
        says="no user-defined fields",
        what="delete_field",
    )


def test_create_refuses_what_the_engine_does_not_honour(flow: Flow):
    flow.need("src_id", "dst_id")
    create = flow.pt.bulk_sync.create
    cases = [
        (dict(schemas=["public.nothing"]), "schemas[0]", "not a schema of the source"),
        (dict(schemas=["public.users", SchemaConfiguration(id="public.orders", fields=["id", "nope"])]),
         "schemas[1].fields[1]", "not a field of public.orders"),
        (dict(schemas=[SchemaConfiguration(id="public.users", tracking_field="email")]),
         "schemas[0].tracking_field", "number, date or timestamp"),
        (dict(schemas=[SchemaConfiguration(id="public.users", partition_key="id")]),
         "schemas[0].partition_key", "cuts tables into partitions itself"),
        (dict(automatically_add_new_objects="all"), "automatically_add_new_objects", "must be none"),
        (dict(schemas=[{"id": "public.users", "filters": [{"field_id": "email", "function": "IsNull"}]}]),
         "schemas[0].filters", "not supported"),
        (dict(schemas=[{"id": "public.users", "history_enabled": True}]), "schemas[0].history_enabled", "history"),
        (dict(schemas=[{"id": "public.users", "data_cutoff_timestamp": "2024-01-01T00:00:00Z"}]),
         "schemas[0].data_cutoff_timestamp", "not supported"),
        (dict(schemas=[{"id": "public.users", "fields": [{"id": "email", "obfuscate": True}]}]),
         "schemas[0].fields[0].obfuscate", "not supported"),
        (dict(schemas=[{"id": "public.orders", "fields": ["total"]}]), "schemas[0].fields", "primary key field"),
        (dict(source_configuration={"replication_slot": "x"}), "source_configuration", "not supported"),
        (dict(data_cutoff_timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)), "data_cutoff_timestamp",
         "not supported"),
        (dict(disable_record_timestamps=False), "disable_record_timestamps", "must be true"),
        (dict(normalize_names="legacy"), "normalize_names", "legacy is not supported"),
        (dict(concurrency_limit=0), "concurrency_limit", "positive integer"),
        (dict(mode="snapshot", destination_configuration={"soft_delete_column": "deleted_at"}),
         "destination_configuration.soft_delete_column", "replicate mode only"),
        (dict(destination_configuration={"schema": "x", "bucket": "y"}), "destination_configuration.bucket",
         "not a setting"),
        (dict(additional_schedules=[BulkSyncAdditionalScheduleRequest(frequency="daily", selective_mode="incrementalFields")]),
         "additional_schedules[0].selective_mode", "not supported"),
        (dict(additional_schedules=[BulkSyncAdditionalScheduleRequest(frequency="daily", schemas=["public.nothing"])]),
         "additional_schedules[0].schemas[0]", "not an enabled schema"),
        (dict(default_schedule=BulkSyncDefaultScheduleRequest(frequency="hourly", minute="61")),
         "default_schedule.minute", "not valid"),
        (dict(default_schedule=BulkSyncDefaultScheduleRequest(frequency="runafter")), "default_schedule.frequency",
         "not supported"),
        (dict(destination_connection_id="0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f"), "destination_connection_id",
         "names no connection of this organization"),
    ]
    for changes, field, says in cases:
        refused(create, **create_body(flow, **changes), field=field, says=says, what=f"create with {changes}")
    assert flow.pt.bulk_sync.list().data == [], "nothing refused was stored"


def test_create_bulk_sync(flow: Flow):
    flow.need("src_id", "dst_id")
    created = flow.pt.bulk_sync.create(
        **create_body(
            flow,
            destination_configuration={"schema": "bulk_out", "soft_delete_column": "deleted_at"},
            active=True,
            schemas=["public.users", SchemaConfiguration(id="public.orders", fields=["id", "total"], tracking_field="placed_at")],
            additional_schedules=[
                BulkSyncAdditionalScheduleRequest(
                    frequency="daily", hour="3", minute="0", schemas=["public.orders"], resync_mode="refetch"
                )
            ],
            concurrency_limit=4,
            automatically_add_new_fields="none",
        )
    ).data
    flow.sync_id = created.id
    assert (created.name, created.mode, created.active) == ("pg -> pg bulk", "replicate", True), created
    assert created.organization_id == flow.org_id
    assert (created.source_connection_id, created.destination_connection_id) == (flow.src_id, flow.dst_id)
    assert created.destination_configuration == {"schema": "bulk_out", "soft_delete_column": "deleted_at"}
    assert created.default_schedule.frequency == "manual" and created.default_schedule.id == "default"
    daily = created.additional_schedules[0]
    assert (daily.frequency, daily.hour, daily.schemas, daily.resync_mode) == ("daily", "3", ["public.orders"], "refetch")
    assert daily.id, "additional schedules get an id"
    flow.daily_schedule_id = daily.id
    assert created.automatically_add_new_fields == "none" and created.automatically_add_new_objects == "none"
    assert (created.normalize_names, created.disable_record_timestamps, created.concurrency_limit) == ("enabled", True, 4)
    assert created.source_configuration == {} and created.policies == []
    got = flow.pt.bulk_sync.get(flow.sync_id).data
    assert got == created, f"get answers what create did:\n{got!r}\n{created!r}"


def test_list_bulk_syncs(flow: Flow):
    flow.need("sync_id")
    listed = flow.pt.bulk_sync.list().data
    assert [s.id for s in listed] == [flow.sync_id], listed
    assert [s.id for s in flow.pt.bulk_sync.list(active=True).data] == [flow.sync_id]
    assert flow.pt.bulk_sync.list(active=False).data == []


def test_other_organizations_see_nothing(flow: Flow):
    flow.need("sync_id")
    other = flow.admin.organization.create(name=f"bulk-other-{flow.suffix}").data
    try:
        user = flow.admin.users.create(other.id, email=f"other-{flow.suffix}@example.com").data
        key = flow.admin.users.create_api_key(other.id, user.id).data.value
        stranger = Polytomic(base_url=flow.server.base_url, token=key, max_retries=0)
        refused(stranger.bulk_sync.get, flow.sync_id, status=404, what="another organization's bulk sync")
        refused(stranger.bulk_sync.schemas.list, flow.sync_id, status=404, what="its schemas")
        refused(stranger.bulk_sync.start, flow.sync_id, status=404, what="starting it")
        refused(stranger.bulk_sync.get_source, flow.src_id, status=404, what="its source's schemas")
        refused(stranger.bulk_sync.executions.get_ingest_console_logs, flow.src_id, status=404,
                what="the ingest log of its source")
        assert stranger.bulk_sync.list().data == []
        refused(
            stranger.bulk_sync.create,
            **create_body(flow),
            field="source_connection_id",
            says="names no connection of this organization",
            what="a bulk sync of another organization's connections",
        )
    finally:
        flow.admin.organization.delete(other.id)


def test_update_replaces_the_configuration_and_keeps_the_schemas(flow: Flow):
    flow.need("sync_id", "daily_schedule_id")
    pt = flow.pt
    current = pt.bulk_sync.get(flow.sync_id).data
    updated = pt.bulk_sync.update(
        flow.sync_id,
        **create_body(
            flow,
            name="renamed bulk",
            active=True,
            normalize_names="disabled",
            additional_schedules=[
                BulkSyncAdditionalScheduleRequest(
                    id=flow.daily_schedule_id, frequency="daily", hour="5", minute="30", schemas=["public.orders"]
                )
            ],
        ),
    ).data
    assert (updated.name, updated.normalize_names) == ("renamed bulk", "disabled"), updated
    assert updated.concurrency_limit is None, "an update replaces: the omitted limit is unset"
    assert updated.destination_configuration == {"schema": "bulk_out"}
    assert updated.created_at == current.created_at and updated.updated_at > current.updated_at
    daily = updated.additional_schedules[0]
    assert (daily.id, daily.hour, daily.resync_mode) == (flow.daily_schedule_id, "5", None), daily
    schemas = pt.bulk_sync.schemas.list(flow.sync_id).data
    assert [s.id for s in schemas] == ["public.orders", "public.users"], "omitted schemas stay as they were"
    refused(
        pt.bulk_sync.update,
        flow.sync_id,
        **create_body(flow, mode="append", destination_configuration={"soft_delete_column": "gone"}),
        field="destination_configuration.soft_delete_column",
        says="replicate mode only",
        what="update with a soft-delete column outside replicate mode",
    )


def test_bulk_schemas_list_get_update_patch(flow: Flow):
    flow.need("sync_id")
    schemas_api = flow.pt.bulk_sync.schemas
    listed = {s.id: s for s in schemas_api.list(flow.sync_id).data}
    assert listed["public.users"].output_name == "users" and listed["public.users"].enabled is True
    assert listed["public.orders"].tracking_field == "placed_at"
    assert listed["public.orders"].history_enabled is False
    orders = schemas_api.get(flow.sync_id, "public.orders").data
    enabled = {f.id: f.enabled for f in orders.fields}
    assert enabled == {"id": True, "user_id": False, "total": True, "placed_at": False, "note": False}, enabled
    assert orders.filters == []
    updated = schemas_api.update(
        flow.sync_id,
        "public.orders",
        fields=[UpdateBulkField(id="id"), UpdateBulkField(id="total", user_output_name="amount"), UpdateBulkField(id="placed_at")],
        tracking_field="placed_at",
        user_output_name="orders_copy",
    ).data
    assert (updated.output_name, updated.user_output_name, updated.partition_key) == ("orders_copy", "orders_copy", None)
    total = fields_of(updated)["total"]
    assert (total.enabled, total.output_name, total.user_output_name) == (True, "amount", "amount"), total
    refused(
        schemas_api.update,
        flow.sync_id,
        "public.orders",
        filters=[{"field_id": "total", "function": "GreaterThan", "value": 5}],
        field="filters",
        says="not supported",
        what="schemas.update with filters",
    )
    refused(schemas_api.get, flow.sync_id, "public.nothing", status=404, what="an unconfigured schema")
    patched = schemas_api.patch(flow.sync_id, schemas=[BulkSchema(id="public.users", enabled=False)]).data
    assert [(s.id, s.enabled) for s in patched] == [("public.users", False)], patched
    assert schemas_api.get(flow.sync_id, "public.orders").data.user_output_name == "orders_copy", "patch kept the rest"
    disabled = schemas_api.list(flow.sync_id, filters={"enabled": "false"}).data
    assert [s.id for s in disabled] == ["public.users"], disabled
    refused(
        schemas_api.patch,
        flow.sync_id,
        schemas=[BulkSchema(id="public.users", user_output_name="orders_copy")],
        field="schemas[0].user_output_name",
        says="would both be written to table",
        what="two schemas into one table",
    )
    refused(
        schemas_api.patch,
        flow.sync_id,
        schemas=[BulkSchema(id="public.orders", enabled=False)],
        field="schemas[0].enabled",
        says=f"is run by schedule {flow.daily_schedule_id}",
        what="disabling a schema an additional schedule runs",
    )
    schemas_api.patch(flow.sync_id, schemas=[BulkSchema(id="public.users", enabled=True)])
    assert [s.id for s in schemas_api.list(flow.sync_id, filters={"enabled": "true"}).data] == [
        "public.orders",
        "public.users",
    ]


def test_schedules(flow: Flow):
    flow.need("sync_id", "daily_schedule_id")
    schedules = flow.pt.bulk_sync.schedules
    listed = schedules.list(flow.sync_id).data
    assert [(s.is_default, s.frequency) for s in listed] == [(True, "manual"), (False, "daily")], listed
    assert listed[1].sync_id == flow.sync_id and listed[1].schemas == ["public.orders"]
    assert listed[1].selective_mode == "none" and listed[1].sync_mode == "normal"
    created = schedules.create(flow.sync_id, schedule=BulkSyncScheduleApi(frequency="weekly", day_of_week="Tue", hour="6", minute="0"))
    added = created.data
    raw = created.dict(by_alias=True)["data"]
    assert raw.get("id") and raw["dayOfWeek"] == "Tue", f"camelCase wire names and an id: {raw}"
    assert (added.frequency, added.day_of_week, added.is_default) == ("weekly", "Tue", False)
    got = schedules.get(flow.sync_id, raw["id"]).data
    assert got.frequency == "weekly"
    updated = schedules.update(flow.sync_id, raw["id"], schedule=BulkSyncScheduleApi(frequency="hourly", minute="15")).data
    assert (updated.frequency, updated.minute, updated.day_of_week) == ("hourly", "15", None), updated
    default = schedules.update(flow.sync_id, "default", schedule=BulkSyncScheduleApi(frequency="daily", hour="1", minute="0")).data
    assert default.is_default and default.frequency == "daily"
    with flow.state() as conn:
        rows = conn.execute(
            "select schedule_id, options from schedules where kind = 'bulk_sync' and subject_id = %s order by schedule_id",
            (flow.sync_id,),
        ).fetchall()
    assert {r[0] for r in rows} == {"default", flow.daily_schedule_id, raw["id"]}, rows
    assert dict(rows)[flow.daily_schedule_id] == {"schemas": ["public.orders"]}, "additional schedules run their schemas"
    schedules.delete(flow.sync_id, raw["id"])
    refused(schedules.get, flow.sync_id, raw["id"], status=404, what="a deleted schedule")
    refused(schedules.delete, flow.sync_id, "default", says="cannot be deleted", what="deleting the default schedule")
    flow.pt.bulk_sync.schedules.update(flow.sync_id, "default", schedule=BulkSyncScheduleApi(frequency="manual"))
    sync = flow.pt.bulk_sync.get(flow.sync_id).data
    assert sync.default_schedule.frequency == "manual" and len(sync.additional_schedules) == 1


def test_activate_and_status(flow: Flow):
    flow.need("sync_id")
    pt = flow.pt
    off = pt.bulk_sync.activate(flow.sync_id, active=False).data
    assert (off.id, off.active) == (flow.sync_id, False)
    assert pt.bulk_sync.get(flow.sync_id).data.active is False
    status = pt.bulk_sync.get_status(flow.sync_id).data
    assert status.next_execution_time is None, "an inactive sync is not scheduled"
    pt.bulk_sync.activate(flow.sync_id, active=True)
    status = pt.bulk_sync.get_status(flow.sync_id).data
    assert status.current_execution is None and status.last_execution is None, status
    assert status.ingestion_status is None
    next_run = status.next_execution_time
    assert next_run is not None and next_run.hour == 5 and next_run.minute == 30, f"the daily schedule: {next_run}"


def wait_until(flow: Flow, sync_id: str, execution_id: str, statuses: set[str], timeout: float = 60):
    """Polls executions.get until the execution's status is one of `statuses`; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        execution = flow.pt.bulk_sync.executions.get(sync_id, execution_id).data
        if execution.status in statuses:
            return execution
        assert time.monotonic() < deadline, f"execution not {statuses} after {timeout} s: {execution!r}"
        time.sleep(0.2)


def test_start_cancel_and_conflict(flow: Flow, tarpit: int):
    """Runs in progress, held there by a destination that accepts connections and never
    answers: the engine's plan waits for it (up to the connect deadline, then retries)."""
    flow.need("sync_id")
    pt = flow.pt
    configuration = flow.server.postgres_configuration(flow.destination_db, f"stall-pw-{secrets.token_hex(8)}")
    stall = pt.connections.create(
        name="bulk-stall", type="postgresql", configuration={**configuration, "port": tarpit}, validate=False
    ).data
    stalled = pt.bulk_sync.create(
        **create_body(flow, name="stalled", destination_connection_id=stall.id, active=False)
    ).data
    flow.stall_id, flow.stalled_sync_id = stall.id, stalled.id
    refused(
        pt.bulk_sync.start,
        stalled.id,
        request_options={"additional_body_parameters": {"resync": True}},
        status=400,
        field="resync",
        says="use resync_mode",
        what="the legacy resync flag",
    )
    refused(pt.bulk_sync.start, stalled.id, test=True, resync_mode="rebuild", status=400, field="resync_mode",
            says="cannot be a resync", what="a test resync")
    refused(pt.bulk_sync.start, stalled.id, schemas=["public.nothing"], status=400, field="schemas[0]",
            says="not an enabled schema", what="starting an unknown schema")

    started = pt.bulk_sync.start(stalled.id, fetch_mode="full", schemas=["public.orders"]).data
    assert started.status in {"scheduled", "running"}, started
    assert (started.fetch_mode, started.is_partial, started.is_test, started.is_resync) == ("full", True, False, False)
    assert (started.output_disposition, started.record_count) == ("retain", 0), started
    wait_until(flow, stalled.id, started.id, {"running"})
    conflict = refused(pt.bulk_sync.start, stalled.id, status=409, says="in progress", what="a second start")
    assert conflict["key"] == "conflict"
    status = pt.bulk_sync.get_status(stalled.id).data
    assert status.current_execution.id == started.id and status.current_execution.status == "running", status
    assert status.last_execution is None

    users = pt.bulk_sync.schemas.cancel(stalled.id, "public.users").data
    assert users.message == "the execution in progress does not run this schema", users
    orders = pt.bulk_sync.schemas.cancel(stalled.id, "public.orders").data
    assert orders.message == "cancel requested", "the run's only schema: the run is canceled"
    assert wait_until(flow, stalled.id, started.id, {"canceled", "failed"}).status == "canceled"
    assert pt.bulk_sync.cancel(stalled.id).data.message == "no execution is running"
    assert pt.bulk_sync.schemas.cancel(stalled.id, "public.orders").data.message == "no execution is running"

    again = pt.bulk_sync.start(stalled.id, resync_mode="rebuild").data
    assert (again.is_resync, again.output_disposition, again.is_partial) == (True, "rebuild", False), again
    wait_until(flow, stalled.id, again.id, {"running"})
    refused(pt.bulk_sync.schemas.cancel, stalled.id, "public.orders", status=409, says="being planned",
            what="cancelling a schema the engine is still planning")
    assert pt.bulk_sync.executions.cancel(stalled.id, again.id).data.message == "cancel requested"
    assert wait_until(flow, stalled.id, again.id, {"canceled", "failed"}).status == "canceled"
    assert pt.bulk_sync.executions.cancel(stalled.id, again.id).data.message == "no execution is running"

    test_run = pt.bulk_sync.start(stalled.id, test=True).data
    assert pt.bulk_sync.cancel(stalled.id).data.message == "cancel requested"
    assert wait_until(flow, stalled.id, test_run.id, {"canceled", "failed"}).status == "canceled"
    last = pt.bulk_sync.get_status(stalled.id).data
    assert last.current_execution is None and last.last_execution.id == test_run.id, last


def test_a_run_copies_the_selected_schemas(flow: Flow):
    flow.need("sync_id")
    pt = flow.pt
    started = pt.bulk_sync.start(flow.sync_id).data
    execution = wait_until(flow, flow.sync_id, started.id, {"completed", "errors", "failed", "canceled"})
    flow.execution_id = execution.id
    assert (execution.status, execution.record_count, execution.error_count) == ("completed", 65, 0), execution
    assert (execution.is_partial, execution.is_resync, execution.output_disposition) == (False, False, "retain")
    by_schema = {s.schema_: s for s in execution.schemas}
    orders, users = by_schema["public.orders"], by_schema["public.users"]
    assert (orders.output_name, orders.status, orders.record_count) == ("orders_copy", "completed", 40), orders
    assert (users.output_name, users.record_count, users.warning_count) == ("users", 25, 0), users
    progress = orders.dict()
    assert (progress["rows_written"], progress["rows_rejected"], progress["rows_skipped"]) == (40, 0, 0), progress
    assert progress["partitions"] == progress["partitions_committed"] >= 1, progress
    assert progress["rows_per_second"] > 0 and progress["eta_seconds"] is None, progress
    with flow.server.connect(flow.destination_db) as conn:
        copied = conn.execute("select id, amount, placed_at from bulk_out.orders_copy order by id").fetchall()
        columns = [c.name for c in conn.execute("select * from bulk_out.orders_copy limit 0").description]
    with flow.server.connect(flow.source_db) as conn:
        source = conn.execute("select id, total, placed_at from orders order by id").fetchall()
    assert copied == source, "the selected fields, under their output names"
    assert columns == ["id", "amount", "placed_at"], columns
    status = pt.bulk_sync.get_status(flow.sync_id).data
    assert status.current_execution is None and status.last_execution.id == execution.id, status
    test_run = pt.bulk_sync.start(flow.sync_id, test=True, schemas=["public.users"]).data
    assert test_run.is_test is True and test_run.is_partial is True
    assert wait_until(flow, flow.sync_id, test_run.id, {"completed", "errors", "failed", "canceled"}).is_test


def test_console_logs_and_their_download(flow: Flow):
    flow.need("sync_id", "execution_id")
    executions = flow.pt.bulk_sync.executions
    logs = executions.get_console_logs(flow.sync_id, flow.execution_id).data
    messages = [e.message for e in logs.entries]
    assert "public.orders planned: 1 partition(s) into orders_copy" in messages, messages
    assert any(m.startswith("public.users completed") for m in messages), messages
    assert all(e.id and e.level and e.timestamp for e in logs.entries), logs.entries
    assert logs.next_cursor == logs.entries[-1].id
    page = executions.get_console_logs(flow.sync_id, flow.execution_id, limit=1, after=logs.entries[0].id).data
    assert [e.message for e in page.entries] == messages[1:2] and page.next_cursor == logs.entries[1].id
    nothing_new = executions.get_console_logs(flow.sync_id, flow.execution_id, after=logs.next_cursor).data
    assert nothing_new.entries == [] and nothing_new.next_cursor == logs.next_cursor
    orders = executions.get_schema_console_logs(flow.sync_id, flow.execution_id, "public.orders").data
    assert [e.message for e in orders.entries] == [m for m in messages if m.startswith("public.orders")]

    files = executions.get_logs(flow.sync_id, flow.execution_id).data
    raw = files.dict(by_alias=True)
    assert set(raw) >= {"URLs", "Expires"} and len(files.ur_ls) == 1, raw
    assert files.expires > dt.datetime.now(dt.timezone.utc), files.expires
    text = requests.get(files.ur_ls[0], headers={"Authorization": f"Bearer {flow.token}"}, timeout=10)
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain"), text.text
    lines = text.text.splitlines()
    assert len(lines) == len(messages) and lines[0].endswith(f"INFO [public.orders] {messages[0]}"), lines
    assert requests.get(files.ur_ls[0], timeout=10).status_code == 401, "the log URL needs credentials"
    exported = executions.export_logs(flow.sync_id, flow.execution_id)
    assert exported.job.status == "done" and exported.job.type == "exportlogs", exported
    assert exported.data.url.split("?")[0] == files.ur_ls[0].split("?")[0], exported
    refused(executions.export_logs, flow.sync_id, flow.execution_id, notify=True, status=400, field="notify",
            says="notifications are not built", what="an export that would notify")


def test_executions_list_and_status_of_many(flow: Flow):
    flow.need("sync_id", "execution_id", "stalled_sync_id")
    executions = flow.pt.bulk_sync.executions
    listed = executions.list(flow.sync_id)
    assert len(listed.data) == 2 and listed.data[1].id == flow.execution_id, "newest first"
    assert listed.pagination.next_page_token == ""
    first = executions.list(flow.sync_id, limit=1, ascending=True)
    assert [e.id for e in first.data] == [flow.execution_id] and first.pagination.next_page_token
    second = executions.list(flow.sync_id, limit=1, ascending=True, page_token=first.pagination.next_page_token)
    assert len(second.data) == 1 and second.data[0].is_test is True
    assert len(executions.list(flow.sync_id, only_terminal=True).data) == 2
    got = executions.get(flow.sync_id, flow.execution_id).data
    assert got.id == flow.execution_id and got.record_count == 65
    refused(executions.get, flow.sync_id, flow.execution_id.replace(flow.execution_id[:8], "00000000"), status=404,
            what="an execution of another id")
    (status,) = executions.list_status(sync_id=flow.sync_id).data
    assert (status.sync_id, status.status) == (flow.sync_id, "completed"), status
    latest = {s.schema_: s for s in status.schemas}
    assert latest["public.orders"].execution_id == flow.execution_id and latest["public.orders"].record_count == 40
    assert latest["public.users"].record_count <= 5, "the test run read a few records of users"
    assert status.next_execution_time is not None, "the daily schedule"
    both = executions.list_status(sync_id=[flow.sync_id, flow.stalled_sync_id]).data
    assert {s.sync_id for s in both} == {flow.sync_id, flow.stalled_sync_id}
    assert {s.sync_id for s in executions.list_status(all_=True).data} == {flow.sync_id, flow.stalled_sync_id}
    assert [s.sync_id for s in executions.list_status(active=True).data] == [flow.sync_id], "the stalled one is inactive"
    refused(executions.list_status, sync_id=[flow.sync_id, "0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f"], status=404,
            what="a status of a bulk sync that does not exist")


def test_ingest_console_logs(flow: Flow):
    """The console log of the change captures reading from a connection. The test's source does
    not capture changes, so the lines are written here for a capture (`bulk_cdc`) execution of
    the sync, as the engine writes them."""
    flow.need("sync_id", "src_id", "dst_id", "org_id")
    capture = "7d3f1a52-6c1e-4b8e-9a41-0c2d5e6f7a8b"
    written = ["capture started at LSN 0/1000000", "applied 3 changes up to LSN 0/1000200",
               "capture paused at LSN 0/1000200: the bulk sync was deactivated"]
    with flow.state() as conn:
        conn.execute(
            """insert into executions (id, kind, subject_id, organization_id, status, trigger, started_at, completed_at)
               values (%s, 'bulk_cdc', %s, %s, 'completed', 'bulk_sync', now(), now())""",
            (capture, flow.sync_id, flow.org_id),
        )
        for message in written:
            conn.execute("insert into execution_logs (execution_id, level, message) values (%s, 'info', %s)",
                         (capture, message))
    executions = flow.pt.bulk_sync.executions
    logs = executions.get_ingest_console_logs(flow.src_id).data
    assert [e.message for e in logs.entries] == written, logs
    assert all(e.id and e.level == "info" and e.timestamp for e in logs.entries), logs.entries
    assert logs.next_cursor == logs.entries[-1].id
    page = executions.get_ingest_console_logs(flow.src_id, sync_id=flow.sync_id, limit=1, after=logs.entries[0].id).data
    assert [e.message for e in page.entries] == written[1:2] and page.next_cursor == logs.entries[1].id
    newest = executions.get_ingest_console_logs(flow.src_id, limit=2).data
    assert [e.message for e in newest.entries] == written[1:], "without a cursor, the newest lines"
    assert executions.get_ingest_console_logs(flow.dst_id).data.entries == [], "no sync reads from the destination"
    refused(executions.get_ingest_console_logs, flow.dst_id, sync_id=flow.sync_id, status=404,
            what="a sync that does not read from the connection")
    refused(executions.get_ingest_console_logs, "0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f", status=404,
            what="a connection that does not exist")
    refused(executions.get_ingest_console_logs, flow.src_id, after="x", status=400, field="after",
            what="a cursor that is not one")


def test_error_handling(flow: Flow):
    flow.need("sync_id")
    api = flow.pt.bulk_sync.error_handling
    assert api.get(flow.sync_id).data.ingestion_failure_threshold is None
    set_ = api.update(flow.sync_id, ingestion_failure_threshold=3, subscribers=[]).data
    assert (set_.ingestion_failure_threshold, set_.subscribers) == (3, [])
    with_owner = api.update(flow.sync_id, ingestion_failure_threshold=3, subscribers=["ops@example.com"]).data
    assert with_owner.subscribers == ["ops@example.com"], with_owner
    refused(api.update, flow.sync_id, subscribers=["ops"], field="subscribers[0]",
            says="must be an email address", what="a subscriber that is no address")
    flow.pt.bulk_sync.update(flow.sync_id, **create_body(flow, name="renamed again"))
    assert api.get(flow.sync_id).data.ingestion_failure_threshold == 3, "kept across updates of the sync"
    assert "error_handling" not in flow.pt.bulk_sync.get(flow.sync_id).data.dict()
    flow.pt.bulk_sync.get(flow.sync_id, refresh_schemas=True)


def test_delete_removes_everything(flow: Flow):
    flow.need("sync_id", "stalled_sync_id")
    pt = flow.pt
    pt.bulk_sync.delete(flow.sync_id)
    refused(pt.bulk_sync.get, flow.sync_id, status=404, what="a deleted bulk sync")
    refused(pt.bulk_sync.schemas.list, flow.sync_id, status=404, what="schemas of a deleted bulk sync")
    with flow.state() as conn:
        left = conn.execute(
            """select (select count(*) from executions where subject_id = %(id)s)
                    + (select count(*) from schedules where subject_id = %(id)s)
                    + (select count(*) from bulk_sync_schemas where bulk_sync_id = %(id)s)""",
            {"id": flow.sync_id},
        ).fetchone()[0]
    assert left == 0, "executions, schedules and schemas went with the bulk sync"
    pt.bulk_sync.delete(flow.stalled_sync_id)
    for connection in (flow.src_id, flow.dst_id, flow.stall_id):
        pt.connections.delete(connection)
    flow.admin.users.delete(flow.org_id, flow.user_id)
    flow.admin.organization.delete(flow.org_id)
    flow.cleaned_up = True
