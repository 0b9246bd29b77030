//! The MySQL / MariaDB connector as a bulk sync destination, against the server of
//! `MARIADB_URL` (default the one on this machine, root without a password): appends and upserts
//! committed with their markers, swaps, sweeps, deletes and retirements, and every field type
//! loaded and read back. Each test works in a database of its own, dropped at the end.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use chrono::{NaiveDate, TimeZone, Utc};
use futures::{FutureExt, StreamExt, future::BoxFuture};
use mysql_async::prelude::Queryable;
use serde_json::json;
use syncline_core::{
    config::Deadlines,
    connector::{BulkDestination, Context, DynConnector, Keys, LoadMode, LoadRequest, TableSpec},
    egress::Egress,
    record::{Field, FieldType, RecordBatch, RecordBatchBuilder, Schema, Value},
};
use uuid::Uuid;

#[path = "support/mariadb.rs"]
mod server;

fn context() -> Context {
    let deadlines =
        Deadlines { connect: Duration::from_secs(10), query: Duration::from_secs(30), idle: Duration::from_secs(60) };
    Context::new(Arc::new(Egress::new("postgres://postgres@127.0.0.1:5432/postgres", vec![], vec![])), deadlines)
}

fn connector() -> &'static Arc<dyn DynConnector> {
    syncline_connectors::get("mysql").expect("mysql is registered")
}

/// A database of the test's own, its bulk destination, and a connection to look at it.
struct Db {
    name: String,
    admin: mysql_async::Conn,
    destination: Arc<dyn BulkDestination>,
}

impl Db {
    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.name)
    }

    async fn run(&mut self, sql: &str) {
        self.admin.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn rows<T: mysql_async::prelude::FromRow + Send + 'static>(&mut self, sql: &str) -> Vec<T> {
        self.admin.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The tables of the database, by name.
    async fn tables(&mut self) -> Vec<String> {
        let sql = format!("select table_name from information_schema.tables where table_schema = '{}'", self.name);
        let mut tables: Vec<String> = self.rows(&sql).await;
        tables.sort();
        tables
    }

    /// Shapes `table` with `fields`, keyed by `key`.
    async fn shape(&self, table: &str, fields: &[Field], key: &[&str]) {
        let key = key.iter().map(|k| (*k).to_owned()).collect();
        let spec = TableSpec { table: table.to_owned(), fields: fields.to_vec(), key };
        self.destination.shape(&spec).await.unwrap_or_else(|e| panic!("shape {table}: {e}"));
    }

    /// Loads `batch` into `table` in one committed load with `marker`; returns the rows.
    async fn load(&self, table: &str, batch: &RecordBatch, mode: LoadMode, marker: Uuid, soft_delete: Option<&str>) {
        let request = LoadRequest {
            table: table.to_owned(),
            schema: batch.schema().clone(),
            key: vec!["id".into()],
            mode,
            marker,
            soft_delete: soft_delete.map(str::to_owned),
        };
        let mut loader = self.destination.load(request).await.expect("load starts");
        loader.write(batch).await.expect("write");
        assert_eq!(loader.commit().await.expect("commit").rows, batch.len() as u64);
    }
}

/// Runs `test` with a database of its own, dropped afterwards whether the test passed or not.
async fn with_db<F>(test: F)
where
    F: for<'a> FnOnce(&'a mut Db) -> BoxFuture<'a, ()>,
{
    let name = format!("syncline_b_{}", Uuid::new_v4().simple());
    let mut admin = server::admin().await;
    admin.query_drop(format!("create database {name} character set utf8mb4")).await.expect("create database");
    admin.query_drop(format!("use {name}")).await.expect("use");
    admin.query_drop("set time_zone = '+00:00'").await.expect("utc");
    let destination = connector().bulk_destination(&context(), &server::config(&name)).expect("a bulk destination");
    let mut db = Db { name: name.clone(), admin, destination };
    let outcome = AssertUnwindSafe(test(&mut db)).catch_unwind().await;
    db.admin.query_drop(format!("drop database {name}")).await.expect("drop database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! db_test {
    ($name:ident, |$db:ident| $body:block) => {
        #[tokio::test]
        async fn $name() {
            with_db(|$db| FutureExt::boxed(async move $body)).await;
        }
    };
}

fn field(name: &str, field_type: FieldType) -> Field {
    Field { name: name.into(), field_type }
}

/// `id bigint, name text, at timestamptz`.
fn people() -> Vec<Field> {
    vec![field("id", FieldType::Int64), field("name", FieldType::Text), field("at", FieldType::TimestampTz)]
}

/// A batch of `people` rows `(id, name)`, all at the same time.
fn batch(rows: &[(i64, &str)]) -> RecordBatch {
    let mut builder = RecordBatchBuilder::with_capacity(Arc::new(Schema { fields: people() }), 1 << 16);
    let at = Value::TimestampTz(Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap());
    for (id, name) in rows {
        builder.push_row(&[Value::Int(*id), Value::Text((*name).into()), at.clone()]).expect("row");
    }
    builder.finish()
}

/// A batch of the keys `ids`.
fn keys(
    ids: &[i64],
) -> (futures::stream::BoxStream<'static, Result<RecordBatch, syncline_core::connector::ConnectorError>>, Arc<Schema>) {
    let schema = Arc::new(Schema { fields: vec![field("id", FieldType::Int64)] });
    let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 1 << 12);
    for id in ids {
        builder.push_row(&[Value::Int(*id)]).expect("key");
    }
    (futures::stream::iter([Ok(builder.finish())]).boxed(), schema)
}

db_test!(appends_and_upserts_commit_with_their_markers, |db| {
    let table = db.table("people");
    assert_eq!(db.destination.default_schema(), db.name);
    assert_eq!(db.destination.columns(&table).await.expect("columns"), None);
    assert_eq!(db.destination.loaded(&table, Uuid::new_v4()).await.expect("no markers table"), None);
    let mut fields = people();
    fields.push(field("deleted_at", FieldType::TimestampTz));
    db.shape(&table, &fields, &["id"]).await;
    assert_eq!(db.destination.columns(&table).await.expect("columns"), Some(fields.clone()));

    // Enough rows for several statements.
    let many: Vec<(i64, String)> = (1..=5000).map(|i| (i, format!("person {i} ✓"))).collect();
    let many: Vec<(i64, &str)> = many.iter().map(|(i, n)| (*i, n.as_str())).collect();
    let first = Uuid::new_v4();
    db.load(&table, &batch(&many), LoadMode::Append, first, None).await;
    assert_eq!(db.destination.loaded(&table, first).await.expect("loaded"), Some(5000));
    assert_eq!(db.destination.loaded(&table, Uuid::new_v4()).await.expect("loaded"), None);
    assert_eq!(db.destination.count(&table).await.expect("count"), 5000);

    // A load never committed leaves neither rows nor marker.
    let abandoned = Uuid::new_v4();
    let request = LoadRequest {
        table: table.clone(),
        schema: Arc::new(Schema { fields: people() }),
        key: vec!["id".into()],
        mode: LoadMode::Append,
        marker: abandoned,
        soft_delete: None,
    };
    let mut loader = db.destination.load(request).await.expect("load starts");
    loader.write(&batch(&[(9001, "never")])).await.expect("write");
    drop(loader);
    assert_eq!(db.destination.loaded(&table, abandoned).await.expect("loaded"), None);
    assert_eq!(db.destination.count(&table).await.expect("count"), 5000);

    // Appending a key again fails the whole load.
    let request = LoadRequest {
        table: table.clone(),
        schema: Arc::new(Schema { fields: people() }),
        key: vec![],
        mode: LoadMode::Append,
        marker: Uuid::new_v4(),
        soft_delete: None,
    };
    let mut loader = db.destination.load(request).await.expect("load starts");
    let duplicate = loader.write(&batch(&[(9002, "new"), (1, "again")])).await;
    assert!(duplicate.is_err(), "a duplicate key is an error");
    drop(loader);

    db.run(&format!("update {table} set deleted_at = '2024-01-01' where id in (2, 3)")).await;
    let second = Uuid::new_v4();
    db.load(&table, &batch(&[(2, "two again"), (5001, "new")]), LoadMode::Upsert, second, Some("deleted_at")).await;
    assert_eq!(db.destination.loaded(&table, second).await.expect("loaded"), Some(2));
    let rows: Vec<(i64, String, Option<String>)> = db
        .rows(&format!(
            "select id, name, cast(deleted_at as char) from {table} where id in (1, 2, 3, 5001) order by id"
        ))
        .await;
    assert_eq!(
        rows,
        [
            (1, "person 1 ✓".into(), None),
            (2, "two again".into(), None),
            (3, "person 3 ✓".into(), Some("2024-01-01 00:00:00.000000".into())),
            (5001, "new".into(), None),
        ]
    );

    // Upserting rows of nothing but the key leaves them as they are.
    let key_only = Arc::new(Schema { fields: vec![field("id", FieldType::Int64)] });
    let mut builder = RecordBatchBuilder::with_capacity(key_only, 64);
    builder.push_row(&[Value::Int(1)]).expect("row");
    db.load(&table, &builder.finish(), LoadMode::Upsert, Uuid::new_v4(), None).await;
    assert_eq!(db.destination.count(&table).await.expect("count"), 5001);
});

db_test!(an_update_load_changes_only_its_columns_of_the_rows_it_finds, |db| {
    let table = db.table("people");
    db.shape(&table, &people(), &["id"]).await;
    db.load(&table, &batch(&[(1, "one"), (2, "two")]), LoadMode::Append, Uuid::new_v4(), None).await;
    let schema = Arc::new(Schema { fields: vec![field("id", FieldType::Int64), field("name", FieldType::Text)] });
    let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 64);
    for (id, name) in [(2, "two again"), (3, "three")] {
        builder.push_row(&[Value::Int(id), Value::Text(name.into())]).expect("row");
    }
    let marker = Uuid::new_v4();
    let request = LoadRequest {
        table: table.clone(),
        schema,
        key: vec!["id".into()],
        mode: LoadMode::Update,
        marker,
        soft_delete: None,
    };
    let mut loader = db.destination.load(request).await.expect("load starts");
    loader.write(&builder.finish()).await.expect("write");
    assert_eq!(loader.commit().await.expect("commit").rows, 1, "one of the two rows is there");
    assert_eq!(db.destination.loaded(&table, marker).await.expect("loaded"), Some(1));
    let rows: Vec<(i64, String, bool)> =
        db.rows(&format!("select id, name, `at` is not null from {table} order by id")).await;
    assert_eq!(rows, [(1, "one".into(), true), (2, "two again".into(), true)], "other columns kept, nothing added");
});

/// Every field type with a value of it, and how MariaDB shows it (`cast(… as char)`).
fn cases() -> Vec<(FieldType, Value, &'static str)> {
    let at = NaiveDate::from_ymd_opt(2024, 2, 29).expect("date");
    vec![
        (FieldType::Bool, Value::Bool(true), "1"),
        (FieldType::Int16, Value::Int(-12), "-12"),
        (FieldType::Int32, Value::Int(1 << 20), "1048576"),
        (FieldType::Int64, Value::Int(i64::MAX), "9223372036854775807"),
        (FieldType::Float32, Value::Float(1.5), "1.5"),
        (FieldType::Float64, Value::Float(-2.25e300), "-2.25e300"),
        (FieldType::Numeric, Value::Decimal("12345.5".into()), "12345.500000000000000000000000000000"),
        (FieldType::Decimal { precision: 12, scale: 2 }, Value::Decimal("-1234567890.12".into()), "-1234567890.12"),
        (FieldType::Text, Value::Text("héllo 👋🏽 'wörld'".into()), "héllo 👋🏽 'wörld'"),
        (FieldType::Bytes, Value::Bytes(vec![b'a', 0, b'z']), "a\0z"),
        (FieldType::Date, Value::Date(at), "2024-02-29"),
        (
            FieldType::Time,
            Value::Time(at.and_hms_micro_opt(23, 59, 59, 999_999).expect("time").time()),
            "23:59:59.999999",
        ),
        (
            FieldType::Timestamp,
            Value::Timestamp(at.and_hms_micro_opt(3, 4, 5, 123_456).expect("timestamp")),
            "2024-02-29 03:04:05.123456",
        ),
        (
            FieldType::TimestampTz,
            Value::TimestampTz(Utc.with_ymd_and_hms(1999, 12, 31, 23, 0, 1).unwrap()),
            "1999-12-31 23:00:01.000000",
        ),
        (
            FieldType::Uuid,
            Value::Uuid(Uuid::parse_str("0b5d1a7e-95b4-4c1e-9a43-7f1c2e3d4b5a").expect("uuid")),
            "0b5d1a7e-95b4-4c1e-9a43-7f1c2e3d4b5a",
        ),
        (FieldType::Json, Value::Json(json!({"a": [1, "ü"]})), r#"{"a":[1,"ü"]}"#),
        (FieldType::Jsonb, Value::Json(json!({"emoji": "🙂"})), r#"{"emoji":"🙂"}"#),
        (FieldType::List(Box::new(FieldType::Int32)), Value::List(vec![Value::Int(1), Value::Null]), "[1,null]"),
    ]
}

db_test!(every_type_loads_and_reads_back_as_created, |db| {
    let table = db.table("typed");
    let cases = cases();
    let mut fields = vec![field("id", FieldType::Int64)];
    fields.extend(cases.iter().enumerate().map(|(i, (ty, ..))| field(&format!("c{i}"), ty.clone())));
    db.shape(&table, &fields, &["id"]).await;
    assert_eq!(db.destination.columns(&table).await.expect("columns"), Some(fields.clone()), "types survive");

    let mut builder = RecordBatchBuilder::with_capacity(Arc::new(Schema { fields: fields.clone() }), 1 << 16);
    let values: Vec<Value> = std::iter::once(Value::Int(1)).chain(cases.iter().map(|(_, v, _)| v.clone())).collect();
    builder.push_row(&values).expect("values");
    let nulls: Vec<Value> = std::iter::once(Value::Int(2)).chain(cases.iter().map(|_| Value::Null)).collect();
    builder.push_row(&nulls).expect("nulls");
    db.load(&table, &builder.finish(), LoadMode::Append, Uuid::new_v4(), None).await;

    for (i, (ty, _, shown)) in cases.iter().enumerate() {
        let sql = format!("select cast(c{i} as char), c{i} is null from {table} order by id");
        let rows: Vec<(Option<Vec<u8>>, bool)> = db.rows(&sql).await;
        assert_eq!(rows[0].0.as_deref(), Some(shown.as_bytes()), "{ty:?}");
        assert!(rows[1].1, "{ty:?} NULL");
    }

    // A field new at the source becomes a column; columns the spec lacks stay.
    let mut more = fields[..2].to_vec();
    more.push(field("added", FieldType::Uuid));
    db.shape(&table, &more, &["id"]).await;
    let columns = db.destination.columns(&table).await.expect("columns").expect("a table");
    assert_eq!(columns.len(), fields.len() + 1);
    assert_eq!(columns.last(), more.last());

    // A value that does not fit fails the load instead of being cut.
    let narrow = db.table("narrow");
    let decimal = vec![field("id", FieldType::Int64), field("d", FieldType::Decimal { precision: 5, scale: 2 })];
    db.shape(&narrow, &decimal, &["id"]).await;
    let schema = Arc::new(Schema { fields: decimal });
    let mut rows = RecordBatchBuilder::with_capacity(schema.clone(), 64);
    rows.push_row(&[Value::Int(1), Value::Decimal("123456.78".into())]).expect("row");
    let request = LoadRequest {
        table: narrow,
        schema,
        key: vec![],
        mode: LoadMode::Append,
        marker: Uuid::new_v4(),
        soft_delete: None,
    };
    let mut loader = db.destination.load(request).await.expect("load starts");
    let error = loader.write(&rows.finish()).await.expect_err("out of range");
    assert_eq!(error.class, syncline_core::connector::ErrorClass::Permanent, "{error}");
});

db_test!(swaps_replace_tables_at_once, |db| {
    let table = db.table("people");
    let long = db.table(&"x".repeat(64));
    for target in [&table, &long] {
        let shadow = db.destination.shadow(target, Uuid::new_v4());
        assert!(shadow.len() - db.name.len() - 1 <= 64, "{shadow}");
        db.shape(&shadow, &people(), &["id"]).await;
        db.load(&shadow, &batch(&[(1, "first")]), LoadMode::Append, Uuid::new_v4(), None).await;
        db.destination.swap(&shadow, target).await.expect("the first swap");
        assert_eq!(db.destination.count(target).await.expect("count"), 1);
    }

    // Readers meanwhile always find the table, old or new.
    let mut reader = server::admin().await;
    let counting = format!("select count(*) from {table}");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let count: Option<u64> = reader.query_first(&counting).await.expect("the table is always there");
                seen.insert(count.expect("a count"));
            }
            seen
        }
    });
    for round in 2..=6 {
        let shadow = db.destination.shadow(&table, Uuid::new_v4());
        db.shape(&shadow, &people(), &["id"]).await;
        let rows: Vec<(i64, &str)> = (1..=round).map(|i| (i, "row")).collect();
        db.load(&shadow, &batch(&rows), LoadMode::Append, Uuid::new_v4(), None).await;
        db.destination.swap(&shadow, &table).await.expect("swap");
        assert_eq!(db.destination.count(&table).await.expect("count"), round as u64);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reading.await.expect("reader");
    assert!(seen.iter().all(|n| (1..=6).contains(n)), "{seen:?}");
    let tables = db.tables().await;
    assert_eq!(tables, ["_syncline_loads".to_owned(), "people".into(), "x".repeat(64)], "no copy is left behind");
});

db_test!(sweeps_and_deletes_remove_or_mark_rows, |db| {
    for soft in [None, Some("deleted_at")] {
        let table = db.table(if soft.is_some() { "soft" } else { "hard" });
        let mut fields = people();
        fields.extend(soft.map(|c| field(c, FieldType::TimestampTz)));
        db.shape(&table, &fields, &["id"]).await;
        let rows: Vec<(i64, &str)> = (1..=10).map(|i| (i, "row")).collect();
        db.load(&table, &batch(&rows), LoadMode::Append, Uuid::new_v4(), None).await;

        // The source has all but 3, 4 and 5.
        let (stream, schema) = keys(&[1, 2, 6, 7, 8, 9, 10, 11]);
        assert_eq!(db.destination.delete_keys(&table, (stream, schema, Keys::Unlisted), soft).await.expect("sweep"), 3);
        let (stream, schema) = keys(&[9, 10, 10, 42]);
        assert_eq!(db.destination.delete_keys(&table, (stream, schema, Keys::Listed), soft).await.expect("delete"), 2);
        let (stream, schema) = keys(&[1, 2, 6, 7, 8, 11]);
        assert_eq!(
            db.destination.delete_keys(&table, (stream, schema, Keys::Unlisted), soft).await.expect("sweep again"),
            0,
            "{soft:?}"
        );

        let remaining = match soft {
            None => format!("select id from {table} order by id"),
            Some(c) => format!("select id from {table} where {c} is null order by id"),
        };
        assert_eq!(db.rows::<i64>(&remaining).await, [1, 2, 6, 7, 8]);
        assert_eq!(db.destination.count(&table).await.expect("count"), if soft.is_some() { 10 } else { 5 });
    }
});

db_test!(retire_counts_rows_gone_and_carries_soft_deleted_ones, |db| {
    let mut fields = people();
    fields.push(field("deleted_at", FieldType::TimestampTz));
    for soft in [None, Some("deleted_at")] {
        let table = db.table(if soft.is_some() { "soft" } else { "hard" });
        db.shape(&table, &fields, &["id"]).await;
        let rows: Vec<(i64, &str)> = (1..=6).map(|i| (i, "old")).collect();
        db.load(&table, &batch(&rows), LoadMode::Append, Uuid::new_v4(), None).await;
        db.run(&format!("update {table} set deleted_at = '2024-01-01' where id = 6")).await;

        // The reload lacks 4, 5 and (deleted before) 6.
        let shadow = db.destination.shadow(&table, Uuid::new_v4());
        db.shape(&shadow, &fields, &["id"]).await;
        db.load(&shadow, &batch(&[(1, "new"), (2, "new"), (3, "new")]), LoadMode::Append, Uuid::new_v4(), None).await;
        let retired = db.destination.retire(&table, &shadow, &["id".into()], soft).await.expect("retire");
        db.destination.swap(&shadow, &table).await.expect("swap");
        let kept: Vec<(i64, String, bool)> =
            db.rows(&format!("select id, name, deleted_at is not null from {table} order by id")).await;
        match soft {
            None => {
                assert_eq!(retired, 3);
                assert_eq!(kept.len(), 3);
            }
            Some(_) => {
                assert_eq!(retired, 2, "6 was marked before");
                let expected = [
                    (1, "new", false),
                    (2, "new", false),
                    (3, "new", false),
                    (4, "old", true),
                    (5, "old", true),
                    (6, "old", true),
                ];
                let expected: Vec<(i64, String, bool)> =
                    expected.iter().map(|(i, n, d)| (*i, (*n).to_owned(), *d)).collect();
                assert_eq!(kept, expected);
                let marked: Vec<String> =
                    db.rows(&format!("select cast(deleted_at as char) from {table} where id = 6")).await;
                assert_eq!(marked, ["2024-01-01 00:00:00.000000"], "an earlier mark stays");
            }
        }
    }
});
