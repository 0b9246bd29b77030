//! The MySQL / MariaDB connector against the server of `MARIADB_URL` (default the one on this
//! machine, root without a password). Each test works in a database of its own, dropped at the end.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use chrono::{NaiveDate, NaiveDateTime};
use futures::{FutureExt, StreamExt};
use mysql_async::prelude::Queryable;
use serde_json::{Value as Json, json};
use syncline_core::{
    config::Deadlines,
    connector::{
        Context, Cursor, Destination, ErrorClass, ObjectSpec, Operation, Operations, Partition, ReadEvent, ReadRequest,
        Readable, RecordFailure, Source, SyncMode, WriteBatch, WriteRequest,
    },
    egress::Egress,
    record::{Field, FieldType, RecordBatch, RecordBatchBuilder, Schema, Value},
};

#[path = "support/mariadb.rs"]
mod server;

fn context(denied: Vec<syncline_core::egress::Rule>) -> Context {
    let deadlines =
        Deadlines { connect: Duration::from_secs(10), query: Duration::from_secs(30), idle: Duration::from_secs(60) };
    Context::new(Arc::new(Egress::new("postgres://postgres@127.0.0.1:5432/postgres", vec![], denied)), deadlines)
}

/// A database of the test's own.
struct Db {
    name: String,
    admin: mysql_async::Conn,
    ctx: Context,
}

impl Db {
    fn config(&self) -> Json {
        server::config(&self.name)
    }

    fn source(&self) -> Arc<dyn Source> {
        connector().source(&self.ctx, &self.config()).expect("a source")
    }

    fn destination(&self) -> Arc<dyn Destination> {
        connector().destination(&self.ctx, &self.config()).expect("a destination")
    }

    async fn run(&mut self, sql: &str) {
        self.admin.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn rows<T: mysql_async::prelude::FromRow + Send + 'static>(&mut self, sql: &str) -> Vec<T> {
        self.admin.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

fn connector() -> &'static Arc<dyn syncline_core::connector::DynConnector> {
    syncline_connectors::get("mysql").expect("mysql is registered")
}

/// Runs `test` in a fresh database and drops it afterwards, whether the test passed or not.
async fn with_db<F>(test: F)
where
    F: for<'a> FnOnce(&'a mut Db) -> futures::future::BoxFuture<'a, ()>,
{
    let name = format!("syncline_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = server::admin().await;
    admin.query_drop(format!("create database {name} character set utf8mb4")).await.expect("create database");
    admin.query_drop(format!("use {name}")).await.expect("use");
    admin.query_drop("set time_zone = '+00:00'").await.expect("utc");
    let mut db = Db { name: name.clone(), admin, ctx: context(vec![]) };
    let outcome = AssertUnwindSafe(test(&mut db)).catch_unwind().await;
    db.admin.query_drop(format!("drop database {name}")).await.expect("drop database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A test that runs `$body` with `$db`, a database of its own.
macro_rules! db_test {
    ($name:ident, |$db:ident| $body:block) => {
        #[tokio::test]
        async fn $name() {
            with_db(|$db| FutureExt::boxed(async move $body)).await;
        }
    };
}

async fn read_all(source: &dyn Source, request: ReadRequest) -> (Vec<RecordBatch>, Vec<Json>) {
    let mut reading = source.read(request).await.expect("read starts");
    let (mut batches, mut checkpoints) = (Vec::new(), Vec::new());
    while let Some(event) = reading.events.next().await {
        match event.expect("read goes on") {
            ReadEvent::Batch(batch) => batches.push(batch),
            ReadEvent::Checkpoint(state) => checkpoints.push(state),
        }
    }
    (batches, checkpoints)
}

fn values(batches: &[RecordBatch]) -> Vec<Vec<Value>> {
    batches.iter().flat_map(|b| b.records().map(|r| r.values().expect("decodes")).collect::<Vec<_>>()).collect()
}

fn request(model: Json, fields: &[&str]) -> ReadRequest {
    ReadRequest::new(Readable::Model(model), fields.iter().map(|f| (*f).to_owned()).collect(), 1000, 1 << 20)
}

fn ts(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").expect("a timestamp")
}

const TYPES: &str = "create table types (
    region varchar(10) not null, id int not null, emoji varchar(50) character set utf8mb4,
    amount decimal(38,10), at datetime(6), ts timestamp(6) null, doc json, flag bit(1), active tinyint(1),
    big bigint unsigned, small smallint, born date, note text, primary key (region, id))";

const TYPE_ROWS: &str = "insert into types values
    ('eu', 1, 'party 🎉 naïve', -1234567890123456789012345678.0123456789, '2024-02-29 23:59:58.123456',
     '2038-01-19 03:14:07.999999', '{\"a\": [1, \"x\"], \"b\": null}', b'1', 1, 18446744073709551615, -32768,
     '1999-12-31', 'first'),
    ('eu', 2, '', 0.0000000001, '1970-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', '[]', b'0', 0, 0, 0,
     '2000-01-01', null),
    ('us', 1, null, null, null, null, null, null, null, null, null, null, null)";

const TYPE_FIELDS: &[&str] =
    &["region", "id", "emoji", "amount", "at", "ts", "doc", "flag", "active", "big", "small", "born", "note"];

fn expected_types() -> Vec<FieldType> {
    vec![
        FieldType::Text,
        FieldType::Int32,
        FieldType::Text,
        FieldType::Decimal { precision: 38, scale: 10 },
        FieldType::Timestamp,
        FieldType::TimestampTz,
        FieldType::Json,
        FieldType::Bool,
        FieldType::Bool,
        FieldType::Decimal { precision: 20, scale: 0 },
        FieldType::Int16,
        FieldType::Date,
        FieldType::Text,
    ]
}

fn expected_rows() -> Vec<Vec<Value>> {
    let text = |s: &str| Value::Text(s.into());
    let date = |y, m, d| Value::Date(NaiveDate::from_ymd_opt(y, m, d).expect("a date"));
    vec![
        vec![
            text("eu"),
            Value::Int(1),
            text("party 🎉 naïve"),
            Value::Decimal("-1234567890123456789012345678.0123456789".into()),
            Value::Timestamp(ts("2024-02-29 23:59:58.123456")),
            Value::TimestampTz(ts("2038-01-19 03:14:07.999999").and_utc()),
            Value::Json(json!({"a": [1, "x"], "b": null})),
            Value::Bool(true),
            Value::Bool(true),
            Value::Decimal("18446744073709551615".into()),
            Value::Int(-32768),
            date(1999, 12, 31),
            text("first"),
        ],
        vec![
            text("eu"),
            Value::Int(2),
            text(""),
            Value::Decimal("0.0000000001".into()),
            Value::Timestamp(ts("1970-01-01 00:00:00")),
            Value::TimestampTz(ts("1970-01-01 00:00:01").and_utc()),
            Value::Json(json!([])),
            Value::Bool(false),
            Value::Bool(false),
            Value::Decimal("0".into()),
            Value::Int(0),
            date(2000, 1, 1),
            Value::Null,
        ],
        [vec![text("us"), Value::Int(1)], vec![Value::Null; 11]].concat(),
    ]
}

db_test!(reads_every_type_exactly, |db| {
    db.run(TYPES).await;
    db.run(TYPE_ROWS).await;
    let source = db.source();
    let table = json!({"table": format!("{}.types", db.name)});

    let fields = source.model_fields(&table).await.expect("fields");
    let types: Vec<FieldType> = fields.iter().map(|f| f.field_type.clone()).collect();
    assert_eq!(types, expected_types());
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, TYPE_FIELDS);

    let mut read = request(table.clone(), TYPE_FIELDS);
    read.order_by = vec!["region".into(), "id".into()];
    let (batches, checkpoints) = read_all(&*source, read).await;
    assert!(checkpoints.is_empty());
    assert_eq!(batches[0].schema().fields, fields);
    assert_eq!(values(&batches), expected_rows());
    // The typed accessors see the same values.
    let first = batches[0].record(0);
    assert_eq!(first.get_str(2), Ok(Some("party 🎉 naïve")));
    assert_eq!(first.get_bool(7), Ok(Some(true)));
    assert_eq!(batches[0].record(2).get(3), Ok(Value::Null));

    // A query model: the same types from the result metadata (JSON included).
    let query = json!({"query": format!("select id, amount, doc, big from {}.types where region = 'eu';", db.name)});
    let fields = source.model_fields(&query).await.expect("query fields");
    let types: Vec<FieldType> = fields.iter().map(|f| f.field_type.clone()).collect();
    assert_eq!(
        types,
        [expected_types()[1].clone(), expected_types()[3].clone(), FieldType::Json, expected_types()[9].clone()]
    );

    let sample = source.sample(&table, 2).await.expect("sample");
    assert_eq!(sample.len(), 2);
    assert_eq!(sample[0]["emoji"], json!("party 🎉 naïve"));
    assert_eq!(sample[0]["amount"], json!("-1234567890123456789012345678.0123456789"));
    assert_eq!(sample[0]["doc"], json!({"a": [1, "x"], "b": null}));

    let catalog = source.discover().await.expect("catalog");
    let stream = catalog.stream(&format!("{}.types", db.name)).expect("the table");
    assert_eq!(stream.key, ["region", "id"]);
    let discovered: Vec<FieldType> = stream.fields.iter().map(|f| f.field_type.clone()).collect();
    assert_eq!(discovered, expected_types());
    assert_eq!(stream.capabilities.cursor_fields, ["id", "at", "ts", "small", "born"]);
    assert!(stream.capabilities.sorted_reads && stream.capabilities.partitionable);

    let estimate = source.estimate_rows(&Readable::Model(table)).await.expect("estimate");
    assert!(estimate.is_some());
    let estimate = source.estimate_rows(&Readable::Model(query)).await.expect("estimate of a query");
    assert!(estimate.is_some());
});

db_test!(zero_dates_fail_the_read_naming_field_and_row, |db| {
    db.run("create table z (id int primary key, born date)").await;
    db.run("set session sql_mode = ''").await;
    db.run("insert into z values (1, '2020-01-01'), (2, '0000-00-00')").await;
    let source = db.source();
    let mut reading = source.read(request(json!({"table": "z"}), &["id", "born"])).await.expect("read starts");
    let mut error = None;
    while let Some(event) = reading.events.next().await {
        if let Err(e) = event {
            error = Some(e);
        }
    }
    let error = error.expect("the zero date is an error, not a NULL");
    assert_eq!(error.class, ErrorClass::Permanent);
    assert!(error.message.contains("\"born\"") && error.message.contains("0000-00-00"), "{error}");
    assert!(error.message.contains("row 1"), "{error}");
});

/// `WriteRequest` for `fields` of `schema` into `object`, identified by `identity`.
fn write_request(object: &str, mode: SyncMode, schema: &Arc<Schema>, identity: &[&str]) -> WriteRequest {
    WriteRequest {
        object: object.into(),
        mode,
        schema: schema.clone(),
        targets: schema.fields.iter().map(|f| f.name.clone()).collect(),
        identity: identity.iter().map(|k| schema.index_of(k).expect("identity field")).collect(),
        shaping: Default::default(),
        matching: Default::default(),
    }
}

fn upserts(batch: RecordBatch) -> WriteBatch {
    WriteBatch { records: batch, operations: Operations::All(Operation::Upsert) }
}

db_test!(writes_are_idempotent_isolate_bad_records_and_delete_exact_keys, |db| {
    db.run(TYPES).await;
    db.run(TYPE_ROWS).await;
    let (batches, _) = read_all(&*db.source(), request(json!({"table": "types"}), TYPE_FIELDS)).await;
    let batch = batches.into_iter().next().expect("one batch");
    let schema = batch.schema().clone();

    // The destination creates the table from the fields; a dry run only says so.
    let destination = db.destination();
    let spec =
        ObjectSpec { object: "copy".into(), fields: schema.fields.clone(), key: vec!["region".into(), "id".into()] };
    let planned = destination.apply(&spec, true).await.expect("dry run");
    assert!(planned[0].description.starts_with("create table"), "{planned:?}");
    assert!(destination.target_fields("copy").await.is_err(), "a dry run creates nothing");
    assert_eq!(destination.apply(&spec, false).await.expect("apply"), planned);
    assert!(destination.apply(&spec, false).await.expect("again").is_empty());
    let objects = destination.target_objects().await.expect("objects");
    assert!(objects.iter().any(|o| o.id == format!("{}.copy", db.name)), "{objects:?}");

    let mut writer = destination
        .writer(write_request("copy", SyncMode::UpdateOrCreate, &schema, &["region", "id"]))
        .await
        .expect("writer");
    for _ in 0..2 {
        assert_eq!(writer.write(&upserts(batch.clone())).await.expect("write"), []);
    }
    let (copied, _) = read_all(&*db.source(), {
        let mut r = request(json!({"table": "copy"}), TYPE_FIELDS);
        r.order_by = vec!["region".into(), "id".into()];
        r
    })
    .await;
    // Timestamps with a time zone are stored as UTC DATETIME(6), which reads back without one.
    let mut expected = expected_rows();
    for row in &mut expected {
        if let Value::TimestampTz(t) = row[5] {
            row[5] = Value::Timestamp(t.naive_utc());
        }
    }
    assert_eq!(values(&copied), expected, "the same rows, once");

    // A target with a short, required name: bad records fail alone, with MariaDB's message.
    db.run(
        "create table people (region varchar(10), id int, name varchar(5) not null, score tinyint,
                primary key (region, id))",
    )
    .await;
    let fields = vec![
        Field { name: "region".into(), field_type: FieldType::Text },
        Field { name: "id".into(), field_type: FieldType::Int64 },
        Field { name: "name".into(), field_type: FieldType::Text },
        Field { name: "score".into(), field_type: FieldType::Int32 },
    ];
    let people = Arc::new(Schema { fields });
    let text = |s: &str| Value::Text(s.into());
    let rows = [
        vec![text("eu"), Value::Int(1), text("ann"), Value::Int(1)],
        vec![text("eu"), Value::Int(2), text("much too long"), Value::Int(2)],
        vec![text("eu"), Value::Int(3), text("bob"), Value::Int(3)],
        vec![text("us"), Value::Int(1), Value::Null, Value::Int(4)],
        vec![text("us"), Value::Int(2), text("cy"), Value::Int(1000)],
        vec![text("us"), Value::Int(3), text("di"), Value::Int(5)],
    ];
    let mut builder = RecordBatchBuilder::with_capacity(people.clone(), 1024);
    for row in &rows {
        builder.push_row(row).expect("row");
    }
    let batch = builder.finish();
    let mut writer = destination
        .writer(write_request("people", SyncMode::UpdateOrCreate, &people, &["region", "id"]))
        .await
        .expect("writer");
    let failures = writer.write(&upserts(batch.clone())).await.expect("write");
    let indexes: Vec<usize> = failures.iter().map(|f| f.index).collect();
    assert_eq!(indexes, [1, 3, 4], "{failures:?}");
    assert!(failures[0].message.contains("Data too long for column 'name'"), "{failures:?}");
    assert!(failures[1].message.contains("cannot be null"), "{failures:?}");
    assert!(failures[2].message.contains("Out of range value for column 'score'"), "{failures:?}");
    let written: Vec<(String, i64, String)> = db.rows("select region, id, name from people order by 1, 2").await;
    let expected = |rows: &[(&str, i64, &str)]| -> Vec<(String, i64, String)> {
        rows.iter().map(|(r, i, n)| ((*r).to_owned(), *i, (*n).to_owned())).collect()
    };
    assert_eq!(written, expected(&[("eu", 1, "ann"), ("eu", 3, "bob"), ("us", 3, "di")]));

    // Deletes (replace mode) remove exactly the given composite keys.
    let mut replace = destination
        .writer(write_request("people", SyncMode::Replace, &people, &["region", "id"]))
        .await
        .expect("writer");
    let keys = Arc::new(Schema { fields: people.fields[..2].to_vec() });
    let mut builder = RecordBatchBuilder::with_capacity(keys, 64);
    builder.push_row(&[text("eu"), Value::Int(3)]).expect("key");
    builder.push_row(&[text("us"), Value::Int(1)]).expect("key (absent)");
    let deletes = WriteBatch { records: builder.finish(), operations: Operations::All(Operation::Delete) };
    assert_eq!(replace.write(&deletes).await.expect("delete"), Vec::<RecordFailure>::new());
    let left: Vec<(String, i64, String)> = db.rows("select region, id, name from people order by 1, 2").await;
    assert_eq!(left, expected(&[("eu", 1, "ann"), ("us", 3, "di")]));
});

db_test!(modes_without_a_unique_key_go_through_staging, |db| {
    // No unique key on the identity: staged updates and inserts.
    db.run(
        "create table loose (code varchar(10) character set utf8mb4 collate utf8mb4_nopad_bin,
                n int not null, note varchar(3))",
    )
    .await;
    let fields = vec![
        Field { name: "code".into(), field_type: FieldType::Text },
        Field { name: "n".into(), field_type: FieldType::Int32 },
        Field { name: "note".into(), field_type: FieldType::Text },
    ];
    let schema = Arc::new(Schema { fields });
    let batch = |rows: &[(&str, i64, &str)]| {
        let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 256);
        for (code, n, note) in rows {
            builder.push_row(&[Value::Text((*code).into()), Value::Int(*n), Value::Text((*note).into())]).expect("row");
        }
        upserts(builder.finish())
    };
    let destination = db.destination();
    let writer = |mode| destination.writer(write_request("loose", mode, &schema, &["code"]));
    const LOOSE: &str = "select code, n, note from loose order by code, n";
    let owned = |rows: &[(&str, i64, &str)]| -> Vec<(String, i64, String)> {
        rows.iter().map(|(c, n, t)| ((*c).to_owned(), *n, (*t).to_owned())).collect()
    };

    let mut upsert = writer(SyncMode::UpdateOrCreate).await.expect("writer");
    for _ in 0..2 {
        let failures = upsert.write(&batch(&[("a", 1, "x"), ("A", 2, "y"), ("b", 3, "toolong")])).await.expect("write");
        assert_eq!(failures.iter().map(|f| f.index).collect::<Vec<_>>(), [2]);
        assert!(failures[0].message.contains("Data too long for column 'note'"), "{failures:?}");
    }
    assert_eq!(db.rows::<(String, i64, String)>(LOOSE).await, owned(&[("A", 2, "y"), ("a", 1, "x")]));

    // Create never updates; update never creates.
    let mut create = writer(SyncMode::Create).await.expect("writer");
    assert!(create.write(&batch(&[("a", 9, "z"), ("c", 4, "new")])).await.expect("create").is_empty());
    let mut update = writer(SyncMode::Update).await.expect("writer");
    assert!(update.write(&batch(&[("A", 7, "upd"), ("d", 5, "no")])).await.expect("update").is_empty());
    assert_eq!(
        db.rows::<(String, i64, String)>(LOOSE).await,
        owned(&[("A", 7, "upd"), ("a", 1, "x"), ("c", 4, "new")])
    );

    // Append adds, even what exists.
    let mut append = destination.writer(write_request("loose", SyncMode::Append, &schema, &[])).await.expect("writer");
    assert!(append.write(&batch(&[("a", 1, "x")])).await.expect("append").is_empty());
    assert_eq!(db.rows::<(String, i64, String)>(LOOSE).await.len(), 4);

    // With the identity as the primary key, create and update behave the same.
    db.run(
        "create table keyed (code varchar(10) character set utf8mb4 collate utf8mb4_nopad_bin primary key,
                n int not null, note varchar(3))",
    )
    .await;
    let keyed = |mode| destination.writer(write_request("keyed", mode, &schema, &["code"]));
    keyed(SyncMode::UpdateOrCreate).await.expect("writer").write(&batch(&[("a", 1, "x")])).await.expect("write");
    keyed(SyncMode::Create)
        .await
        .expect("writer")
        .write(&batch(&[("a", 2, "no"), ("b", 3, "new")]))
        .await
        .expect("write");
    keyed(SyncMode::Update)
        .await
        .expect("writer")
        .write(&batch(&[("b", 4, "upd"), ("c", 5, "no")]))
        .await
        .expect("write");
    let rows: Vec<(String, i64, String)> = db.rows("select code, n, note from keyed order by code").await;
    assert_eq!(rows, owned(&[("a", 1, "x"), ("b", 4, "upd")]));
});

db_test!(sorted_reads_return_identity_order_bytewise, |db| {
    db.run(
        "create table words (id int primary key, word varchar(20) character set utf8mb4
                collate utf8mb4_general_ci, n bigint)",
    )
    .await;
    let words = ["b", "B", "a", "a ", "A", "ä", "ab", "", "Z", "🎉", "a  "];
    for (i, w) in words.iter().enumerate() {
        db.run(&format!("insert into words values ({i}, '{w}', {})", 5 - i as i64)).await;
    }
    db.run("insert into words values (100, null, null)").await;
    let source = db.source();
    let mut read = request(json!({"table": "words"}), &["id", "word", "n"]);
    read.order_by = vec!["word".into()];
    let (batches, _) = read_all(&*source, read).await;
    let got: Vec<Value> = values(&batches).into_iter().map(|r| r[1].clone()).collect();
    let mut expected: Vec<&str> = words.to_vec();
    expected.sort_unstable();
    let expected: Vec<Value> = expected.iter().map(|w| Value::Text((*w).into())).chain([Value::Null]).collect();
    assert_eq!(got, expected, "bytewise, trailing spaces count, NULL last");

    let mut read = request(json!({"table": "words"}), &["id", "n"]);
    read.order_by = vec!["n".into()];
    read.batch_rows = 4;
    let (batches, _) = read_all(&*source, read).await;
    assert!(batches.iter().all(|b| b.len() <= 4));
    let got: Vec<Value> = values(&batches).into_iter().map(|r| r[1].clone()).collect();
    let expected: Vec<Value> = (-5..=5).map(Value::Int).chain([Value::Null]).collect();
    assert_eq!(got, expected);
});

db_test!(cursor_reads_checkpoint_and_resume, |db| {
    db.run("create table events (id int primary key, at datetime(6))").await;
    db.run(
        "insert into events values (1, '2024-01-01 00:00:00.000001'), (2, '2024-01-01 00:00:00.000003'),
                (3, '2024-01-01 00:00:00.000002'), (4, '2024-01-02 00:00:00'), (5, null)",
    )
    .await;
    let source = db.source();
    let read = |after: Option<Json>| {
        let mut r = request(json!({"table": "events"}), &["id", "at"]);
        r.cursor = Some(Cursor { field: "at".into(), after, ordered: true });
        r.batch_rows = 2;
        r
    };
    let (batches, checkpoints) = read_all(&*source, read(None)).await;
    let ids: Vec<Value> = values(&batches).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(ids, [1, 3, 2, 4].map(Value::Int), "in cursor order, NULL cursors left out");
    assert_eq!(
        checkpoints,
        [json!({"cursor": "2024-01-01 00:00:00.000002"}), json!({"cursor": "2024-01-02 00:00:00"})]
    );

    let (batches, checkpoints) = read_all(&*source, read(Some(checkpoints[0]["cursor"].clone()))).await;
    let ids: Vec<Value> = values(&batches).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(ids, [2, 4].map(Value::Int), "resumes after the checkpoint");
    assert_eq!(checkpoints.len(), 1);

    // An integer cursor.
    let mut r = request(json!({"table": "events"}), &["id"]);
    r.cursor = Some(Cursor { field: "id".into(), after: Some(json!(3)), ordered: true });
    let (batches, checkpoints) = read_all(&*source, r).await;
    assert_eq!(values(&batches), [[Value::Int(4)], [Value::Int(5)]]);
    assert_eq!(checkpoints, [json!({"cursor": 5})]);
});

db_test!(partitions_together_return_every_row_once, |db| {
    db.run("create table many (id int primary key, name varchar(10))").await;
    let rows: Vec<String> = (0..200).map(|i| format!("({i}, 'n{}')", i % 7)).collect();
    db.run(&format!("insert into many values {}", rows.join(", "))).await;
    let source = db.source();
    for order_by in [vec![], vec!["id".to_owned()]] {
        let mut seen = Vec::new();
        for index in 0..3 {
            let mut r = request(json!({"query": "select * from many"}), &["id", "name"]);
            r.partition = Some(Partition { index, count: 3 });
            r.order_by = order_by.clone();
            let (batches, _) = read_all(&*source, r).await;
            let part: Vec<i64> = values(&batches)
                .into_iter()
                .map(|r| match r[0] {
                    Value::Int(i) => i,
                    _ => -1,
                })
                .collect();
            assert!(!part.is_empty() && part.len() < 200, "partition {index} has {} rows", part.len());
            seen.extend(part);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<i64>>());
    }
});

db_test!(failures_are_classed, |db| {
    db.run("create table t (id int)").await;
    let source = db.source();
    let class = |r: Result<Vec<Field>, syncline_core::connector::ConnectorError>| r.expect_err("fails").class;
    assert_eq!(class(source.model_fields(&json!({"query": "selec 1"})).await), ErrorClass::Config);
    assert_eq!(class(source.model_fields(&json!({"query": "select nope from t"})).await), ErrorClass::Config);
    assert_eq!(class(source.model_fields(&json!({"table": "missing"})).await), ErrorClass::NotFound);
    let e = source.model_fields(&json!({"query": "delete from t"})).await.expect_err("not a query");
    assert_eq!(e.class, ErrorClass::Config);

    let check = |config: Json, ctx: Context| async move { connector().check(&ctx, &config).await };
    let mut config = db.config();
    assert!(check(config.clone(), db.ctx.clone()).await.is_ok());
    config["database"] = json!("syncline_no_such_database");
    assert_eq!(check(config.clone(), db.ctx.clone()).await.expect_err("unknown").class, ErrorClass::NotFound);
    let mut config = db.config();
    config["username"] = json!("syncline_nobody");
    config["password"] = json!("wrong");
    assert_eq!(check(config, db.ctx.clone()).await.expect_err("refused").class, ErrorClass::Auth);
    let mut config = db.config();
    config["ssl"] = json!(true);
    let e = check(config, db.ctx.clone()).await.expect_err("this server has no TLS");
    assert_eq!(e.class, ErrorClass::Config, "{e}");
    // The egress policy applies before any connection.
    let denied = context(vec!["127.0.0.0/8".parse().expect("a network")]);
    let e = check(db.config(), denied).await.expect_err("refused by policy");
    assert_eq!(e.class, ErrorClass::Config);
    assert!(e.message.contains("CONNECTION_DENIED_NETWORKS"), "{e}");
});

db_test!(deadlines_stop_statements_on_the_server, |db| {
    let mut ctx = context(vec![]);
    ctx.deadlines.query = Duration::from_secs(1);
    ctx.deadlines.idle = Duration::from_secs(1);
    let source = connector().source(&ctx, &db.config()).expect("a source");
    let started = std::time::Instant::now();
    let e = source.sample(&json!({"query": "select sleep(5) as s"}), 1).await.expect_err("over the deadline");
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    let mut reading = source.read(request(json!({"query": "select sleep(5) as s"}), &["s"])).await.expect("starts");
    let e = reading.events.next().await.expect("an event").expect_err("idle too long");
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());

    // A read dropped half-way is killed on the server, not drained.
    let source = db.source();
    let mut read = request(json!({"query": "select seq from seq_1_to_1000000000"}), &["seq"]);
    read.batch_rows = 10;
    let mut reading = source.read(read).await.expect("starts");
    assert!(matches!(reading.events.next().await, Some(Ok(ReadEvent::Batch(_)))));
    drop(reading);
    let running = "select count(*) from information_schema.processlist
                       where info like '%seq_1_to_1000000000%' and info not like '%processlist%'";
    let mut left = 1;
    for _ in 0..50 {
        left = db.rows::<i64>(running).await[0];
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the statement still runs");
});
