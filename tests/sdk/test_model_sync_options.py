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
from typing import Callable, Iterator, Optional

import pytest
from polytomic import (
    Identity,
    ModelFilterCondition,
    ModelFilters,
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
from test_model_sync_flow import EXECUTION_TIMEOUT_S, describe, wait_for_execution

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


def organization(server, admin: Polytomic, name: str) -> tuple[Polytomic, str]:
    """A new organization `name` with an admin user: a client with the user's API key, and the
    organization's id."""
    org = admin.organization.create(name=name).data
    user = admin.users.create(org.id, email=f"admin-{support.random_suffix()}@example.com").data
    key = admin.users.create_api_key(org.id, user.id).data
    return Polytomic(base_url=server.base_url, token=key.value), org.id


@pytest.fixture(scope="module")
def setup(server, admin: Polytomic) -> Iterator[Setup]:
    suffix = support.random_suffix()
    pt, org_id = organization(server, admin, f"sdk-options-{suffix}")
    table = f"opt_people_{suffix}"
    with server.connect(server.source_db) as conn:
        conn.execute(f"create table {table} (id int primary key, email text, name text, plan text, score int)")
        with conn.cursor() as cur:
            cur.executemany(f"insert into {table} values (%s, %s, %s, %s, %s)", [person(i) for i in range(1, PEOPLE + 1)])
    source = pt.connections.create(
        name="people source", type="postgresql",
        configuration=server.postgres_configuration(server.source_db, "irrelevant-pw")).data
    yield Setup(pt=pt, source_id=source.id, people_table=table, suffix=suffix)
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
    if options["mode"] != "snapshot":
        options.setdefault("identity", Identity(source=source(model_id, "id"), target="id", function="Equality"))
    return setup.pt.model_sync.create(
        name=f"{table} {support.random_suffix()}",
        active=True,
        schedule=Schedule(frequency="manual"),
        target=ModelSyncV5Target(connection_id=destination.connection_id, object=table),
        **options,
    ).data


def run(setup: Setup, sync_id: str):
    started = setup.pt.model_sync.start(sync_id).data
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
    source_table = f"opt_changing_{destination.kind}_{setup.suffix}"
    with server.connect(server.source_db) as conn:
        conn.execute(f"create table {source_table} as select * from {setup.people_table} where id <= 10")
    table = f"opt_backfill_{destination.kind}_{setup.suffix}"
    name = destination.table(table)
    mid = model(setup, f"select id, email, name, plan, score from {source_table}")
    skipping = create(setup, destination, name, mid, fields=mapped(mid, "email", "name"), skip_initial_backfill=True)
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
    expect_422(attempt(fields=[SyncField(source=source(mid, "email"), target="email", new=True)]), "fields[0].new")
    expect_422(lambda: setup.pt.model_sync.create(
        name="bad schedule", active=True, mode="updateOrCreate",
        schedule=Schedule(frequency="daily", run_after_success_only=True),
        target=ModelSyncV5Target(connection_id=destination.connection_id, object=name),
        identity=Identity(source=source(mid, "id"), target="id", function="Equality"), fields=fields),
        "schedule.run_after_success_only")
