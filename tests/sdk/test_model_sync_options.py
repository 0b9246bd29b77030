"""Model sync options through the official Polytomic SDK, each on a PostgreSQL and on a MariaDB
destination: model filters with a logic expression, target filters, constants and conditional
overrides, a per-field `create` sync mode that leaves a non-empty destination value alone, the
`remove` and `snapshot` modes, `sync_all_records` and `skip_initial_backfill`, and the 422s
naming the field for what Syncline cannot honour.

The model reads a PostgreSQL table of 40 people; each test writes into its own destination
table and compares it, row by row, with what the option says it must hold.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import time
from typing import Callable, Iterator, Optional

import pytest
import requests
from polytomic import (
    Identity,
    ModelFilterCondition,
    ModelFilters,
    ModelSyncIdentities,
    ModelSyncSourceIdentity,
    ModelSyncV5Target,
    Override,
    OverrideFieldInput,
    Polytomic,
    Schedule,
    Source,
    SyncField,
    TargetFilterCondition,
    TargetFilters,
)

import support
from test_bulk_sync_api import refused
from test_mariadb_flow import MariaDb, mariadb  # noqa: F401 - the fixture is used by `destination`
from test_model_sync_flow import EXECUTION_TIMEOUT_S, TERMINAL, describe, wait_for_execution

PEOPLE = 40


def person(i: int) -> tuple:
    """(id, email, name, plan, score) of person `i`."""
    return (
        i,
        f"user{i}@{'a' if i % 2 else 'b'}.com",
        None if i % 10 == 0 else f"User {i}",
        ("free", "pro", "team")[i % 3],
        i * 7 % 100,
    )


DESTINATION_COLUMNS = "id, email, name, plan, score, status"


@dataclasses.dataclass
class Destination:
    """A destination database: its connection, and how the test reads and writes its tables."""

    kind: str
    connection_id: str
    execute: Callable[[str], None]
    query: Callable[[str], list[tuple]]
    object_prefix: str

    def table(self, name: str) -> str:
        self.execute(
            f"create table {name} (id int primary key, email varchar(64), name varchar(64), "
            f"plan varchar(16), score int, status varchar(16))"
        )
        return f"{self.object_prefix}{name}"

    def rows(self, name: str) -> list[tuple]:
        return [tuple(r) for r in self.query(f"select {DESTINATION_COLUMNS} from {name} order by id")]


@dataclasses.dataclass
class Setup:
    pt: Polytomic
    source_id: str
    people_table: str
    suffix: str
    base_url: str
    token: str

    def post(self, path: str) -> requests.Response:
        return requests.post(f"{self.base_url}{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def get(self, path: str) -> dict:
        answer = requests.get(f"{self.base_url}{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        return answer.json()["data"]


def organization(server, admin: Polytomic, name: str) -> tuple[Polytomic, str, str]:
    """A new organization `name` with an admin user: a client with the user's API key, the
    organization's id and the key."""
    org = admin.organization.create(name=name).data
    user = admin.users.create(org.id, email=f"admin-{support.random_suffix()}@example.com").data
    key = admin.users.create_api_key(org.id, user.id).data
    return Polytomic(base_url=server.base_url, token=key.value), org.id, key.value


@pytest.fixture(scope="module")
def setup(server, admin: Polytomic) -> Iterator[Setup]:
    suffix = support.random_suffix()
    pt, org_id, token = organization(server, admin, f"sdk-options-{suffix}")
    table = f"opt_people_{suffix}"
    with server.connect(server.source_db) as conn:
        conn.execute(f"create table {table} (id int primary key, email text, name text, plan text, score int)")
        with conn.cursor() as cur:
            cur.executemany(f"insert into {table} values (%s, %s, %s, %s, %s)", [person(i) for i in range(1, PEOPLE + 1)])
    source = pt.connections.create(
        name="people source", type="postgresql",
        configuration=server.postgres_configuration(server.source_db, "irrelevant-pw")).data
    yield Setup(pt=pt, source_id=source.id, people_table=table, suffix=suffix, base_url=server.base_url,
                token=token)
    admin.organization.delete(org_id)


@pytest.fixture(params=["postgres", "mariadb"])
def destination(request, server, setup: Setup) -> Destination:
    if request.param == "postgres":
        def execute(sql: str) -> None:
            with server.connect(server.destination_db) as conn:
                conn.execute(sql)

        def query(sql: str) -> list[tuple]:
            with server.connect(server.destination_db) as conn:
                return conn.execute(sql).fetchall()

        configuration = server.postgres_configuration(server.destination_db, "irrelevant-pw")
        connection = setup.pt.connections.create(name="pg dest", type="postgresql", configuration=configuration)
        return Destination("postgres", connection.data.id, execute, query, "public.")
    db: MariaDb = request.getfixturevalue("mariadb")

    def execute(sql: str) -> None:
        with db.connect(db.destination_db) as conn, conn.cursor() as cur:
            cur.execute(sql)

    def query(sql: str) -> list[tuple]:
        with db.connect(db.destination_db) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    connection = setup.pt.connections.create(name="mariadb dest", type="mysql",
                                             configuration=db.configuration(db.destination_db))
    return Destination("mariadb", connection.data.id, execute, query, f"{db.destination_db}.")


def model(setup: Setup, query: Optional[str] = None) -> str:
    sql = query or f"select id, email, name, plan, score from {setup.people_table}"
    return setup.pt.models.create(connection_id=setup.source_id, name=f"people {support.random_suffix()}",
                                  configuration={"query": sql}).data.id


def source(model_id: str, field: str) -> Source:
    return Source(model_id=model_id, field=field)


def mapped(model_id: str, *fields: str, **modes: str) -> list[SyncField]:
    return [SyncField(source=source(model_id, f), target=f, sync_mode=modes.get(f)) for f in fields]


def create(setup: Setup, destination: Destination, table: str, model_id: str, **options):
    options.setdefault("mode", "updateOrCreate")
    if options["mode"] != "snapshot" and "identities" not in options:
        options.setdefault("identity", Identity(source=source(model_id, "id"), target="id", function="Equality"))
    return setup.pt.model_sync.create(
        name=f"{table} {support.random_suffix()}",
        active=True,
        schedule=Schedule(frequency="manual"),
        target=ModelSyncV5Target(connection_id=destination.connection_id, object=table),
        **options,
    ).data


def run(setup: Setup, sync_id: str, **options):
    started = setup.pt.model_sync.start(sync_id, **options).data
    done = wait_for_execution(setup.pt, sync_id, started.id, EXECUTION_TIMEOUT_S)
    assert done.status == "completed", f"run did not complete: {describe(done)}"
    return done.counts


def expect_422(call, field: str) -> None:
    refused(call, field=field, what=f"a body that cannot be honoured for {field}")


def test_model_filters_with_logic_and_target_filters(setup: Setup, destination: Destination):
    table = f"opt_filters_{destination.kind}_{setup.suffix}"
    name = destination.table(table)
    wanted = [p for p in map(person, range(1, PEOPLE + 1))
              if p[3] == "pro" and (p[4] > 50 or p[1].endswith("@b.com"))]
    assert len(wanted) >= 4, "test data: the filter should select several people"
    locked = [wanted[0][0], wanted[1][0]]
    for ident in locked:
        destination.execute(f"insert into {table} values ({ident}, 'old', 'LOCKED', 'none', 0, 'locked')")
    mid = model(setup)
    sync = create(
        setup, destination, name, mid,
        fields=mapped(mid, "email", "name", "plan", "score"),
        model_filters=ModelFilters(
            conditions=[
                ModelFilterCondition(source=source(mid, "plan"), function="Equality", value="pro"),
                ModelFilterCondition(source=source(mid, "score"), function="GreaterThan", value=50),
                ModelFilterCondition(source=source(mid, "email"), function="StringEndsWith", value="@b.com"),
            ],
            logic="1 AND (2 OR 3)",
        ),
        target_filters=TargetFilters(
            conditions=[TargetFilterCondition(field="status", function="Inequality", value="locked")]),
    )
    assert sync.model_filters is not None and sync.model_filters.logic == "1 AND (2 OR 3)", sync.model_filters
    assert len(sync.target_filters.conditions) == 1, sync.target_filters
    counts = run(setup, sync.id)
    assert counts.error == 0, counts
    expected = [(i, "old", "LOCKED", "none", 0, "locked") if i in locked else (i, e, n, p, s, None)
                for (i, e, n, p, s) in wanted]
    assert destination.rows(table) == expected


def test_constants_overrides_and_fields_that_only_fill_empty_values(setup: Setup, destination: Destination):
    table = f"opt_overrides_{destination.kind}_{setup.suffix}"
    name = destination.table(table)
    destination.execute(f"insert into {table} values (1, 'old@x.com', 'Keep me', 'old', 0, null)")
    destination.execute(f"insert into {table} values (2, 'old@x.com', null, 'old', 0, null)")
    mid = model(setup)
    sync = create(
        setup, destination, name, mid,
        fields=mapped(mid, "email", "name", "plan", name="create")
        + [SyncField(target="status", override_value="synced")],
        override_fields=[OverrideFieldInput(target="score", override_value="7")],
        overrides=[Override(field=source(mid, "plan"), function="Equality", value="free", override="trial")],
    )
    assert [f.sync_mode for f in sync.fields if f.target == "name"] == ["create"], sync.fields
    counts = run(setup, sync.id)
    # Every record is new to the sync; the two the destination had are matched and updated.
    assert (counts.insert, counts.update, counts.error) == (PEOPLE, 0, 0), counts
    expected = []
    for (i, email, name_, plan, _) in map(person, range(1, PEOPLE + 1)):
        kept = "Keep me" if i == 1 else name_
        expected.append((i, email, kept, "trial" if plan == "free" else plan, 7, "synced"))
    assert destination.rows(table) == expected


def test_remove_deletes_the_records_the_model_lists(setup: Setup, destination: Destination):
    table = f"opt_remove_{destination.kind}_{setup.suffix}"
    name = destination.table(table)
    for i in range(1, 11):
        destination.execute(f"insert into {table} values ({i}, 'x', 'x', 'x', {i}, null)")
    mid = model(setup, f"select id from {setup.people_table} where id in (2, 3, 5)")
    sync = create(setup, destination, name, mid, mode="remove", fields=mapped(mid, "id"))
    assert sync.mode == "remove"
    counts = run(setup, sync.id)
    assert (counts.delete, counts.insert, counts.update, counts.error) == (3, 0, 0, 0), counts
    assert [r[0] for r in destination.rows(table)] == [1, 4, 6, 7, 8, 9, 10]
    counts = run(setup, sync.id)
    assert counts.total == 0, f"a second run without changes removed again: {counts}"


def test_snapshot_replaces_the_contents(setup: Setup, destination: Destination):
    table = f"opt_snapshot_{destination.kind}_{setup.suffix}"
    name = destination.table(table)
    for i in (1, 100, 101):
        destination.execute(f"insert into {table} values ({i}, 'stale', 'stale', 'stale', 0, 'stale')")
    mid = model(setup, f"select id, email, name from {setup.people_table} where id <= 5")
    sync = create(setup, destination, name, mid, mode="snapshot", fields=mapped(mid, "id", "email", "name"))
    expected = [(i, e, n, None, None, None) for (i, e, n, _, _) in map(person, range(1, 6))]
    for _ in range(2):
        counts = run(setup, sync.id)
        assert (counts.insert, counts.error) == (5, 0), counts
        assert destination.rows(table) == expected


def test_sync_all_records_and_skip_initial_backfill(server, setup: Setup, destination: Destination):
    r = own_sync(server, setup, destination, "backfill", 10, mode="updateOrCreate", skip_initial_backfill=True)
    source_table, table, name, mid = r.source_table, r.table, r.object, r.model_id
    skipping = setup.pt.model_sync.get(r.sync_id).data
    assert skipping.skip_initial_backfill is True
    counts = run(setup, skipping.id)
    assert counts.total == 0 and destination.rows(table) == [], f"the first run wrote {counts}"
    with server.connect(server.source_db) as conn:
        conn.execute(f"update {source_table} set name = 'Changed' where id in (3, 4)")
    counts = run(setup, skipping.id)
    assert (counts.insert, counts.update) == (0, 2), f"after the backfill was skipped: {counts}"
    assert [(r[0], r[2]) for r in destination.rows(table)] == [(3, "Changed"), (4, "Changed")]

    everything = create(setup, destination, name, mid, fields=mapped(mid, "email", "name"), sync_all_records=True)
    run(setup, everything.id)
    counts = run(setup, everything.id)
    assert (counts.update, counts.insert) == (10, 0), f"sync_all_records sent {counts} on an unchanged run"


def test_what_cannot_be_honoured_is_refused_naming_the_field(setup: Setup, destination: Destination):
    table = f"opt_refused_{destination.kind}_{setup.suffix}"
    name = destination.table(table)
    mid = model(setup)
    fields = mapped(mid, "email")

    def attempt(**options) -> Callable[[], object]:
        return lambda: create(setup, destination, name, mid, **options)

    plan_is = ModelFilterCondition(source=source(mid, "plan"), function="Equality", value="pro")
    expect_422(attempt(fields=fields, model_filters=ModelFilters(conditions=[plan_is], logic="1 AND 2")),
               "model_filters.logic")
    contains_number = ModelFilterCondition(source=source(mid, "score"), function="StringContains", value="5")
    expect_422(attempt(fields=fields, model_filters=ModelFilters(conditions=[plan_is, contains_number])),
               "model_filters.conditions[1]")
    expect_422(attempt(fields=fields, target_filters=TargetFilters(
        conditions=[TargetFilterCondition(field="nope", function="IsNull")])), "target_filters.conditions[0].field")
    expect_422(attempt(fields=mapped(mid, "email", "name", name="never")), "fields[1].sync_mode")
    expect_422(attempt(fields=fields, encryption_passphrase="secret"), "encryption_passphrase")
    twice = ModelSyncIdentities(mappings=[Identity(source=source(mid, "email"), target=target, function="Equality")
                                          for target in ("email", "name")], strategy="priority")
    expect_422(attempt(fields=mapped(mid, "plan"), identities=twice), "identities.mappings[1].source.field")
    expect_422(attempt(fields=[SyncField(source=source(mid, "email"), target="email", new=True)]), "fields[0].new")
    expect_422(lambda: setup.pt.model_sync.create(
        name="bad schedule", active=True, mode="updateOrCreate",
        schedule=Schedule(frequency="daily", run_after_success_only=True),
        target=ModelSyncV5Target(connection_id=destination.connection_id, object=name),
        identity=Identity(source=source(mid, "id"), target="id", function="Equality"), fields=fields),
        "schedule.run_after_success_only")


def settled(setup: Setup, sync_id: str, execution_id: str) -> dict:
    """The execution (as JSON) once it ended or waits for approval."""
    deadline = time.monotonic() + EXECUTION_TIMEOUT_S
    while True:
        execution = setup.get(f"/api/syncs/{sync_id}/executions/{execution_id}")
        if execution["status"] in TERMINAL | {"waiting", "completed_with_errors"}:
            return execution
        assert time.monotonic() < deadline, f"execution {execution_id} still {execution['status']}"
        time.sleep(0.3)


def start(setup: Setup, sync_id: str, **options) -> dict:
    return settled(setup, sync_id, setup.pt.model_sync.start(sync_id, **options).data.id)


@dataclasses.dataclass
class OwnSync:
    """A sync (replace unless told) of email and name from a source table of its own (the first
    people), into a destination table of its own."""

    source_table: str
    table: str
    object: str
    model_id: str
    sync_id: str


def own_sync(server, setup: Setup, destination: Destination, label: str, rows: int,
             fields: tuple = ("email", "name"), **options) -> OwnSync:
    source_table = f"opt_{label}_src_{destination.kind}_{setup.suffix}"
    with server.connect(server.source_db) as conn:
        conn.execute(f"create table {source_table} as select * from {setup.people_table} where id <= {rows}")
    table = f"opt_{label}_{destination.kind}_{setup.suffix}"
    name = destination.table(table)
    mid = model(setup, f"select id, email, name, plan, score from {source_table}")
    options.setdefault("mode", "replace")
    sync = create(setup, destination, name, mid, fields=mapped(mid, *fields), **options)
    return OwnSync(source_table, table, name, mid, sync.id)


def test_a_run_over_the_blast_radius_waits_for_approval(server, setup: Setup, destination: Destination):
    limits = {"blast_radius": {"max_delete_share": 0.5}}
    r = own_sync(server, setup, destination, "guard", 40, request_options={"additional_body_parameters": limits})
    source_table, table, sync = r.source_table, r.table, setup.pt.model_sync.get(r.sync_id).data
    assert setup.get(f"/api/syncs/{sync.id}")["blast_radius"] == {"max_delete_share": 0.5}
    first = start(setup, sync.id)
    assert first["status"] == "completed" and first["plan"]["inserts"] == 40, first
    with server.connect(server.source_db) as conn:
        conn.execute(f"delete from {source_table} where id > 4")

    waiting = start(setup, sync.id)
    assert waiting["status"] == "waiting", f"a run deleting 90% did not wait: {waiting}"
    plan = waiting["plan"]
    assert (plan["deletes"], plan["inserts"], plan["updates"], plan["delivered"]) == (36, 0, 0, 40), plan
    assert len(plan["samples"]["deletes"]) == 10 and plan["samples"]["deletes"][0] == {"identity": "id=5"}, plan
    assert "max_delete_share" in plan["exceeded"][0] and "kept" not in plan, plan
    assert len(destination.rows(table)) == 40
    refused(setup.pt.model_sync.start, sync.id, status=409, what="a start while a run waits for approval")
    rejected = setup.post(f"/api/syncs/{sync.id}/executions/{waiting['id']}/reject")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["data"]["status"] == "canceled", rejected.text
    assert len(destination.rows(table)) == 40, "a rejected plan deleted records"
    assert setup.post(f"/api/syncs/{sync.id}/executions/{waiting['id']}/approve").status_code == 409

    waiting = start(setup, sync.id)
    assert waiting["status"] == "waiting", waiting
    approved = setup.post(f"/api/syncs/{sync.id}/executions/{waiting['id']}/approve")
    assert approved.status_code == 200, approved.text
    done = settled(setup, sync.id, waiting["id"])
    assert done["status"] == "completed" and done["counts"]["delete"] == 36, done
    assert [r[0] for r in destination.rows(table)] == [1, 2, 3, 4]


def test_a_test_start_plans_without_writing(server, setup: Setup, destination: Destination):
    r = own_sync(server, setup, destination, "test", 10)
    source_table, table, sync = r.source_table, r.table, setup.pt.model_sync.get(r.sync_id).data
    run(setup, sync.id)
    before = destination.rows(table)
    with server.connect(server.source_db) as conn:
        conn.execute(f"update {source_table} set name = 'Renamed' where id = 2")
        conn.execute(f"delete from {source_table} where id = 9")
        conn.execute(f"insert into {source_table} values (77, 'new@x.com', 'New', 'pro', 1)")
    tested = start(setup, sync.id, test=True)
    assert tested["status"] == "completed" and tested["plan"]["test"] is True, tested
    plan = tested["plan"]
    assert (plan["inserts"], plan["updates"], plan["deletes"]) == (1, 1, 1), plan
    assert plan["samples"]["updates"] == [{"identity": "id=2", "values": {"id": 2, "email": "user2@b.com", "name": "Renamed"}}], plan
    assert destination.rows(table) == before, "a test start wrote to the destination"
    counts = run(setup, sync.id)
    assert (counts.insert, counts.update, counts.delete) == (1, 1, 1), f"the run after a test sent {counts}"


def test_a_start_naming_identities_syncs_only_those(server, setup: Setup, destination: Destination):
    r = own_sync(server, setup, destination, "named", 10)
    source_table, table, mid, sync = r.source_table, r.table, r.model_id, setup.pt.model_sync.get(r.sync_id).data
    run(setup, sync.id)
    with server.connect(server.source_db) as conn:
        conn.execute(f"update {source_table} set name = 'Changed' where id in (2, 3, 4)")
    counts = run(setup, sync.id, identities=["2"])
    assert (counts.update, counts.delete, counts.insert) == (1, 0, 0), counts
    names = {r[0]: r[2] for r in destination.rows(table)}
    assert (names[2], names[3], len(names)) == ("Changed", "User 3", 10), names
    counts = run(setup, sync.id, source_identities=[[ModelSyncSourceIdentity(source=source(mid, "id"), value="3")]])
    assert (counts.update, counts.delete) == (1, 0), counts
    counts = run(setup, sync.id)
    assert (counts.update, counts.delete, counts.insert) == (1, 0, 0), f"the full run after two partial ones: {counts}"
    assert {r[0]: r[2] for r in destination.rows(table)}[4] == "Changed"
    refused(setup.pt.model_sync.start, sync.id, identities=["1"], source_identities=[[ModelSyncSourceIdentity(
        source=source(mid, "id"), value="3")]], field="source_identities", what="both identities and source_identities")



def verification_of(setup: Setup, sync_id: str) -> tuple[dict, set]:
    """The last execution's verification, and the identities its errors name."""
    last = setup.pt.model_sync.get_status(sync_id).data.last_execution
    execution = setup.get(f"/api/syncs/{sync_id}/executions/{last.id}")
    return execution, {error.split(":")[0] for error in execution["errors"]}


TRIGGERS = {
    "postgres": [
        """create function {table}_shout() returns trigger language plpgsql as $$
           begin if new.id in (3, 7) then new.name := upper(new.name); end if; return new; end $$""",
        "create trigger {table}_shout before insert or update on {table} for each row execute function {table}_shout()",
    ],
    "mariadb": [
        """create trigger {table}_shout before insert on {table} for each row
           begin if new.id in (3, 7) then set new.name = upper(new.name); end if; end""",
    ],
}


def test_verified_delivery_reports_records_a_trigger_rewrote(setup: Setup, destination: Destination):
    table = f"opt_verified_{destination.kind}_{setup.suffix}"
    name = destination.table(table)
    mid = model(setup, f"select id, email, name from {setup.people_table} where id <= 10")
    clean = create(setup, destination, name, mid, fields=mapped(mid, "email", "name"))
    run(setup, clean.id)
    execution, _ = verification_of(setup, clean.id)
    assert execution["status"] == "completed", execution
    assert execution["verification"]["checked"] == 10 and execution["verification"]["mismatched"] == 0, execution

    shouted = f"opt_shouted_{destination.kind}_{setup.suffix}"
    shouted_name = destination.table(shouted)
    for statement in TRIGGERS[destination.kind]:
        destination.execute(statement.format(table=shouted))
    sync = create(setup, destination, shouted_name, mid, fields=mapped(mid, "email", "name"))
    start(setup, sync.id)
    execution, named = verification_of(setup, sync.id)
    assert execution["status"] == "completed_with_errors", execution
    assert (execution["verification"]["checked"], execution["verification"]["mismatched"]) == (10, 2), execution
    assert named == {"id=3", "id=7"} and all("name" in e for e in execution["errors"]), execution["errors"]
    again = start(setup, sync.id)
    assert again["counts"]["upserts"] == 2 and named == verification_of(setup, sync.id)[1], f"resent: {again}"


def test_verified_delivery_judges_values_by_type_and_finds_vanished_records(setup: Setup, server):
    """Values PostgreSQL stores spelled differently (a numeric rounded to its scale, JSON text
    reordered as jsonb) are equal, not mismatches; a record a trigger deletes is missing. The
    identities are sparse, so records are looked up one by one (dense ones are read as a range,
    as in the trigger test above)."""
    table = f"opt_spelled_{setup.suffix}"
    with server.connect(server.destination_db) as conn:
        conn.execute(f"create table {table} (id int primary key, amount numeric(10, 2), doc jsonb)")
        conn.execute(f"""create function {table}_drop() returns trigger language plpgsql as $$
                         begin delete from {table} where id = 6; return null; end $$""")
    mid = model(setup, f"""select id, (id + 0.5)::numeric as amount, ('{{"b": ' || id || ',   "a": 2}}')::json as doc
                            from {setup.people_table} where id % 3 = 0 and id <= 30""")
    configuration = server.postgres_configuration(server.destination_db, "irrelevant-pw")
    pg = Destination("postgres", setup.pt.connections.create(name="pg", type="postgresql",
                                                            configuration=configuration).data.id,
                     lambda sql: None, lambda sql: [], "public.")
    sync = create(setup, pg, f"public.{table}", mid, fields=mapped(mid, "amount", "doc"))
    run(setup, sync.id)
    execution, _ = verification_of(setup, sync.id)
    assert execution["status"] == "completed", execution
    assert (execution["verification"]["checked"], execution["verification"]["mismatched"]) == (10, 0), execution

    with server.connect(server.destination_db) as conn:
        conn.execute(f"create trigger {table}_drop after update on {table} "
                     f"for each statement execute function {table}_drop()")
    start(setup, sync.id, resync=True)
    execution, named = verification_of(setup, sync.id)
    assert execution["status"] == "completed_with_errors", execution
    assert execution["verification"]["mismatched"] == 1 and named == {"id=6"}, execution
    assert "missing" in execution["errors"][0], execution["errors"]


def test_verified_delivery_reports_values_a_non_strict_mariadb_cut(setup: Setup, request):
    db: MariaDb = request.getfixturevalue("mariadb")
    table = f"opt_cut_{setup.suffix}"
    with db.connect(db.destination_db) as conn, conn.cursor() as cur:
        cur.execute(f"create table {table} (id int primary key, name varchar(5))")
    lenient = setup.pt.connections.create(name="mariadb non-strict", type="mysql",
                                          configuration={**db.configuration(db.destination_db), "strict": False}).data
    mid = model(setup, f"select id, case when id in (2, 5) then name else left(name, 4) end as name "
                       f"from {setup.people_table} where id <= 8")
    sync = setup.pt.model_sync.create(
        name=f"cut {setup.suffix}", active=True, mode="updateOrCreate", schedule=Schedule(frequency="manual"),
        target=ModelSyncV5Target(connection_id=lenient.id, object=f"{db.destination_db}.{table}"),
        identity=Identity(source=source(mid, "id"), target="id", function="Equality"),
        fields=mapped(mid, "name")).data
    start(setup, sync.id)
    execution, named = verification_of(setup, sync.id)
    assert execution["status"] == "completed_with_errors", execution
    assert execution["verification"]["mismatched"] == 2 and named == {"id=2", "id=5"}, execution
    with db.connect(db.destination_db) as conn, conn.cursor() as cur:
        cur.execute(f"select name from {table} where id = 2")
        assert cur.fetchone()[0] == "User ", "the server cut the value to fit"


def record_log_lines(setup: Setup, url: str) -> list[dict]:
    answer = requests.get(url, headers={"Authorization": f"Bearer {setup.token}"}, timeout=30)
    assert answer.status_code == 200, f"{url}: {answer.status_code} {answer.text[:300]}"
    return [json.loads(line) for line in gzip.decompress(answer.content).decode().splitlines()]


def logged(setup: Setup, sync_id: str, execution_id: str, kind: str) -> list[dict]:
    urls = setup.pt.model_sync.executions.get_log_urls(sync_id, execution_id, kind).data
    assert urls.expires is not None, urls
    return [line for url in urls.urls for line in record_log_lines(setup, url)]


def test_record_logs_hold_every_record_written(server, setup: Setup, destination: Destination):
    assert setup.pt.organization.get_record_logging().data.enabled is False, "record logging is off by default"
    r = own_sync(server, setup, destination, "logged", 10, fields=("email", "name", "score"))
    refused(setup.pt.organization.update_record_logging, enabled=True, delivery_connection_id=r.sync_id,
            field="deliveryConnectionId", what="record logs delivered to a connection")
    settings = setup.pt.organization.update_record_logging(enabled=True, delivery_prefix="team-a").data
    assert (settings.enabled, settings.delivery_prefix) == (True, "team-a"), settings
    try:
        destination.execute(f"alter table {r.table} add constraint {r.table}_score check (score < 60)")
        first = start(setup, r.sync_id)
        assert (first["counts"]["insert"], first["counts"]["error"]) == (8, 2), first
        index = setup.pt.model_sync.executions.get_logs_index(r.sync_id, first["id"]).data
        counts = {k: getattr(index, k).count for k in ("records", "inserts", "updates", "deletes", "errors", "warnings")}
        assert counts == {"records": 10, "inserts": 8, "updates": 0, "deletes": 0, "errors": 2, "warnings": 0}, counts
        inserts = logged(setup, r.sync_id, first["id"], "inserts")
        assert sorted(line["identity"] for line in inserts) == [f"id={i}" for i in range(1, 9)], inserts
        assert inserts[0]["operation"] == "insert" and inserts[0]["values"]["email"] == person(1)[1], inserts[0]
        errors = logged(setup, r.sync_id, first["id"], "errors")
        assert sorted(e["identity"] for e in errors) == ["id=10", "id=9"] and all(e["error"] for e in errors), errors
        name = setup.pt.model_sync.executions.get_log_urls(r.sync_id, first["id"], "inserts").data.urls[0].split("/")[-2]
        setup.pt.model_sync.executions.get_logs(r.sync_id, first["id"], "inserts", name)

        with server.connect(server.source_db) as conn:
            conn.execute(f"delete from {r.source_table} where id = 1")
            conn.execute(f"update {r.source_table} set name = 'Logged' where id = 2")
        second = start(setup, r.sync_id)
        assert (second["counts"]["update"], second["counts"]["delete"]) == (1, 1), second
        assert [(u["identity"], u["values"]["name"]) for u in logged(setup, r.sync_id, second["id"], "updates")] == [
            ("id=2", "Logged")]
        assert logged(setup, r.sync_id, second["id"], "deletes") == [{"identity": "id=1", "operation": "delete"}]
        assert len(logged(setup, r.sync_id, second["id"], "records")) == 4, "1 update, 1 delete, 2 retried errors"
        assert person(3)[1] not in server.log(), "a record's values reached the app log"
    finally:
        setup.pt.organization.update_record_logging(enabled=False)
    unlogged = start(setup, r.sync_id)
    refused(setup.pt.model_sync.executions.get_logs_index, r.sync_id, unlogged["id"], status=404,
            what="the record logs of a run while record logging was off")


def test_two_identities_with_priority_the_first_that_matches_wins(setup: Setup, destination: Destination):
    table = f"opt_priority_{destination.kind}_{setup.suffix}"
    name = destination.table(table)
    destination.execute(f"insert into {table} values (100, 'user1@a.com', 'Old one', 'none', 0, 'kept')")
    destination.execute(f"insert into {table} values (101, 'legacy@x.com', 'Mr. USER 2 (legacy)', 'none', 0, 'kept')")
    mid = model(setup, f"select id, email, name, plan, score from {setup.people_table} where id <= 3")
    identities = ModelSyncIdentities(
        mappings=[
            Identity(source=source(mid, "email"), target="email", function="Equality"),
            Identity(source=source(mid, "name"), target="name", function="ISubstring"),
        ],
        strategy="priority",
    )
    sync = create(setup, destination, name, mid, identities=identities, fields=mapped(mid, "id", "plan", "score"))
    assert sync.identities.strategy == "priority", sync.identities
    counts = run(setup, sync.id)
    assert counts.error == 0, counts
    people = {p[0]: p for p in map(person, range(1, 4))}
    assert destination.rows(table) == [
        (1, "user1@a.com", "Old one", people[1][3], people[1][4], "kept"),
        (2, "legacy@x.com", "Mr. USER 2 (legacy)", people[2][3], people[2][4], "kept"),
        (3, people[3][1], people[3][2], people[3][3], people[3][4], None),
    ], "matched by email, else by a name inside the destination's, else created"
    execution, _ = verification_of(setup, sync.id)
    assert (execution["verification"]["checked"], execution["verification"]["mismatched"]) == (3, 0), execution
