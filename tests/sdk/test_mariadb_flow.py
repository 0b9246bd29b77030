"""The tier-1 model-sync flow across databases, driven through the official Polytomic SDK:
MariaDB → PostgreSQL and PostgreSQL → MariaDB, each with a composite identity
(`identities`, strategy `and`) over every type the MariaDB connector maps.

For each direction: run 1 inserts every record and the destination equals the model value for
value; a 1% change sends exactly those records; a third run sends nothing.

MariaDB is the server of ``MARIADB_URL`` (default ``mysql://root@127.0.0.1:3306/test``: root
without a password), made sure of by ``scripts/services.sh``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import os
import urllib.parse
from typing import Iterator, Optional

import pymysql
import pytest
from polytomic import Identity, ModelSyncIdentities, ModelSyncV5Target, Polytomic, Schedule, Source, SyncField

import support
from test_model_sync_flow import EXECUTION_TIMEOUT_S, describe, wait_for_execution

ROWS = 1000
CHANGED = ROWS // 100
COLUMNS = ("region", "id", "customer", "amount", "placed_at", "paid", "meta", "note")
KEY = ("region", "id")
MARIADB_URL = urllib.parse.urlsplit(os.environ.get("MARIADB_URL", "mysql://root@127.0.0.1:3306/test"))
MARIADB_HOST = MARIADB_URL.hostname or "127.0.0.1"
MARIADB_PORT = MARIADB_URL.port or 3306
MARIADB_USER = urllib.parse.unquote(MARIADB_URL.username or "root")
MARIADB_PASSWORD = urllib.parse.unquote(MARIADB_URL.password or "")

MARIADB_TABLE = """
create table orders (
    region    varchar(8) not null,
    id        int not null,
    customer  varchar(64) character set utf8mb4 not null,
    amount    decimal(38, 10),
    placed_at datetime(6),
    paid      tinyint(1),
    meta      json,
    note      text character set utf8mb4,
    primary key (region, id)
)"""

POSTGRES_TABLE = """
create table orders (
    region    text not null,
    id        integer not null,
    customer  text not null,
    amount    numeric(38, 10),
    placed_at timestamp,
    paid      boolean,
    meta      jsonb,
    note      text,
    primary key (region, id)
)"""


def rows() -> list[tuple]:
    """The model: two regions sharing ids (only the pair identifies a record), emoji, exact
    decimals with 10 places, microsecond timestamps, booleans, JSON and NULLs."""
    out = []
    for n in range(ROWS):
        region = ("eu", "us")[n % 2]
        ident = n // 2
        amount = None if n % 37 == 0 else decimal.Decimal(f"{n * 1234567}.{n:010d}") * (-1 if n % 5 == 0 else 1)
        placed = dt.datetime(2020, 1, 1, 0, 0, 0, n) + dt.timedelta(hours=n)
        meta = None if n % 11 == 0 else {"n": n, "tags": ["a", "ü"], "nested": {"ok": n % 2 == 0}}
        note = None if n % 3 == 0 else f"note {n} 🎉"
        out.append((region, ident, f"Cliënt {n} 🚀", amount, placed, n % 2 == 0, meta, note))
    return out


@dataclasses.dataclass
class MariaDb:
    source_db: str
    destination_db: str

    def connect(self, database: str) -> pymysql.connections.Connection:
        return pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, password=MARIADB_PASSWORD,
                               database=database, charset="utf8mb4", autocommit=True)

    def configuration(self, database: str) -> dict:
        password = {"password": MARIADB_PASSWORD} if MARIADB_PASSWORD else {}
        return {"hostname": MARIADB_HOST, "port": MARIADB_PORT, "database": database,
                "username": MARIADB_USER, "ssl": False, **password}


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDb]:
    suffix = support.random_suffix()
    dbs = MariaDb(f"sdk_my_src_{suffix}", f"sdk_my_dst_{suffix}")
    admin = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, password=MARIADB_PASSWORD,
                            autocommit=True)
    try:
        with admin.cursor() as cur:
            for db in (dbs.source_db, dbs.destination_db):
                cur.execute(f"create database {db} character set utf8mb4")
        yield dbs
    finally:
        with admin.cursor() as cur:
            for db in (dbs.source_db, dbs.destination_db):
                cur.execute(f"drop database if exists {db}")
        admin.close()


@pytest.fixture(scope="module")
def pt(server, admin: Polytomic) -> Polytomic:
    """An SDK client with an API key of a fresh organization."""
    suffix = support.random_suffix()
    org = admin.organization.create(name=f"sdk-mariadb-{suffix}").data
    user = admin.users.create(org.id, email=f"admin-{suffix}@example.com").data
    key = admin.users.create_api_key(org.id, user.id).data
    return Polytomic(base_url=server.base_url, token=key.value)


def normalized(row: tuple) -> tuple:
    """A row as comparable values, whichever database it came from."""
    region, ident, customer, amount, placed, paid, meta, note = row
    if isinstance(meta, (str, bytes)):
        meta = json.loads(meta)
    amount = None if amount is None else decimal.Decimal(amount).quantize(decimal.Decimal("1e-10"))
    return (region, int(ident), customer, amount, placed, None if paid is None else bool(paid), meta, note)


def mariadb_rows(db: MariaDb, database: str) -> list[tuple]:
    with db.connect(database) as conn, conn.cursor() as cur:
        cur.execute(f"select {', '.join(COLUMNS)} from orders order by region, id")
        return [normalized(r) for r in cur.fetchall()]


def postgres_rows(server, database: str) -> list[tuple]:
    with server.connect(database) as conn:
        found = conn.execute(f"select {', '.join(COLUMNS)} from orders order by region, id").fetchall()
    return [normalized(r) for r in found]


def assert_same(model: list[tuple], destination: list[tuple], what: str) -> None:
    if model == destination:
        return
    by_key = {r[:2]: r for r in destination}
    differing = [(r, by_key.get(r[:2])) for r in model if by_key.get(r[:2]) != r]
    pytest.fail(f"{what}: {len(model)} model rows, {len(destination)} destination rows; "
                f"{len(differing)} differ, e.g. (model, destination) {differing[:3]}")


def create_sync(pt: Polytomic, source_id: str, destination_id: str, object_name: str, query: str) -> str:
    model = pt.models.create(connection_id=source_id, name=f"orders from {source_id[:8]}",
                             configuration={"query": query}).data
    identities = ModelSyncIdentities(
        mappings=[Identity(source=Source(model_id=model.id, field=k), target=k, function="Equality") for k in KEY],
        strategy="and",
    )
    sync = pt.model_sync.create(
        name=f"orders {source_id[:8]} -> {destination_id[:8]}",
        mode="updateOrCreate",
        active=True,
        schedule=Schedule(frequency="manual"),
        target=ModelSyncV5Target(connection_id=destination_id, object=object_name),
        identities=identities,
        fields=[SyncField(source=Source(model_id=model.id, field=c), target=c) for c in COLUMNS if c not in KEY],
    ).data
    assert sync.identities is not None and [m.target for m in sync.identities.mappings] == list(KEY), sync
    return sync.id


def run(pt: Polytomic, sync_id: str):
    started = pt.model_sync.start(sync_id).data
    done = wait_for_execution(pt, sync_id, started.id, EXECUTION_TIMEOUT_S)
    assert done.status == "completed", f"run did not complete: {describe(done)}"
    return done.counts


def three_runs(pt: Polytomic, sync_id: str, model, destination, change) -> None:
    """Run 1 delivers everything, run 2 exactly the changed 1%, run 3 nothing."""
    counts = run(pt, sync_id)
    assert (counts.insert, counts.update, counts.error) == (ROWS, 0, 0), counts
    assert_same(model(), destination(), "after run 1")
    change()
    counts = run(pt, sync_id)
    assert (counts.insert, counts.update, counts.error) == (0, CHANGED, 0), counts
    assert_same(model(), destination(), "after the 1% change")
    counts = run(pt, sync_id)
    assert (counts.insert, counts.update, counts.total) == (0, 0, 0), f"a run without changes sent {counts}"


def test_mariadb_into_postgres(server, mariadb: MariaDb, pt: Polytomic):
    with mariadb.connect(mariadb.source_db) as conn, conn.cursor() as cur:
        cur.execute(MARIADB_TABLE)
        cur.executemany(
            f"insert into orders ({', '.join(COLUMNS)}) values (%s, %s, %s, %s, %s, %s, %s, %s)",
            [r[:6] + (None if r[6] is None else json.dumps(r[6]), r[7]) for r in rows()],
        )
    with server.connect(server.destination_db) as conn:
        conn.execute(POSTGRES_TABLE)
    source = pt.connections.create(name="mariadb-src", type="mysql",
                                   configuration=mariadb.configuration(mariadb.source_db)).data
    destination = pt.connections.create(
        name="pg-orders", type="postgresql",
        configuration=server.postgres_configuration(server.destination_db, "irrelevant-pw")).data
    sync_id = create_sync(pt, source.id, destination.id, "public.orders",
                          f"select {', '.join(COLUMNS)} from orders")

    def change() -> None:
        with mariadb.connect(mariadb.source_db) as conn, conn.cursor() as cur:
            cur.execute("update orders set amount = amount + 1, note = 'changed ✓' where region = 'eu' and id < %s",
                        (CHANGED,))
            assert cur.rowcount == CHANGED

    three_runs(pt, sync_id, lambda: mariadb_rows(mariadb, mariadb.source_db),
               lambda: postgres_rows(server, server.destination_db), change)


def test_postgres_into_mariadb(server, mariadb: MariaDb, pt: Polytomic):
    from psycopg.types.json import Jsonb

    with server.connect(server.source_db) as conn:
        conn.execute(POSTGRES_TABLE)
        with conn.cursor() as cur:
            cur.executemany(
                f"insert into orders ({', '.join(COLUMNS)}) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                [r[:6] + (None if r[6] is None else Jsonb(r[6]), r[7]) for r in rows()],
            )
    with mariadb.connect(mariadb.destination_db) as conn, conn.cursor() as cur:
        cur.execute(MARIADB_TABLE)
    source = pt.connections.create(
        name="pg-orders-src", type="postgresql",
        configuration=server.postgres_configuration(server.source_db, "irrelevant-pw")).data
    destination = pt.connections.create(name="mariadb-dst", type="mysql",
                                        configuration=mariadb.configuration(mariadb.destination_db)).data
    sync_id = create_sync(pt, source.id, destination.id, f"{mariadb.destination_db}.orders",
                          f"select {', '.join(COLUMNS)} from orders")

    def change() -> None:
        with server.connect(server.source_db) as conn:
            updated = conn.execute(
                "update orders set customer = customer || ' ✓', paid = not paid where region = 'us' and id < %s",
                (CHANGED,)).rowcount
            assert updated == CHANGED

    three_runs(pt, sync_id, lambda: postgres_rows(server, server.source_db),
               lambda: mariadb_rows(mariadb, mariadb.destination_db), change)
