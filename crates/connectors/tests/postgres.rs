//! The PostgreSQL connector against the server of `DATABASE_URL` (default the one on this
//! machine), each test in a database of its own, dropped at the end.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt};
use serde_json::{Value as Json, json};
use syncline_core::{
    config::Deadlines,
    connector::{
        Committed, Context, LoadMode, LoadRequest, Operation, Operations, ReadEvent, ReadRequest, Readable, Source,
        SyncMode, TableSpec, WriteBatch, WriteRequest,
    },
    egress::Egress,
    record::{Field, FieldType, RecordBatchBuilder, Schema, Value},
};
use tokio_postgres::NoTls;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("the test server");
    tokio::spawn(connection);
    client
}

/// Runs `test` with the server's URL and the URL of a new database, dropped afterwards.
async fn in_database<F: Future<Output = ()>>(test: impl FnOnce(String, url::Url) -> F) {
    let server = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut url = url::Url::parse(&server).expect("DATABASE_URL is a URL");
    let name = format!("sl_pg_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let admin = connect(&server).await;
    admin.batch_execute(&format!("create database {name}")).await.expect("create database");
    url.set_path(&name);
    let outcome = AssertUnwindSafe(test(server, url)).catch_unwind().await;
    admin.batch_execute(&format!("drop database {name} with (force)")).await.expect("drop database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A context that lets connections reach `server`, and the connection configuration of `url`.
fn context_and_config(server: &str, url: &url::Url) -> (Context, Json) {
    let deadlines =
        Deadlines { connect: Duration::from_secs(10), query: Duration::from_secs(30), idle: Duration::from_secs(60) };
    let ctx = Context::new(Arc::new(Egress::new(server, vec![], vec![])), deadlines);
    let config = json!({
        "hostname": url.host_str(), "port": url.port().unwrap_or(5432), "database": url.path().trim_start_matches('/'),
        "username": if url.username().is_empty() { "postgres" } else { url.username() },
        "password": url.password().unwrap_or(""), "ssl": false,
    });
    (ctx, config)
}

#[tokio::test]
async fn json_text_goes_into_jsonb_columns_and_bad_json_fails_alone() {
    in_database(|server, url| async move { write_and_check(&server, &url).await }).await;
}

/// Writes JSON text into a jsonb column of database `url` and reads it back.
async fn write_and_check(server: &str, url: &url::Url) {
    let db = connect(url.as_str()).await;
    db.batch_execute("create table docs (id int primary key, doc jsonb)").await.expect("table");
    let (ctx, config) = context_and_config(server, url);
    let connector = syncline_connectors::get("postgresql").expect("registered");
    let destination = connector.destination(&ctx, &config).expect("a destination");
    let fields = vec![
        Field { name: "id".into(), field_type: FieldType::Int32 },
        Field { name: "doc".into(), field_type: FieldType::Json },
    ];
    let schema = Arc::new(Schema { fields });
    let request = WriteRequest {
        object: "public.docs".into(),
        mode: SyncMode::UpdateOrCreate,
        schema: schema.clone(),
        targets: vec!["id".into(), "doc".into()],
        identity: vec![0],
        shaping: Default::default(),
        matching: Default::default(),
    };
    let mut writer = destination.writer(request).await.expect("a writer");
    let inserts = |rows: &[(i32, Option<&[u8]>)]| {
        let mut batch = RecordBatchBuilder::with_capacity(schema.clone(), 256);
        for (id, doc) in rows {
            batch.push_values([Some(&id.to_be_bytes()[..]), *doc]);
        }
        WriteBatch { records: batch.finish(), operations: Operations::All(Operation::Insert) }
    };
    let good = inserts(&[(1, Some(br#"{"b": 1, "a": ["x"]}"#)), (2, None)]);
    assert_eq!(writer.write(&good).await.expect("written"), []);
    let mixed = inserts(&[(3, Some(b"{")), (4, Some(b"[]"))]);
    let failures = writer.write(&mixed).await.expect("written");
    assert_eq!(failures.iter().map(|f| f.index).collect::<Vec<_>>(), [0], "{failures:?}");
    drop(writer);

    let rows = db.query("select id, doc::text from docs order by id", &[]).await.expect("rows");
    let rows: Vec<(i32, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected = [(1, Some(r#"{"a": ["x"], "b": 1}"#.to_owned())), (2, None), (4, Some("[]".to_owned()))];
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn slices_read_at_a_held_snapshot_see_one_moment() {
    in_database(|server, url| async move {
        let db = connect(url.as_str()).await;
        db.batch_execute(
            "create table t (id int primary key, v int); insert into t select g, 0 from generate_series(1, 3000) g",
        )
        .await
        .expect("table");
        let (ctx, config) = context_and_config(&server, &url);
        let source =
            syncline_connectors::get("postgresql").expect("registered").source(&ctx, &config).expect("a source");
        let held = source.hold_snapshot().await.expect("held").expect("PostgreSQL shares snapshots");
        // Updates move rows to other pages, so slices read at different moments would see
        // some rows twice and others not at all.
        db.batch_execute(
            "update t set v = 1 where id % 2 = 0; delete from t where id <= 10; insert into t values (9999, 1)",
        )
        .await
        .expect("changes");
        let slices = source.slices("public.t", 500).await.expect("slices");
        assert!(slices.len() > 2, "{slices:?}");
        let mut rows = Vec::new();
        for slice in &slices {
            rows.extend(read_slice(source.as_ref(), slice, Some(held.id())).await.expect("a read at the snapshot"));
        }
        rows.sort();
        assert_eq!(rows, (1..=3000).map(|id| (id, 0)).collect::<Vec<_>>(), "the table as it was when held");
        held.keep_alive().await.expect("still held");
        let id = held.id().to_owned();
        drop(held);
        let error = read_slice(source.as_ref(), &slices[0], Some(&id)).await.expect_err("the snapshot ended");
        assert!(error.message.contains("snapshot"), "{}", error.message);
        let now: Vec<(i64, i64)> = {
            let mut rows = Vec::new();
            for slice in &slices {
                rows.extend(read_slice(source.as_ref(), slice, None).await.expect("a read"));
            }
            rows
        };
        assert_eq!(now.len(), 2991, "without a snapshot each slice reads the table as it is now");
    })
    .await;
}

/// The `(id, v)` rows of `public.t` in `slice`, read at `snapshot`.
async fn read_slice(
    source: &dyn Source,
    slice: &Json,
    snapshot: Option<&str>,
) -> Result<Vec<(i64, i64)>, syncline_core::connector::ConnectorError> {
    let mut request =
        ReadRequest::new(Readable::Stream("public.t".into()), vec!["id".into(), "v".into()], 1000, 1 << 20);
    request.slice = Some(slice.clone());
    request.snapshot = snapshot.map(str::to_owned);
    let mut reading = source.read(request).await?;
    let mut rows = Vec::new();
    while let Some(event) = reading.events.next().await {
        let ReadEvent::Batch(batch) = event? else { continue };
        for record in batch.records() {
            let int = |i| match record.get(i).expect("a value") {
                Value::Int(v) => v,
                other => panic!("not an int: {other:?}"),
            };
            rows.push((int(0), int(1)));
        }
    }
    Ok(rows)
}

#[tokio::test]
async fn loads_tell_the_rows_they_added_and_a_count_from_now_misses_later_commits() {
    in_database(|server, url| async move {
        let (ctx, config) = context_and_config(&server, &url);
        let destination =
            syncline_connectors::get("postgresql").expect("registered").bulk_destination(&ctx, &config).expect("bulk");
        let fields = vec![
            Field { name: "id".into(), field_type: FieldType::Int64 },
            Field { name: "v".into(), field_type: FieldType::Int64 },
        ];
        let spec = TableSpec { table: "public.t".into(), fields: fields.clone(), key: vec!["id".into()] };
        destination.shape(&spec).await.expect("table");
        let schema = Arc::new(Schema { fields });
        let load = |mode, rows: &[i64]| {
            let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 1 << 10);
            for id in rows {
                builder.push_row(&[Value::Int(*id), Value::Int(id * 10)]).expect("a row");
            }
            let batch = builder.finish();
            let request = LoadRequest {
                table: "public.t".into(),
                schema: schema.clone(),
                key: vec!["id".into()],
                mode,
                marker: uuid::Uuid::new_v4(),
                soft_delete: None,
            };
            let destination = destination.as_ref();
            async move {
                let mut loader = destination.load(request).await.expect("load");
                loader.write(&batch).await.expect("write");
                loader.commit().await.expect("commit")
            }
        };
        assert_eq!(load(LoadMode::Append, &[1, 2, 3]).await, Committed { rows: 3, added: Some(3) });
        let before = destination.count_from_now("public.t").await.expect("count").expect("PostgreSQL counts from now");
        assert_eq!(load(LoadMode::Upsert, &[2, 3, 4, 5]).await, Committed { rows: 4, added: Some(2) });
        assert_eq!(load(LoadMode::Update, &[5, 6]).await, Committed { rows: 1, added: Some(0) }, "6 is not there");
        assert_eq!(before.await.expect("counted"), 3, "the table as it was when the count started");
        assert_eq!(destination.count("public.t").await.expect("count"), 5);
    })
    .await;
}
