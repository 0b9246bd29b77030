//! The PostgreSQL destination against the server of `DATABASE_URL` (default the one on this
//! machine), in a database of its own, dropped at the end.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::FutureExt;
use serde_json::json;
use syncline_core::{
    config::Deadlines,
    connector::{Context, Operation, Operations, SyncMode, WriteBatch, WriteRequest},
    egress::Egress,
    record::{Field, FieldType, RecordBatchBuilder, Schema},
};
use tokio_postgres::NoTls;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("the test server");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn json_text_goes_into_jsonb_columns_and_bad_json_fails_alone() {
    let server = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut url = url::Url::parse(&server).expect("DATABASE_URL is a URL");
    let name = format!("sl_pg_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let admin = connect(&server).await;
    admin.batch_execute(&format!("create database {name}")).await.expect("create database");
    url.set_path(&name);
    let outcome = AssertUnwindSafe(write_and_check(&server, &url)).catch_unwind().await;
    admin.batch_execute(&format!("drop database {name} with (force)")).await.expect("drop database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Writes JSON text into a jsonb column of database `url` and reads it back.
async fn write_and_check(server: &str, url: &url::Url) {
    let name = url.path().trim_start_matches('/');
    let db = connect(url.as_str()).await;
    db.batch_execute("create table docs (id int primary key, doc jsonb)").await.expect("table");

    let deadlines =
        Deadlines { connect: Duration::from_secs(10), query: Duration::from_secs(30), idle: Duration::from_secs(60) };
    let ctx = Context::new(Arc::new(Egress::new(server, vec![], vec![])), deadlines);
    let config = json!({
        "hostname": url.host_str(), "port": url.port().unwrap_or(5432), "database": name,
        "username": if url.username().is_empty() { "postgres" } else { url.username() },
        "password": url.password().unwrap_or(""), "ssl": false,
    });
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
