"""The tier-1 model-sync flow, driven through the official Polytomic SDK (polytomic==25.9.10).

This is the flow of shared/reference/polytomic-api.md §5, run against a real Syncline server
(see conftest.py) and real PostgreSQL source/destination databases:

    organization + user + API key (deployment key)  ->  two postgresql connections
    ->  SQL model  ->  target discovery  ->  model sync (updateOrCreate, identity on id)
    ->  run 1 inserts 500 rows  ->  run 2 updates 5 rows  ->  status / history / listing
    ->  typed errors (404, 401, 409 while running)  ->  delete everything

The tests run in file order and share one module-scoped `flow`; a step whose inputs were not
produced by an earlier (failed) step is skipped with a note rather than failing noisily.
Nothing here patches or wraps the SDK: what works here works for any SDK user.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
import uuid
from typing import Optional

import psycopg
import pytest
from polytomic import (
    Identity,
    ModelSyncV5Target,
    Polytomic,
    Schedule,
    Source,
    SyncField,
)
from polytomic.core.api_error import ApiError
from polytomic.errors import ConflictError, NotFoundError, UnauthorizedError

USERS_ROWS = 500
UPDATED_IDS = (7, 42, 99, 251, 499)
MAPPED_FIELDS = ("email", "name", "plan")
MODEL_COLUMNS = {"id", "email", "name", "plan"}
# Large enough that a run is still going when a second start arrives a few ms later.
BIG_ROWS = int(os.environ.get("SYNCLINE_SDK_BIG_ROWS", "200000"))
EXECUTION_TIMEOUT_S = 60
BIG_EXECUTION_TIMEOUT_S = 300
CONFLICT_ATTEMPTS = 3
TERMINAL = {"completed", "completed_with_errors", "failed", "canceled", "interrupted"}

SOURCE_SETUP = f"""
create table users (
    id bigint primary key,
    email text not null,
    name text,
    plan text,
    updated_at timestamptz
);
insert into users (id, email, name, plan, updated_at)
select g,
       'user' || g || '@example.com',
       case when g % 50 = 0 then null            -- some NULLs
            when g = 1 then 'Zoë O''Brien, "the first" 🚀'  -- quoting and non-ASCII
            else 'User ' || g end,
       (array['free', 'pro', 'team'])[1 + g % 3],
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'
from generate_series(1, {USERS_ROWS}) as g;

create table big (
    id bigint primary key,
    email text not null,
    name text,
    plan text
);
insert into big (id, email, name, plan)
select g, 'big' || g || '@example.com', 'Big user number ' || g || ' ' || md5(g::text),
       (array['free', 'pro', 'team'])[1 + g % 3]
from generate_series(1, {BIG_ROWS}) as g;
"""

DESTINATION_SETUP = """
create table users (id bigint primary key, email text not null, name text, plan text);
create table big (id bigint primary key, email text not null, name text, plan text);
"""


def _token(n: int = 8) -> str:
    return secrets.token_hex(n // 2)


@dataclasses.dataclass
class Flow:
    """State handed from one step of the flow to the next."""

    server: object
    admin: Polytomic
    suffix: str
    password: str
    user_email: str
    org_id: Optional[str] = None
    user_id: Optional[str] = None
    api_key: Optional[str] = None
    pt: Optional[Polytomic] = None
    src_id: Optional[str] = None
    dst_id: Optional[str] = None
    model_id: Optional[str] = None
    sync_id: Optional[str] = None
    first_execution_id: Optional[str] = None
    second_execution_id: Optional[str] = None
    big_model_id: Optional[str] = None
    big_sync_id: Optional[str] = None
    cleaned_up: bool = False

    def need(self, *names: str) -> None:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            pytest.skip(f"needs {', '.join(missing)} from an earlier step, which failed")


@pytest.fixture(scope="module")
def flow(server, admin):
    with server.connect(server.source_db) as conn:
        conn.execute(SOURCE_SETUP)
    with server.connect(server.destination_db) as conn:
        conn.execute(DESTINATION_SETUP)
    suffix = _token()
    state = Flow(
        server=server,
        admin=admin,
        suffix=suffix,
        password=f"secret-pw-{_token(16)}",
        user_email=f"admin-{suffix}@example.com",
    )
    yield state
    if not state.cleaned_up:
        _best_effort_cleanup(state)


def _best_effort_cleanup(state: Flow) -> None:
    """After a failure: stop what may still run and remove the organization."""
    pt = state.pt
    if pt is not None:
        for sync_id in (state.big_sync_id, state.sync_id):
            if sync_id:
                _ignore_errors(pt.model_sync.delete, sync_id)
        for model_id in (state.big_model_id, state.model_id):
            if model_id:
                _ignore_errors(pt.models.delete, model_id)
        for conn_id in (state.src_id, state.dst_id):
            if conn_id:
                _ignore_errors(pt.connections.delete, conn_id, force=True)
    if state.org_id:
        if state.user_id:
            _ignore_errors(state.admin.users.delete, state.org_id, state.user_id)
        _ignore_errors(state.admin.organization.delete, state.org_id)


def _ignore_errors(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - cleanup after an already-reported failure
        pass


# ----------------------------------------------------------------------------- helpers


def describe(execution) -> str:
    if execution is None:
        return "<no execution>"
    return (
        f"execution {execution.id}: status={execution.status!r} counts={execution.counts!r} "
        f"errors={execution.errors!r}"
    )


def wait_for_execution(pt: Polytomic, sync_id: str, execution_id: str, timeout: float, ends=TERMINAL):
    """Poll executions.get until the execution's status is one of `ends` (terminal); fail after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        execution = pt.model_sync.executions.get(sync_id, execution_id).data
        assert execution is not None, f"executions.get({sync_id}, {execution_id}) returned no data"
        assert execution.id == execution_id, (
            f"executions.get returned execution {execution.id!r}, asked for {execution_id!r}"
        )
        if execution.status in ends:
            return execution
        if time.monotonic() > deadline:
            pytest.fail(
                f"sync {sync_id}: execution not terminal after {timeout} s; last seen "
                f"{describe(execution)}"
            )
        time.sleep(0.5)


def expect_error(kind, call, *args, what: str, **kwargs) -> ApiError:
    """Call an SDK method that must raise `kind`; fail with a clear message otherwise."""
    try:
        result = call(*args, **kwargs)
    except kind as err:
        return err
    except ApiError as err:
        pytest.fail(
            f"{what}: expected {kind.__name__}, got {type(err).__name__} "
            f"(HTTP {err.status_code}): {err.body!r}"
        )
    pytest.fail(f"{what}: expected {kind.__name__}, but the call succeeded: {result!r}"[:2000])


def table_rows(dsn: str, table: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"select id, email, name, plan from {table} order by id").fetchall()


def assert_destination_matches_source(server, table: str) -> None:
    src = table_rows(server.source_dsn, table)
    dst = table_rows(server.destination_dsn, table)
    if src == dst:
        return
    src_by_id = {r[0]: r for r in src}
    dst_by_id = {r[0]: r for r in dst}
    missing = sorted(set(src_by_id) - set(dst_by_id))
    extra = sorted(set(dst_by_id) - set(src_by_id))
    differing = [(src_by_id[i], dst_by_id[i]) for i in sorted(set(src_by_id) & set(dst_by_id))
                 if src_by_id[i] != dst_by_id[i]]
    pytest.fail(
        f"destination {table} differs from source {table}: {len(src)} source rows, "
        f"{len(dst)} destination rows; missing ids {missing[:10]} ({len(missing)} in all), "
        f"unexpected ids {extra[:10]} ({len(extra)}), differing rows (source, destination) "
        f"{differing[:5]} ({len(differing)} in all)"
    )


def table_digest(dsn: str, table: str) -> tuple[int, Optional[str]]:
    """Row count and an order-independent digest of the synced columns (for big tables)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"select count(*), md5(string_agg(t::text, ',' order by t.id)) "
            f"from (select id, email, name, plan from {table}) as t"
        ).fetchone()


# ------------------------------------------------------------------------------- steps


def test_organization_user_and_api_key(flow: Flow):
    admin = flow.admin
    org_name = f"sdk-test-{flow.suffix}"
    org = admin.organization.create(name=org_name)
    assert org.data is not None and org.data.id, f"organization.create returned no id: {org!r}"
    assert org.data.name == org_name, f"organization name not echoed: {org.data!r}"
    flow.org_id = org.data.id

    listed = admin.organization.list().data or []
    assert flow.org_id in {o.id for o in listed}, (
        f"organization.list (deployment key) does not include the new org {flow.org_id}: "
        f"{[o.id for o in listed]}"
    )
    got = admin.organization.get(flow.org_id).data
    assert got is not None and got.id == flow.org_id and got.name == org_name, (
        f"organization.get({flow.org_id}) returned {got!r}"
    )

    user = admin.users.create(flow.org_id, email=flow.user_email)
    assert user.data is not None and user.data.id, f"users.create returned no id: {user!r}"
    assert user.data.email == flow.user_email, f"users.create echoed {user.data.email!r}"
    assert user.data.organization_id == flow.org_id, (
        f"new user belongs to {user.data.organization_id!r}, expected org {flow.org_id}"
    )
    flow.user_id = user.data.id

    key = admin.users.create_api_key(flow.org_id, flow.user_id)
    assert key.data is not None and key.data.value, f"users.create_api_key returned no key: {key!r}"
    assert key.data.value != flow.server.deployment_key, "API key must not be the deployment key"
    flow.api_key = key.data.value

    pt = Polytomic(base_url=flow.server.base_url, token=flow.api_key)
    me = pt.identity.get().data
    assert me is not None, "identity.get (GET /api/me) returned no data"
    assert me.organization_id == flow.org_id, (
        f"identity.get with the user's API key reports organization {me.organization_id!r}, "
        f"expected {flow.org_id}"
    )
    flow.pt = pt


def test_postgres_connections_never_return_the_password(flow: Flow):
    flow.need("pt")
    pt, server = flow.pt, flow.server

    created = {}
    for name, db in (("pg-src", server.source_db), ("pg-dst", server.destination_db)):
        raw = pt.connections.with_raw_response.create(
            name=name,
            type="postgresql",
            configuration=server.postgres_configuration(db, flow.password),
        )
        assert flow.password not in raw.response.text, (
            f"connections.create response for {name} contains the password in clear"
        )
        conn = raw.data.data
        assert conn is not None and conn.id, f"connections.create({name}) returned no id: {raw.data!r}"
        assert conn.name == name, f"connection name not echoed: {conn.name!r}"
        created[name] = (conn.id, db)
    flow.src_id = created["pg-src"][0]
    flow.dst_id = created["pg-dst"][0]

    listed = pt.connections.list().data or []
    assert {flow.src_id, flow.dst_id} <= {c.id for c in listed}, (
        f"connections.list does not include both new connections: {[c.id for c in listed]}"
    )
    raw_list = pt.connections.with_raw_response.list()
    assert flow.password not in raw_list.response.text, (
        "connections.list response contains a connection password in clear"
    )

    for name, (conn_id, db) in created.items():
        raw = pt.connections.with_raw_response.get(conn_id)
        assert raw.status_code == 200, f"connections.get({conn_id}) answered {raw.status_code}"
        assert flow.password not in raw.response.text, (
            f"connections.get({conn_id}) ({name}) returns the password in clear: "
            f"{raw.response.text[:500]}"
        )
        conn = raw.data.data
        assert conn is not None and conn.id == conn_id, f"connections.get({conn_id}) -> {conn!r}"
        assert conn.type is not None and conn.type.id == "postgresql", (
            f"connection {name} has type {conn.type!r}, expected id 'postgresql'"
        )
        config = conn.configuration or {}
        assert config.get("database") == db and config.get("hostname") == server.pg_host, (
            f"connection {name}: non-secret configuration not returned as given: {config!r}"
        )


def test_connection_types_include_postgresql(flow: Flow):
    flow.need("pt")
    types = {t.id: t for t in flow.pt.connections.get_types().data or []}
    assert "postgresql" in types, f"connections.get_types has no 'postgresql': {sorted(types)}"
    caps = types["postgresql"].capabilities
    assert caps.source is True and caps.destination is True, (
        f"postgresql must be usable as source and destination, capabilities = {caps!r}"
    )


def test_every_connection_type_schema_parses(flow: Flow):
    flow.need("pt")
    types = [t.id for t in flow.pt.connections.get_types().data or []]
    assert types, "connections.get_types lists no type"
    for type_id in types:
        # The SDK validates the document against its JsonschemaSchema model; a shape it does not
        # accept raises here.
        schema = flow.pt.connections.get_connection_type_schema(id=type_id)
        assert schema.properties, f"{type_id}: the schema has no properties: {schema!r}"
    pg = flow.pt.connections.get_connection_type_schema(id="postgresql")
    assert pg.properties["password"]["writeOnly"] is True, pg.properties["password"]


def test_parameter_values_list_the_servers_databases(flow: Flow):
    flow.need("pt", "src_id")
    server = flow.server
    draft = {"hostname": server.pg_host, "port": server.pg_port, "username": server.pg_user,
             "database": server.source_db, "ssl": False}
    found = flow.pt.connections.get_type_parameter_values(type="postgresql", field="database", parameters=draft)
    databases = [v.value for v in found.data["database"].values]
    assert server.source_db in databases and server.destination_db in databases, databases
    searched = flow.pt.connections.get_type_parameter_values(
        type="postgresql", field="database", parameters=draft, query=server.source_db
    )
    assert [v.value for v in searched.data["database"].values] == [server.source_db]
    saved = flow.pt.connections.get_parameter_values(id=flow.src_id)
    assert server.destination_db in [v.value for v in saved.data["database"].values], saved


def test_sql_model_exposes_query_columns(flow: Flow):
    flow.need("pt", "src_id")
    pt = flow.pt
    created = pt.models.create(
        connection_id=flow.src_id,
        name="users",
        configuration={"query": "select id, email, name, plan from users"},
        identifier="id",
    )
    assert created.data is not None and created.data.id, (
        f"models.create returned no model (job={created.job!r}); a synchronous create must "
        f"answer with data"
    )
    flow.model_id = created.data.id

    model = pt.models.get(flow.model_id).data
    assert model is not None and model.id == flow.model_id, f"models.get returned {model!r}"
    names = {f.name for f in model.fields or []}
    assert names == MODEL_COLUMNS, f"model fields are {sorted(names)}, expected {sorted(MODEL_COLUMNS)}"
    assert model.identifier == "id", f"model identifier is {model.identifier!r}, expected 'id'"
    assert model.connection_id == flow.src_id, (
        f"model connection_id is {model.connection_id!r}, expected {flow.src_id}"
    )
    listed = pt.models.list().data or []
    assert flow.model_id in {m.id for m in listed}, (
        f"models.list does not include model {flow.model_id}: {[m.id for m in listed]}"
    )


def test_destination_target_discovery(flow: Flow):
    flow.need("pt", "dst_id")
    pt = flow.pt
    objects = pt.model_sync.targets.list(flow.dst_id).data or []
    object_ids = {o.id for o in objects}
    assert "public.users" in object_ids, (
        f"model_sync.targets.list({flow.dst_id}) lacks 'public.users': {sorted(object_ids)}"
    )

    target = pt.model_sync.targets.get_target_fields(flow.dst_id, target="public.users").data
    assert target is not None, "targets.get_target_fields returned no data"
    columns = {f.id for f in target.fields or []}
    assert columns == MODEL_COLUMNS, (
        f"target fields of public.users are {sorted(columns)}, expected {sorted(MODEL_COLUMNS)}"
    )


def test_create_model_sync(flow: Flow):
    flow.need("pt", "model_id", "dst_id")
    pt, mid = flow.pt, flow.model_id
    name = f"users -> dw {flow.suffix}"
    created = pt.model_sync.create(
        name=name,
        mode="updateOrCreate",
        active=True,
        schedule=Schedule(frequency="manual"),
        target=ModelSyncV5Target(connection_id=flow.dst_id, object="public.users"),
        identity=Identity(source=Source(model_id=mid, field="id"), target="id", function="Equality"),
        fields=[SyncField(source=Source(model_id=mid, field=f), target=f) for f in MAPPED_FIELDS],
    )
    sync = created.data
    assert sync is not None and sync.id, f"model_sync.create returned no id: {created!r}"
    flow.sync_id = sync.id
    assert sync.mode == "updateOrCreate", f"sync mode is {sync.mode!r}"
    assert sync.target is not None and sync.target.connection_id == flow.dst_id, (
        f"sync target is {sync.target!r}, expected connection {flow.dst_id}"
    )
    assert sync.target.object == "public.users", f"sync target object is {sync.target.object!r}"
    assert {f.target for f in sync.fields or []} == set(MAPPED_FIELDS), (
        f"sync field targets are {[f.target for f in sync.fields or []]}"
    )
    assert sync.identity is not None and sync.identity.target == "id", (
        f"sync identity is {sync.identity!r}, expected target 'id'"
    )
    assert sync.identity.source.model_id == mid and sync.identity.source.field == "id", (
        f"sync identity source is {sync.identity.source!r}"
    )
    errors = [p for p in sync.problems or [] if getattr(p, "severity", None) == "error"]
    assert not errors, f"a valid sync was created with problems: {errors!r}"

    fetched = pt.model_sync.get(flow.sync_id).data
    assert fetched is not None and fetched.id == flow.sync_id and fetched.name == name, (
        f"model_sync.get({flow.sync_id}) returned {fetched!r}"
    )
    assert fetched.schedule is not None and fetched.schedule.frequency == "manual", (
        f"sync schedule is {fetched.schedule!r}, expected frequency 'manual'"
    )


def test_first_run_inserts_every_row(flow: Flow):
    flow.need("pt", "sync_id")
    pt = flow.pt
    started = pt.model_sync.start(flow.sync_id)
    assert started.data is not None and started.data.id, f"model_sync.start returned {started!r}"
    flow.first_execution_id = started.data.id

    done = wait_for_execution(pt, flow.sync_id, flow.first_execution_id, EXECUTION_TIMEOUT_S)
    assert done.status == "completed", f"first run did not complete: {describe(done)}"
    counts = done.counts
    assert counts is not None, f"completed execution has no counts: {describe(done)}"
    assert counts.insert == USERS_ROWS, f"first run inserted {counts.insert}, expected {USERS_ROWS}"
    assert counts.total == USERS_ROWS, f"first run total {counts.total}, expected {USERS_ROWS}"
    assert counts.error == 0, f"first run had {counts.error} record errors: {describe(done)}"
    assert counts.update in (0, None), f"first run reports {counts.update} updates, expected 0"
    assert_destination_matches_source(flow.server, "users")


def test_second_run_updates_only_changed_rows(flow: Flow):
    flow.need("pt", "sync_id", "first_execution_id")
    pt, server = flow.pt, flow.server
    with server.connect(server.source_db) as conn:
        changed = conn.execute(
            "update users set plan = 'enterprise', name = coalesce(name, '') || ' (upgraded)', "
            "updated_at = now() where id = any(%s)",
            (list(UPDATED_IDS),),
        ).rowcount
    assert changed == len(UPDATED_IDS), f"test setup: updated {changed} source rows"

    started = pt.model_sync.start(flow.sync_id)
    assert started.data is not None and started.data.id, f"model_sync.start returned {started!r}"
    assert started.data.id != flow.first_execution_id, "second start reused the first execution id"
    flow.second_execution_id = started.data.id

    done = wait_for_execution(pt, flow.sync_id, flow.second_execution_id, EXECUTION_TIMEOUT_S)
    assert done.status == "completed", f"second run did not complete: {describe(done)}"
    counts = done.counts
    assert counts is not None, f"completed execution has no counts: {describe(done)}"
    assert counts.update == len(UPDATED_IDS), (
        f"second run updated {counts.update} records, expected {len(UPDATED_IDS)}: {describe(done)}"
    )
    assert counts.insert == 0, f"second run inserted {counts.insert} records, expected 0"
    assert counts.error == 0, f"second run had {counts.error} record errors: {describe(done)}"
    assert_destination_matches_source(server, "users")


def test_status_history_and_listing(flow: Flow):
    flow.need("pt", "sync_id", "first_execution_id", "second_execution_id")
    pt = flow.pt
    status = pt.model_sync.get_status(flow.sync_id).data
    assert status is not None and status.last_execution is not None, (
        f"model_sync.get_status({flow.sync_id}) has no last_execution: {status!r}"
    )
    assert status.last_execution.id == flow.second_execution_id, (
        f"last_execution is {status.last_execution.id!r}, expected the second run "
        f"{flow.second_execution_id}"
    )
    assert status.last_execution.status == "completed", (
        f"last_execution status is {status.last_execution.status!r}"
    )

    history = pt.model_sync.executions.list(flow.sync_id).data or []
    ids = [e.id for e in history]
    assert ids == [flow.second_execution_id, flow.first_execution_id], (
        f"executions.list should return both runs newest first: got {ids}, expected "
        f"{[flow.second_execution_id, flow.first_execution_id]}"
    )

    page = pt.model_sync.list(limit=10)
    assert flow.sync_id in {s.id for s in page.data or []}, (
        f"model_sync.list(limit=10) does not include sync {flow.sync_id}: "
        f"{[s.id for s in page.data or []]}"
    )


def test_usage_names_the_syncs_using_a_connection(flow: Flow):
    flow.need("pt", "dst_id", "sync_id")
    usage = flow.pt.connections.get_usage(id=flow.dst_id).data
    syncs = {s.sync_id: s for s in usage.by_sync or []}
    assert flow.sync_id in syncs, usage
    assert syncs[flow.sync_id].total_calls >= 2 and syncs[flow.sync_id].last_run_at is not None, usage


def test_unknown_ids_raise_not_found(flow: Flow):
    flow.need("pt", "sync_id")
    pt = flow.pt
    missing = str(uuid.uuid4())
    err = expect_error(NotFoundError, pt.models.get, missing, what="models.get(unknown id)")
    assert err.status_code == 404, f"models.get(unknown id) status {err.status_code}"
    expect_error(NotFoundError, pt.model_sync.get, missing, what="model_sync.get(unknown id)")
    expect_error(NotFoundError, pt.connections.get, missing, what="connections.get(unknown id)")
    expect_error(
        NotFoundError,
        pt.model_sync.executions.get,
        flow.sync_id,
        missing,
        what="model_sync.executions.get(sync, unknown execution id)",
    )


def test_wrong_token_is_unauthorized(flow: Flow):
    bad = Polytomic(base_url=flow.server.base_url, token=f"not-a-key-{_token(24)}")
    err = expect_error(UnauthorizedError, bad.identity.get, what="identity.get with a wrong token")
    assert err.status_code == 401, f"identity.get with a wrong token: HTTP {err.status_code}"
    # polytomic 25.9.10 declares no 401 for connections.list (only 500), so the SDK raises its
    # base ApiError there rather than UnauthorizedError; the status must still be 401.
    err = expect_error(ApiError, bad.connections.list, what="connections.list with a wrong token")
    assert err.status_code == 401, (
        f"connections.list with a wrong token answered HTTP {err.status_code}, expected 401"
    )


def test_second_start_while_running_is_a_conflict(flow: Flow):
    """A start while an execution of the same sync is in flight answers 409 (ConflictError).

    Uses a separate client with max_retries=0: the SDK otherwise retries 409s. The `big`
    model makes each run long enough that the second start lands while the first one is
    still queued or running. If a run finished before the second start arrived, that start
    legitimately succeeds; the race is then retried (after changing every source row so the
    next run has real work), and the test fails if no 409 is seen in CONFLICT_ATTEMPTS tries.
    """
    flow.need("pt", "api_key", "src_id", "dst_id")
    pt, server = flow.pt, flow.server
    model = pt.models.create(
        connection_id=flow.src_id,
        name="big",
        configuration={"query": "select id, email, name, plan from big"},
        identifier="id",
    ).data
    assert model is not None and model.id, "models.create for the big model returned no data"
    flow.big_model_id = model.id
    sync = pt.model_sync.create(
        name=f"big -> dw {flow.suffix}",
        mode="updateOrCreate",
        active=True,
        schedule=Schedule(frequency="manual"),
        target=ModelSyncV5Target(connection_id=flow.dst_id, object="public.big"),
        identity=Identity(source=Source(model_id=model.id, field="id"), target="id", function="Equality"),
        fields=[SyncField(source=Source(model_id=model.id, field=f), target=f) for f in MAPPED_FIELDS],
    ).data
    assert sync is not None and sync.id, "model_sync.create for the big sync returned no data"
    flow.big_sync_id = sync.id

    racer = Polytomic(base_url=server.base_url, token=flow.api_key, max_retries=0)
    conflict: Optional[ConflictError] = None
    running_id: Optional[str] = None
    attempts: list[str] = []
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        if attempt > 1:
            with server.connect(server.source_db) as conn:
                conn.execute("update big set name = name || '.'")
        first = racer.model_sync.start(flow.big_sync_id).data
        assert first is not None and first.id, f"start (attempt {attempt}) returned no execution"
        try:
            second = racer.model_sync.start(flow.big_sync_id).data
        except ConflictError as err:
            conflict, running_id = err, first.id
            break
        # The second start was accepted: only fine if the first run had already finished.
        first_now = racer.model_sync.executions.get(flow.big_sync_id, first.id).data
        assert first_now is not None and first_now.status in TERMINAL, (
            f"attempt {attempt}: a second start was accepted (execution "
            f"{second.id if second else None}) while execution {first.id} was still "
            f"{first_now.status if first_now else None!r}; expected 409 ConflictError"
        )
        attempts.append(f"attempt {attempt}: run {first.id} finished as {first_now.status!r} "
                        f"before the second start")
        if second is not None and second.id:
            wait_for_execution(pt, flow.big_sync_id, second.id, BIG_EXECUTION_TIMEOUT_S)

    assert conflict is not None, (
        f"never saw 409 on a second start in {CONFLICT_ATTEMPTS} attempts with {BIG_ROWS} rows: "
        + "; ".join(attempts)
    )
    assert conflict.status_code == 409, f"ConflictError with status {conflict.status_code}"

    done = wait_for_execution(pt, flow.big_sync_id, running_id, BIG_EXECUTION_TIMEOUT_S)
    assert done.status == "completed", f"the big run did not complete: {describe(done)}"
    src, dst = (table_digest(server.source_dsn, "big"), table_digest(server.destination_dsn, "big"))
    assert src == dst, (
        f"destination big differs from source after the run: source (rows, md5) {src}, "
        f"destination {dst}"
    )


def test_cleanup_deletes_everything(flow: Flow):
    flow.need("pt", "org_id", "user_id")
    pt, admin = flow.pt, flow.admin

    for sync_id in (flow.big_sync_id, flow.sync_id):
        if sync_id:
            pt.model_sync.delete(sync_id)
            expect_error(NotFoundError, pt.model_sync.get, sync_id, what="model_sync.get after delete")
    for model_id in (flow.big_model_id, flow.model_id):
        if model_id:
            pt.models.delete(model_id)
    for conn_id in (flow.src_id, flow.dst_id):
        if conn_id:
            pt.connections.delete(conn_id, force=True)
    remaining = {c.id for c in pt.connections.list().data or []}
    assert not ({flow.src_id, flow.dst_id} & remaining), (
        f"deleted connections still listed: {remaining}"
    )

    deleted = admin.users.delete(flow.org_id, flow.user_id)
    assert deleted.data is not None and deleted.data.email == flow.user_email, (
        f"users.delete must answer with the deleted user, got {deleted!r}"
    )
    admin.organization.delete(flow.org_id)
    expect_error(
        NotFoundError, admin.organization.get, flow.org_id, what="organization.get after delete"
    )
    flow.cleaned_up = True

    if flow.model_id:
        # The model is gone, and so is the org its key belonged to: either answer is right.
        # models.get declares only 404/500 in polytomic 25.9.10, so a 401 arrives as the
        # SDK's base ApiError rather than UnauthorizedError.
        err = expect_error(
            ApiError, pt.models.get, flow.model_id, what="models.get with the deleted org's key"
        )
        assert isinstance(err, (NotFoundError, UnauthorizedError)) or err.status_code == 401, (
            f"models.get after cleanup: expected 404 NotFoundError or 401, got "
            f"{type(err).__name__} (HTTP {err.status_code}): {err.body!r}"
        )
