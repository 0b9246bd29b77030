"""Model syncs that create their target, through the official Polytomic SDK, on a PostgreSQL and
on a MariaDB destination: `targets.list` shows the properties naming a new table (with the
values of the listed one), `get_create_property` lists schemas or databases, a sync created
with `target.create` creates the table from the mapped model fields (typed as the model's, the
identity as primary key) and runs into it, and what cannot be created is refused with a 422
naming the field.

The model reads a PostgreSQL table of 30 people; every test names its own new table.
"""

from __future__ import annotations

import datetime
from typing import Iterator, Optional

import pytest
from polytomic import Identity, ModelSyncV5Target, Schedule, SyncField, TargetFilterCondition, TargetFilters
from polytomic.errors import NotFoundError

import support
from test_bulk_sync_api import refused
from test_mariadb_flow import mariadb  # noqa: F401 - the fixture is used by `destination`
from test_model_sync_flow import expect_error
from test_model_sync_options import Destination, Setup, destination, run, setup, source  # noqa: F401 - fixtures

PEOPLE = 30
MAPPED = ("email", "name", "score", "active", "joined")
EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
# The property naming where a new table goes, and the types the created columns have, by kind.
CONTAINER = {"postgres": "schema", "mariadb": "database"}
COLUMN_TYPES = {
    "postgres": {"id": "bigint", "email": "text", "name": "text", "score": "integer", "active": "boolean",
                 "joined": "timestamp with time zone"},
    "mariadb": {"id": "bigint(20)", "email": "longtext", "name": "longtext", "score": "int(11)",
                "active": "tinyint(1)", "joined": "datetime(6)"},
}


def person(i: int) -> tuple:
    """(id, email, name, score, active, joined) of person `i`."""
    return (i, f"user{i}@example.com", None if i % 10 == 0 else f"User {i}", i * 7 % 100, i % 2 == 0,
            EPOCH + datetime.timedelta(hours=i))


def as_utc(value):
    """A timestamp as naive UTC (MariaDB's DATETIME holds UTC without a zone)."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value


def place(destination: Destination) -> str:
    """The schema (PostgreSQL) or database (MariaDB) new tables go into."""
    return destination.object_prefix.rstrip(".")


def columns(destination: Destination, table: str) -> list[tuple[str, str]]:
    """(column, type) of a new table, in order."""
    type_column = "data_type" if destination.kind == "postgres" else "column_type"
    return [tuple(r) for r in destination.query(
        f"select column_name, {type_column} from information_schema.columns "
        f"where table_schema = '{place(destination)}' and table_name = '{table}' order by ordinal_position")]


def primary_key(destination: Destination, table: str) -> list[str]:
    return [r[0] for r in destination.query(
        "select k.column_name from information_schema.table_constraints c "
        "join information_schema.key_column_usage k using (constraint_schema, constraint_name, table_name) "
        f"where c.constraint_type = 'PRIMARY KEY' and c.table_schema = '{place(destination)}' "
        f"and c.table_name = '{table}' order by k.ordinal_position")]


def rows(destination: Destination, table: str) -> list[tuple]:
    found = destination.query(f"select id, {', '.join(MAPPED)} from {destination.object_prefix}{table} order by id")
    return [(r[0], r[1], r[2], r[3], bool(r[4]), as_utc(r[5])) for r in found]


@pytest.fixture(scope="module")
def people(server, setup: Setup) -> Iterator[str]:
    """A source table of people with numbers, booleans and timestamps."""
    table = f"tc_people_{setup.suffix}"
    with server.connect(server.source_db) as conn:
        conn.execute(f"create table {table} (id bigint primary key, email text, name text, score integer, "
                     f"active boolean, joined timestamptz)")
        with conn.cursor() as cur:
            cur.executemany(f"insert into {table} values (%s, %s, %s, %s, %s, %s)",
                            [person(i) for i in range(1, PEOPLE + 1)])
    yield table


def model(setup: Setup, table: str) -> str:
    sql = f"select id, {', '.join(MAPPED)} from {table}"
    return setup.pt.models.create(connection_id=setup.source_id, name=f"people {support.random_suffix()}",
                                  configuration={"query": sql}).data.id


def create(setup: Setup, destination: Destination, model_id: str, properties: dict[str, str],
           object: Optional[str] = None, request_options: Optional[dict] = None, **options):
    options.setdefault("fields", [SyncField(source=source(model_id, f), target=f) for f in MAPPED])
    options.setdefault("name", f"created {support.random_suffix()}")
    return setup.pt.model_sync.create(
        mode="updateOrCreate",
        active=True,
        schedule=Schedule(frequency="manual"),
        target=ModelSyncV5Target(connection_id=destination.connection_id, create=properties, object=object),
        identity=Identity(source=source(model_id, "id"), target="id", function="Equality"),
        request_options=request_options,
        **options,
    ).data


def test_targets_list_shows_what_names_a_new_table(setup: Setup, destination: Destination):
    listed = setup.pt.model_sync.targets.list(destination.connection_id, include_target_creation_values=True)
    creation = listed.target_creation
    container = CONTAINER[destination.kind]
    assert creation is not None and creation.supported is True, creation
    assert [(p.id, p.enum) for p in creation.properties] == [(container, True), ("table", False)]
    places = [v.value for v in creation.properties[0].values]
    assert place(destination) in places, f"{place(destination)} is not among {places}"
    assert creation.properties[1].values == [], "a free-text property lists no values"

    plain = setup.pt.model_sync.targets.list(destination.connection_id).target_creation
    assert plain.supported is True
    assert [(p.id, p.values) for p in plain.properties] == [(container, None), ("table", None)]


def test_get_create_property_lists_schemas_or_databases(setup: Setup, destination: Destination):
    container = CONTAINER[destination.kind]
    prop = setup.pt.model_sync.targets.get_create_property(destination.connection_id, container).data
    assert (prop.id, prop.enum) == (container, True)
    assert place(destination) in [v.value for v in prop.values]
    assert all(v.label == v.value for v in prop.values), prop.values
    table = setup.pt.model_sync.targets.get_create_property(destination.connection_id, "table").data
    assert (table.id, table.enum, table.values) == ("table", False, [])
    expect_error(NotFoundError, setup.pt.model_sync.targets.get_create_property, destination.connection_id, "color",
                 what="an unknown target-creation property")


def test_a_sync_creates_its_table_and_writes_into_it(server, setup: Setup, people: str, destination: Destination):
    source_table = f"{people}_{destination.kind}"
    with server.connect(server.source_db) as conn:
        conn.execute(f"create table {source_table} as select * from {people}")
    table = f"created_{destination.kind}_{setup.suffix}"
    mid = model(setup, source_table)
    properties = {CONTAINER[destination.kind]: place(destination), "table": table}
    headers = {"additional_headers": {"Idempotency-Key": f"tcreate-{destination.kind}-{setup.suffix}"}}
    sync = create(setup, destination, mid, properties, name=table, request_options=headers)
    assert sync.target.object == f"{destination.object_prefix}{table}", sync.target
    assert sync.target.create == properties, "the creation properties are echoed"
    again = create(setup, destination, mid, properties, name=table, request_options=headers)
    assert again.id == sync.id, "a retry with the same Idempotency-Key answers the first sync"

    types = COLUMN_TYPES[destination.kind]
    assert columns(destination, table) == [(c, types[c]) for c in ("id", *MAPPED)]
    assert primary_key(destination, table) == ["id"]
    listed = setup.pt.model_sync.targets.list(destination.connection_id)
    assert f"{destination.object_prefix}{table}" in [o.id for o in listed.data]

    counts = run(setup, sync.id)
    assert (counts.insert, counts.update, counts.error) == (PEOPLE, 0, 0), counts
    assert rows(destination, table) == [tuple(map(as_utc, person(i))) for i in range(1, PEOPLE + 1)]

    with server.connect(server.source_db) as conn:
        conn.execute(f"update {source_table} set name = 'Changed', score = score + 1 where id in (4, 17)")
    counts = run(setup, sync.id)
    assert (counts.insert, counts.update, counts.error) == (0, 2, 0), counts
    expected = [(i, e, "Changed", s + 1, a, j) if i in (4, 17) else (i, e, n, s, a, j)
                for (i, e, n, s, a, j) in (tuple(map(as_utc, person(i))) for i in range(1, PEOPLE + 1))]
    assert rows(destination, table) == expected

    # The sync as stored, sent back (object and create both), updates it without a new table.
    stored = setup.pt.model_sync.get(sync.id).data
    updated = setup.pt.model_sync.update(
        sync.id, name="renamed", mode=stored.mode, schedule=stored.schedule, target=stored.target,
        fields=stored.fields, identity=stored.identity, active=stored.active).data
    assert (updated.name, updated.target.object) == ("renamed", sync.target.object)


def test_what_cannot_be_created_is_refused_naming_the_field(setup: Setup, people: str, destination: Destination):
    table = f"refused_{destination.kind}_{setup.suffix}"
    mid = model(setup, people)
    container = CONTAINER[destination.kind]
    good = {container: place(destination), "table": table}

    def expect_422(properties: dict[str, str], field: str, says: str = "", **options) -> None:
        refused(lambda: create(setup, destination, mid, properties, **options), field=field, says=says,
                what=f"target.create {properties} {options or ''}")

    expect_422({"table": table}, f"target.create.{container}", "is required")
    expect_422({container: "no_such_place", "table": table}, f"target.create.{container}", "does not exist")
    expect_422({**good, "color": "red"}, "target.create.color", "is not a property")
    expect_422({**good, "table": "a.b"}, "target.create.table", "must not contain")
    expect_422({**good, "table": "t" * 70}, "target.create.table", "longer than")
    expect_422({**good, "table": ""}, "target.create.table", "is required")
    expect_422(good, "target.create", "not both", object=f"{destination.object_prefix}{table}")
    # A created table passes the same field checks as an existing one.
    expect_422(good, "target_filters.conditions[0].field", "does not exist",
               target_filters=TargetFilters(conditions=[TargetFilterCondition(field="nope", function="IsNull")]))
    mapped_twice = [SyncField(source=source(mid, "email"), target="email"),
                    SyncField(source=source(mid, "name"), target="email")]
    expect_422(good, "fields", "mapped more than once", fields=mapped_twice)
    assert columns(destination, table) == [], "a refused body created nothing"

    destination.execute(f"create table {destination.object_prefix}{table} (id bigint primary key)")
    expect_422(good, "target.create", "already exists")
