"""PostgreSQL → Parquet files on `s3://` (a local moto server), driven through the official SDK:
a files connection, a snapshot bulk sync (files keep whole copies: snapshot is their only mode),
a full run, then a run after inserts, updates and deletes at the source. After each run the
table's latest copy — found as readers find it, `_latest.json` → its manifest → the manifest's
Parquet files — is read back with pyarrow and equals the source row for row.

The layout and the type mapping are docs/ARCHITECTURE.md's "File destinations".
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Iterator

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polytomic import BulkSyncDefaultScheduleRequest, Polytomic
from polytomic.core.api_error import ApiError

import support
from test_bulk_sync_flow import pt, rows, run  # noqa: F401  (pt is a fixture)

BUCKET = "lake"
PREFIX = "warehouse"
DATASET = "exports"
ROWS = 3_000

TABLE = """
create table items (
    id      int primary key,
    big     bigint,
    price   numeric(12, 3),
    ratio   numeric,
    name    text,
    active  bool,
    seen_at timestamptz,
    born    date,
    doc     json,
    tags    jsonb
);
insert into items
select g,
       case when g % 11 = 0 then null else g::bigint * 10000000000 + g end,
       case when g % 13 = 0 then null else g * 1.125 - 500 end,
       case when g % 17 = 0 then null when g = 5 then 'NaN' else g / 7.0 end,
       case when g % 19 = 0 then null else 'name ' || g || ' ✓ "quoted", ' || chr(10) || 'line' end,
       case when g % 23 = 0 then null else g % 2 = 0 end,
       case when g % 29 = 0 then null else timestamptz '2024-02-29 12:34:56.789012+00' + g * interval '1 hour 7 seconds' end,
       case when g % 31 = 0 then null else date '1999-12-31' + g end,
       case when g % 37 = 0 then null else ('{"n": ' || g || ',  "spaced": [1, 2]}')::json end,
       case when g % 41 = 0 then null else jsonb_build_object('tag', 't' || g % 5, 'list', jsonb_build_array(g, null)) end
from generate_series(1, {rows}) g
"""

CHANGES = """
insert into items (id, big, price, ratio, name, active, seen_at, born, doc, tags)
select g, -g, 0.001, '-Infinity', 'new', true, now(), current_date, '[]', '{}'
from generate_series(100001, 100040) g;
update items set name = 'changed', price = price + 1, active = not active, doc = null where id <= 25;
update items set big = null, tags = '{"nested": {"x": true}}' where id between 500 and 510;
delete from items where id between 1000 and 1099;
"""

# The source as the files should hold it: numeric and JSON as the exact text PostgreSQL sends
# (the Parquet columns hold that text). A PostgreSQL source types every numeric column, with a
# precision or not, as `numeric`: its column is text, not DECIMAL.
SOURCE = "select id, big, price::text, ratio::text, name, active, seen_at, born, doc::text, tags::text " \
         "from items order by id"
COLUMNS = ["id", "big", "price", "ratio", "name", "active", "seen_at", "born", "doc", "tags"]

# docs/ARCHITECTURE.md: what pyarrow reads each column as.
ARROW_TYPES = {
    "id": pa.int32(),
    "big": pa.int64(),
    "price": pa.string(),
    "ratio": pa.string(),
    "name": pa.string(),
    "active": pa.bool_(),
    "seen_at": pa.timestamp("us", tz="UTC"),
    "born": pa.date32(),
}


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Moto]:
    with support.stop_session_on_startup_error("tests/sdk"):
        moto = support.start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield moto
    finally:
        support.stop(moto.process)


@pytest.fixture(scope="module")
def s3(moto: support.Moto):
    client = boto3.client("s3", endpoint_url=moto.endpoint, region_name="eu-west-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return client


@pytest.fixture(scope="module")
def source_db(server) -> Iterator[str]:
    name = f"sdk_parquet_src_{support.random_suffix()}"
    support.create_databases(server.dsn, [name])
    with server.connect(name) as conn:
        conn.execute(TABLE.replace("{rows}", str(ROWS)))
    yield name
    support.drop_databases(server.dsn, [name])


def get_json(s3, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def read_latest(s3, table: str) -> tuple[dict, dict, pa.Table]:
    """`_latest.json`, the manifest it names and the manifest's files as one table, read the way
    readers read them; checks that the manifest agrees with its files."""
    latest = get_json(s3, f"{PREFIX}/{DATASET}/{table}/_latest.json")
    manifest = get_json(s3, f"{PREFIX}/{latest['manifest']}")
    assert manifest["execution"] == latest["execution"]
    assert latest["manifest"] == f"{DATASET}/{table}/{latest['execution']}/_manifest.json"
    assert manifest["files"], f"a copy has files: {manifest}"
    parts = []
    for file in manifest["files"]:
        assert file["path"].startswith(f"{DATASET}/{table}/{latest['execution']}/part-"), file
        assert file["path"].endswith(".parquet"), file
        body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{file['path']}")["Body"].read()
        assert len(body) == file["bytes"], file
        part = pq.read_table(pa.BufferReader(body))
        assert part.num_rows == file["rows"], file
        parts.append(part)
    copy = pa.concat_tables(parts)
    assert copy.num_rows == manifest["rows"] == sum(f["rows"] for f in manifest["files"])
    assert [c["name"] for c in manifest["schema"]] == copy.column_names
    return latest, manifest, copy


def as_rows(copy: pa.Table) -> list[tuple]:
    """The copy's rows in the source query's column order, sorted by id."""
    assert copy.column_names == COLUMNS
    for name, expected in ARROW_TYPES.items():
        assert copy.schema.field(name).type == expected, f"{name}: {copy.schema.field(name).type}"
    for name in ("price", "ratio"):
        assert copy.schema.field(name).metadata == {b"syncline.type": b"numeric"}, copy.schema.field(name)
    for name in ("doc", "tags"):
        assert copy.schema.field(name).type.extension_name == "arrow.json", copy.schema.field(name).type
    columns = [copy.column(name).to_pylist() for name in COLUMNS]
    return sorted(zip(*columns), key=lambda row: row[0])


def test_postgres_into_parquet_on_s3(server, pt: Polytomic, source_db: str, moto: support.Moto, s3):
    src = pt.connections.create(name="pg-parquet-src", type="postgresql",
                                configuration=server.postgres_configuration(source_db, "pw")).data
    lake = pt.connections.create(name="lake", type="files", configuration={
        "url": f"s3://{BUCKET}/{PREFIX}?region=eu-west-1&endpoint={moto.endpoint}&allow_http=true",
        "format": "parquet",
        "aws_access_key_id": "test",
        "aws_secret_access_key": "secret-of-the-lake",
    }).data
    server.passwords.append("secret-of-the-lake")
    modes = {m.id for m in pt.bulk_sync.get_destination(lake.id).data.modes}
    assert modes == {"snapshot"}, "files keep whole copies"
    with pytest.raises(ApiError) as refused:
        pt.bulk_sync.create(
            name="replicate into files", source_connection_id=src.id, destination_connection_id=lake.id,
            destination_configuration={"schema": DATASET}, mode="replicate",
            default_schedule=BulkSyncDefaultScheduleRequest(frequency="manual"), schemas=["public.items"],
        )
    assert refused.value.status_code == 422, refused.value.body
    assert "mode" in str(refused.value.body), refused.value.body

    sync = pt.bulk_sync.create(
        name="pg -> parquet", source_connection_id=src.id, destination_connection_id=lake.id,
        destination_configuration={"schema": DATASET}, mode="snapshot", active=True,
        default_schedule=BulkSyncDefaultScheduleRequest(frequency="manual"), schemas=["public.items"],
    ).data

    first_run = run(pt, sync.id)
    assert first_run.schemas[0].record_count == ROWS
    latest, manifest, copy = read_latest(s3, "items")
    assert latest["execution"] == first_run.id
    source = rows(server, source_db, SOURCE)
    assert len(source) == ROWS
    assert as_rows(copy) == source, "the Parquet copy equals the source"
    some = dict(zip(COLUMNS, source[4]))  # id 5: the NaN, and values of every type
    assert some["ratio"] == "NaN" and some["price"] == "-494.375"
    assert isinstance(some["seen_at"], dt.datetime) and isinstance(some["born"], dt.date)
    assert all(any(row[i] is None for row in source) for i in range(1, len(COLUMNS))), "every column has nulls"

    with server.connect(source_db) as conn:
        conn.execute(CHANGES)
    second_run = run(pt, sync.id)
    changed = rows(server, source_db, SOURCE)
    assert len(changed) == ROWS + 40 - 100
    assert second_run.schemas[0].record_count == len(changed), "a snapshot copies the whole table"
    latest, manifest, copy = read_latest(s3, "items")
    assert latest["execution"] == second_run.id
    assert latest["previous"] == first_run.id, "the copy swapped out is kept for readers until the next swap"
    assert as_rows(copy) == changed, "inserts, updates and deletes arrived"
    assert manifest["rows"] == len(changed)

    pt.bulk_sync.delete(sync.id)
