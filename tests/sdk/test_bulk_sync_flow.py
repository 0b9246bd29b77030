"""The tier-1 bulk-sync flow of polytomic-api.md §5, driven through the official SDK:
PostgreSQL → PostgreSQL (a table whole and a table with two of its fields, then an incremental
run after inserts, updates and deletes), MariaDB → PostgreSQL, a 409 for a second start while a
run is in progress, per-schema counts, and deletion.

After every run the destination equals the source (row for row, on the replicated columns).
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
from pathlib import Path
from typing import Callable, Iterator

import pymysql
import pytest
from polytomic import BulkSyncDefaultScheduleRequest, Polytomic, SchemaConfiguration
from polytomic.core.api_error import ApiError

import support
from test_mariadb_flow import MARIADB_HOST, MARIADB_PASSWORD, MARIADB_PORT, MARIADB_USER

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"
ROWS = 2_000
BIG_ROWS = 200_000
TERMINAL = {"completed", "failed", "canceled", "interrupted", "errors"}
TIMEOUT_S = 120


def users_sql(rows: int) -> str:
    table = (TESTDATA / "sample_users_table.sql").read_text()
    fill = (TESTDATA / "sample_users_fill.sql").read_text().replace("{rows}", str(rows))
    return table + ";\n" + fill


@pytest.fixture(scope="module")
def pt(server, admin: Polytomic) -> Polytomic:
    """An SDK client with an API key of a fresh organization."""
    suffix = support.random_suffix()
    org = admin.organization.create(name=f"sdk-bulk-{suffix}").data
    user = admin.users.create(org.id, email=f"admin-{suffix}@example.com").data
    key = admin.users.create_api_key(org.id, user.id).data
    return Polytomic(base_url=server.base_url, token=key.value)


@pytest.fixture(scope="module")
def databases(server) -> Iterator[tuple[str, str]]:
    """A source database with `users`, `orders` and `big`, and an empty destination database."""
    suffix = support.random_suffix()
    source, destination = f"sdk_bulk_src_{suffix}", f"sdk_bulk_dst_{suffix}"
    support.create_databases(server.dsn, [source, destination])
    with server.connect(source) as conn:
        conn.execute(users_sql(ROWS))
        conn.execute("create table orders (id int primary key, total numeric(10,2), note text);"
                     "insert into orders select g, g * 1.5, 'n' || g from generate_series(1, 500) g;"
                     "create table big (like users including all);")
        conn.execute(f"insert into big select g, 'b' || g, null, null, null, 1, 1.00, true, now(), now(), null, 'US' "
                     f"from generate_series(1, {BIG_ROWS}) g")
    yield source, destination
    support.drop_databases(server.dsn, [source, destination])


def rows(server, database: str, query: str) -> list[tuple]:
    with server.connect(database) as conn:
        return conn.execute(query).fetchall()


def wait(pt: Polytomic, sync_id: str, execution_id: str):
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        execution = pt.bulk_sync.executions.get(sync_id, execution_id).data
        if execution.status in TERMINAL:
            return execution
        assert time.monotonic() < deadline, f"bulk execution not done after {TIMEOUT_S}s: {execution!r}"
        time.sleep(0.3)


def run(pt: Polytomic, sync_id: str, **options):
    started = pt.bulk_sync.start(sync_id, **options).data
    execution = wait(pt, sync_id, started.id)
    assert execution.status == "completed", f"{execution!r}"
    return execution


USERS = "select id, email, first_name, last_name, company, score, revenue, active, created_at, updated_at, " \
        "attributes::text, country from users order by id"


def test_postgres_into_postgres(server, databases, pt: Polytomic):
    source_db, destination_db = databases
    src = pt.connections.create(name="pg-src", type="postgresql",
                                configuration=server.postgres_configuration(source_db, "pw")).data
    dst = pt.connections.create(name="pg-dst", type="postgresql",
                                configuration=server.postgres_configuration(destination_db, "pw")).data
    schemas = pt.bulk_sync.get_source(src.id, include_fields=True).data.schemas
    assert {"public.users", "public.orders", "public.big"} <= {s.id for s in schemas}
    users = next(s for s in schemas if s.id == "public.users")
    assert [f.id for f in users.fields if f.is_primary_key] == ["id"]

    sync = pt.bulk_sync.create(
        name="pg -> pg bulk", source_connection_id=src.id, destination_connection_id=dst.id,
        destination_configuration={"schema": "public"}, mode="replicate", active=True,
        default_schedule=BulkSyncDefaultScheduleRequest(frequency="manual"),
        schemas=[SchemaConfiguration(id="public.users", tracking_field="updated_at"),
                 SchemaConfiguration(id="public.orders", fields=["id", "total"])],
    ).data
    execution = run(pt, sync.id)
    by_schema = {s.schema_: s for s in execution.schemas}
    assert by_schema["public.users"].record_count == ROWS
    assert by_schema["public.orders"].record_count == 500
    assert execution.record_count == ROWS + 500
    assert rows(server, destination_db, USERS) == rows(server, source_db, USERS)
    assert rows(server, destination_db, "select * from orders order by id") == \
        rows(server, source_db, "select id, total from orders order by id"), "only the selected fields"

    with server.connect(source_db) as conn:
        conn.execute("insert into users select g, 'new' || g, null, null, null, 1, 2.50, true, now(), now(), null, 'FR'"
                     " from generate_series(1000001, 1000010) g;"
                     "update users set email = 'changed' || id, updated_at = now() where id <= 20;"
                     "delete from users where id between 100 and 104;")
    execution = run(pt, sync.id, schemas=["public.users"])
    assert [s.schema_ for s in execution.schemas] == ["public.users"], "only the schema asked for ran"
    assert rows(server, destination_db, USERS) == rows(server, source_db, USERS)

    status = pt.bulk_sync.get_status(sync.id).data
    assert status.last_execution.id == execution.id
    listed = pt.bulk_sync.executions.list(sync.id).data
    assert len(listed) == 2
    events = [(e.type, e.event.dict()) for e in pt.events.list(limit=100).data or []]
    events = [(t, p) for t, p in events if p.get("execution_id") == execution.id]
    assert [t for t, _ in events] == ["bulk_sync.running", "bulk_sync.completed"], events
    assert events[1][1]["sync_name"] == "pg -> pg bulk" and events[1][1]["source_connection_id"] == src.id, events

    pt.bulk_sync.delete(sync.id)
    with pytest.raises(ApiError) as err:
        pt.bulk_sync.get(sync.id)
    assert err.value.status_code == 404


def test_a_second_start_while_running_is_a_conflict(server, databases, pt: Polytomic):
    source_db, destination_db = databases
    src = pt.connections.create(name="pg-big", type="postgresql",
                                configuration=server.postgres_configuration(source_db, "pw")).data
    dst = pt.connections.create(name="pg-big-dst", type="postgresql",
                                configuration=server.postgres_configuration(destination_db, "pw")).data
    sync = pt.bulk_sync.create(
        name="big", source_connection_id=src.id, destination_connection_id=dst.id,
        destination_configuration={"schema": "public"}, mode="snapshot", active=True,
        default_schedule=BulkSyncDefaultScheduleRequest(frequency="manual"), schemas=["public.big"],
    ).data
    first = pt.bulk_sync.start(sync.id).data
    with pytest.raises(ApiError) as err:
        pt.bulk_sync.start(sync.id, request_options={"max_retries": 0})
    assert err.value.status_code == 409
    execution = wait(pt, sync.id, first.id)
    assert execution.status == "completed"
    assert execution.schemas[0].record_count == BIG_ROWS
    pt.bulk_sync.delete(sync.id)


MARIADB_ORDERS = """
create table orders (
    id        int primary key,
    customer  varchar(64) character set utf8mb4 not null,
    amount    decimal(38, 10),
    placed_at datetime(6),
    paid      tinyint(1),
    note      text character set utf8mb4
)"""


def mariadb_orders(n: int) -> tuple:
    amount = None if n % 7 == 0 else decimal.Decimal(f"{n * 1234}.{n:010d}")
    return (n, f"Cliënt {n} 🚀", amount, dt.datetime(2021, 1, 1, 0, 0, 0, n) + dt.timedelta(hours=n),
            n % 2 == 0, None if n % 3 == 0 else f"note {n}")


def test_mariadb_into_postgres(server, databases, pt: Polytomic):
    _, destination_db = databases
    database = f"sdk_bulk_my_{support.random_suffix()}"
    admin = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, password=MARIADB_PASSWORD, autocommit=True)
    connect: Callable[[], pymysql.connections.Connection] = lambda: pymysql.connect(  # noqa: E731
        host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, password=MARIADB_PASSWORD, database=database,
        charset="utf8mb4",
        autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"create database {database} character set utf8mb4")
        with connect() as conn, conn.cursor() as cur:
            cur.execute(MARIADB_ORDERS)
            cur.executemany("insert into orders values (%s, %s, %s, %s, %s, %s)", [mariadb_orders(n) for n in range(1, 301)])
        src = pt.connections.create(name="my-src", type="mysql", configuration={
            "hostname": MARIADB_HOST, "port": MARIADB_PORT, "database": database, "username": MARIADB_USER,
            "password": MARIADB_PASSWORD, "ssl": False}).data
        dst = pt.connections.create(name="pg-my-dst", type="postgresql",
                                    configuration=server.postgres_configuration(destination_db, "pw")).data
        sync = pt.bulk_sync.create(
            name="mariadb -> pg", source_connection_id=src.id, destination_connection_id=dst.id,
            destination_configuration={"schema": "from_mariadb"}, mode="replicate", active=True,
            default_schedule=BulkSyncDefaultScheduleRequest(frequency="manual"), schemas=[f"{database}.orders"],
        ).data

        def same() -> None:
            with connect() as conn, conn.cursor() as cur:
                cur.execute("select id, customer, amount, placed_at, paid, note from orders order by id")
                expected = [(r[0], r[1], r[2], r[3], None if r[4] is None else bool(r[4]), r[5]) for r in cur.fetchall()]
            actual = rows(server, destination_db,
                          "select id, customer, amount, placed_at, paid, note from from_mariadb.orders order by id")
            assert actual == expected

        run(pt, sync.id)
        same()
        with connect() as conn, conn.cursor() as cur:
            cur.execute("update orders set note = 'changed ✓' where id <= 10")
            cur.execute("delete from orders where id between 50 and 59")
            cur.execute("insert into orders values (1000, 'late', 1.5, now(), 1, null)")
        run(pt, sync.id)
        same()
        pt.bulk_sync.delete(sync.id)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists {database}")
        admin.close()
