//! The files connector as a bulk sync destination, against `file://` directories of its own
//! and a local S3 server (moto): partitions written as Parquet, committed or abandoned, swapped
//! in through a manifest, and read back with the `parquet` crate.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::{NaiveDate, TimeZone, Utc};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use parquet::{arrow::arrow_reader::ParquetRecordBatchReaderBuilder, basic::LogicalType};
use serde_json::{Value as Json, json};
use syncline_connectors::moto::Moto;
use syncline_core::{
    bulk::BulkMode,
    config::Deadlines,
    connector::{BulkDestination, Context, DynConnector, ErrorClass, Keys, LoadMode, LoadRequest, TableSpec},
    egress::{Egress, Rule},
    object_url,
    record::{Field, FieldType, RecordBatch, RecordBatchBuilder, Schema, Value},
};
use uuid::Uuid;

const TABLE: &str = "public.things";
const BUCKET: &str = "exports";

fn context(denied: Vec<Rule>) -> Context {
    let deadlines =
        Deadlines { connect: Duration::from_secs(10), query: Duration::from_secs(30), idle: Duration::from_secs(60) };
    let egress = Egress::new("postgres://postgres@127.0.0.1:5432/postgres", vec![], denied);
    Context::new(Arc::new(egress.with_local_files(Some(local_root()))), deadlines)
}

/// The directory local targets are below (`LOCAL_FILES_ROOT`).
fn local_root() -> std::path::PathBuf {
    std::env::temp_dir().join("syncline-lake")
}

fn connector() -> &'static Arc<dyn DynConnector> {
    syncline_connectors::get("files").expect("files is registered")
}

/// Where a test writes: a directory of its own, or a prefix of its own on moto.
struct Target {
    config: Json,
    /// Keeps the S3 server up.
    moto: Option<Moto>,
    dir: Option<std::path::PathBuf>,
}

impl Target {
    fn local() -> Self {
        let dir = local_root().join(Uuid::new_v4().to_string());
        let config = json!({"url": format!("file://{}", dir.display()), "format": "parquet"});
        Self { config, moto: None, dir: Some(dir) }
    }

    /// A prefix on moto, or `None` (skip) when moto is not installed.
    async fn s3() -> Option<Self> {
        let moto = Moto::start().await?;
        moto.create_bucket(BUCKET).await;
        let config = json!({
            "url": moto.url(BUCKET, &format!("run-{}", Uuid::new_v4().simple())),
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
        });
        Some(Self { config, moto: Some(moto), dir: None })
    }

    fn destination(&self) -> Arc<dyn BulkDestination> {
        connector().bulk_destination(&context(vec![]), &self.config).expect("a bulk destination")
    }

    /// The store under the URL, as a reader opens it.
    fn store(&self) -> (Arc<dyn ObjectStore>, Path) {
        let url = object_url::parse(self.config["url"].as_str().expect("url")).expect("url");
        let keys = [("aws_access_key_id", "test"), ("aws_secret_access_key", "test")];
        let options = if self.moto.is_some() { &keys[..] } else { &[] };
        object_url::open(&url, options).expect("open")
    }

    async fn get(&self, relative: &str) -> Bytes {
        let (store, root) = self.store();
        let path: Path = root.parts().chain(Path::from(relative).parts()).collect();
        store.get(&path).await.unwrap_or_else(|e| panic!("{relative}: {e}")).bytes().await.expect("bytes")
    }

    async fn json(&self, relative: &str) -> Json {
        serde_json::from_slice(&self.get(relative).await).expect("json")
    }

    /// Every key under the URL.
    async fn keys(&self) -> Vec<String> {
        let (store, root) = self.store();
        let listed: Vec<_> = futures::TryStreamExt::try_collect(store.list(Some(&root))).await.expect("list");
        listed.into_iter().map(|m| m.location.to_string()).collect()
    }

    /// The manifest and rows of the table's latest copy, read as readers read them.
    async fn read_back(&self, table: &str) -> (Json, Vec<RecordBatch>) {
        syncline_connectors::files::read::latest(&context(vec![]), &self.config, table).await.expect("read back")
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            std::fs::remove_dir_all(dir).ok();
        }
    }
}

/// Every field type with a value of it; the text and JSON hold characters beyond ASCII.
fn cases() -> Vec<(FieldType, Value)> {
    let at = NaiveDate::from_ymd_opt(2024, 2, 29).expect("date");
    vec![
        (FieldType::Bool, Value::Bool(true)),
        (FieldType::Int16, Value::Int(-12)),
        (FieldType::Int32, Value::Int(1 << 20)),
        (FieldType::Int64, Value::Int(i64::MAX)),
        (FieldType::Float32, Value::Float(1.5)),
        (FieldType::Float64, Value::Float(-2.25e300)),
        (FieldType::Numeric, Value::Decimal("123456789012345678901234567890123456789012.5".into())),
        (FieldType::Decimal { precision: 12, scale: 2 }, Value::Decimal("-1234567890.12".into())),
        (FieldType::Decimal { precision: 50, scale: 10 }, Value::Decimal("1234567890123456789.0123456789".into())),
        (FieldType::Text, Value::Text("héllo 👋🏽 wörld".into())),
        (FieldType::Bytes, Value::Bytes(vec![0, 1, 2, 255])),
        (FieldType::Date, Value::Date(at)),
        (FieldType::Time, Value::Time(at.and_hms_micro_opt(23, 59, 59, 999_999).expect("time").time())),
        (FieldType::Timestamp, Value::Timestamp(at.and_hms_micro_opt(3, 4, 5, 123_456).expect("timestamp"))),
        (FieldType::TimestampTz, Value::TimestampTz(Utc.with_ymd_and_hms(1999, 12, 31, 23, 0, 1).unwrap())),
        (FieldType::Uuid, Value::Uuid(Uuid::parse_str("0b5d1a7e-95b4-4c1e-9a43-7f1c2e3d4b5a").expect("uuid"))),
        (FieldType::Json, Value::Json(json!({"a": [1, "ü"], "b": null}))),
        (FieldType::Jsonb, Value::Json(json!({"emoji": "🙂"}))),
        (FieldType::List(Box::new(FieldType::Int32)), Value::List(vec![Value::Int(1), Value::Null, Value::Int(3)])),
        (
            FieldType::List(Box::new(FieldType::Text)),
            Value::List(vec![Value::Text("x".into()), Value::Text("🙂".into())]),
        ),
    ]
}

fn schema_of(cases: &[(FieldType, Value)]) -> Arc<Schema> {
    let fields =
        cases.iter().enumerate().map(|(i, (ty, _))| Field { name: format!("c{i}"), field_type: ty.clone() }).collect();
    Arc::new(Schema { fields })
}

/// A record of every case's value, then one of NULLs.
fn batch(cases: &[(FieldType, Value)]) -> RecordBatch {
    let mut builder = RecordBatchBuilder::with_capacity(schema_of(cases), 1024);
    builder.push_row(cases.iter().map(|(_, v)| v)).expect("values");
    builder.push_row(cases.iter().map(|_| &Value::Null)).expect("nulls");
    builder.finish()
}

fn request(table: &str, schema: Arc<Schema>, marker: Uuid) -> LoadRequest {
    LoadRequest { table: table.into(), schema, key: vec![], mode: LoadMode::Append, marker, soft_delete: None }
}

/// A new copy of `TABLE` for a new execution, prepared as the planner prepares it.
async fn copy(destination: &dyn BulkDestination, schema: &Schema) -> String {
    let shadow = destination.shadow(TABLE, Uuid::new_v4());
    destination.drop_table(&shadow).await.expect("drop");
    let spec = TableSpec { table: shadow.clone(), fields: schema.fields.clone(), key: vec![] };
    destination.shape(&spec).await.expect("shape");
    shadow
}

/// A new copy of `TABLE` holding one partition of every case, swapped in; returns its name.
async fn swap_in_a_copy(destination: &dyn BulkDestination) -> String {
    let cases = cases();
    let schema = schema_of(&cases);
    let shadow = copy(destination, &schema).await;
    let mut loader = destination.load(request(&shadow, schema, Uuid::new_v4())).await.expect("load");
    loader.write(&batch(&cases)).await.expect("write");
    loader.commit().await.expect("commit");
    destination.swap(&shadow, TABLE).await.expect("swap");
    shadow
}

/// Two partitions into a new copy, one committed and one abandoned; the swapped-in copy reads
/// back value for value.
async fn every_type_round_trips(target: Target) {
    let destination = target.destination();
    assert_eq!(destination.modes(), [BulkMode::Snapshot]);
    let cases = cases();
    let (schema, batch) = (schema_of(&cases), batch(&cases));
    assert_eq!(destination.columns(TABLE).await.expect("columns"), None, "no table yet");
    let shadow = copy(destination.as_ref(), &schema).await;
    let (kept, abandoned) = (Uuid::new_v4(), Uuid::new_v4());
    let mut loader = destination.load(request(&shadow, schema.clone(), kept)).await.expect("load");
    loader.write(&batch).await.expect("write");
    let mut dropped = destination.load(request(&shadow, schema.clone(), abandoned)).await.expect("load");
    dropped.write(&batch).await.expect("write");
    assert_eq!(destination.loaded(&shadow, kept).await.expect("loaded"), None, "nothing before the commit");
    assert_eq!(loader.commit().await.expect("commit").rows, 2);
    drop(dropped);
    assert_eq!(destination.loaded(&shadow, kept).await.expect("loaded"), Some(2));
    assert_eq!(destination.loaded(&shadow, abandoned).await.expect("loaded"), None);
    assert_eq!(destination.count(&shadow).await.expect("count"), 2);
    assert_eq!(destination.columns(TABLE).await.expect("columns"), None, "the copy is not visible before the swap");

    destination.swap(&shadow, TABLE).await.expect("swap");
    assert_eq!(destination.columns(TABLE).await.expect("columns"), Some(schema.fields.clone()));
    assert_eq!(destination.count(TABLE).await.expect("count"), 2);
    let (manifest, batches) = target.read_back(TABLE).await;
    assert_eq!(manifest["rows"], 2);
    assert_eq!(manifest["files"].as_array().map(Vec::len), Some(1), "{manifest}");
    assert!(manifest["files"][0]["path"].as_str().is_some_and(|p| p.contains(&kept.to_string())), "{manifest}");
    assert_eq!(
        manifest["schema"][7],
        json!({"name": "c7", "field_type": {"decimal": {"precision": 12, "scale": 2}}, "arrow": "Decimal128(12, 2)"})
    );
    let records: Vec<Vec<Value>> =
        batches.iter().flat_map(|b| b.records().map(|r| r.values().expect("values"))).collect();
    let expected: Vec<Vec<Value>> = batch.records().map(|r| r.values().expect("values")).collect();
    assert_eq!(records, expected, "every value, NULLs too, reads back");
    assert!(
        target.keys().await.iter().all(|k| !k.contains(&abandoned.to_string())),
        "an abandoned partition leaves no file"
    );
}

#[tokio::test]
async fn every_type_round_trips_through_local_files() {
    every_type_round_trips(Target::local()).await;
}

#[tokio::test]
async fn every_type_round_trips_through_s3() {
    let Some(target) = Target::s3().await else { return };
    every_type_round_trips(target).await;
}

#[tokio::test]
async fn columns_carry_parquet_logical_types_readers_understand() {
    let target = Target::local();
    swap_in_a_copy(target.destination().as_ref()).await;
    let (manifest, _) = target.read_back(TABLE).await;
    let file = target.get(manifest["files"][0]["path"].as_str().expect("path")).await;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
    let columns = reader.parquet_schema().columns();
    let logical =
        |name: &str| columns.iter().find(|c| c.path().string() == name).and_then(|c| c.logical_type_ref().cloned());
    assert_eq!(logical("c15"), Some(LogicalType::Uuid), "uuid");
    assert_eq!(logical("c16"), Some(LogicalType::Json), "json");
    assert_eq!(logical("c9"), Some(LogicalType::String), "text");
    let arrow = reader.schema();
    let types: Vec<String> = arrow.fields().iter().map(|f| f.data_type().to_string()).collect();
    assert_eq!(types[7], "Decimal128(12, 2)");
    assert_eq!(types[6], "Utf8", "numeric without a precision is its exact text");
    assert_eq!(types[14], "Timestamp(µs, \"UTC\")");
    assert_eq!(types[15], "FixedSizeBinary(16)");
}

#[tokio::test]
async fn a_large_partition_streams_through_a_multipart_upload() {
    let Some(target) = Target::s3().await else { return };
    let destination = target.destination();
    let schema = Arc::new(Schema {
        fields: vec![
            Field { name: "id".into(), field_type: FieldType::Int64 },
            Field { name: "noise".into(), field_type: FieldType::Bytes },
        ],
    });
    let shadow = copy(destination.as_ref(), &schema).await;
    let (kept, abandoned) = (Uuid::new_v4(), Uuid::new_v4());
    let mut loader = destination.load(request(&shadow, schema.clone(), kept)).await.expect("load");
    let mut dropped = destination.load(request(&shadow, schema.clone(), abandoned)).await.expect("load");
    // 300,000 rows of 64 random bytes: about 20 MB that do not compress, several upload parts.
    for start in (0..300_000).step_by(10_000) {
        let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 10_000 * 90);
        for id in start..start + 10_000 {
            let noise: Vec<u8> = (0..4).flat_map(|_| Uuid::new_v4().into_bytes()).collect();
            builder.push_row(&[Value::Int(id), Value::Bytes(noise)]).expect("row");
        }
        let batch = builder.finish();
        loader.write(&batch).await.expect("write");
        dropped.write(&batch).await.expect("write");
    }
    let moto = target.moto.as_ref().expect("moto");
    assert!(moto.uploads(BUCKET).await.contains("<UploadId>"), "the parts went up before the commit");
    drop(dropped);
    assert_eq!(loader.commit().await.expect("commit").rows, 300_000);
    destination.swap(&shadow, TABLE).await.expect("swap");
    assert_eq!(destination.count(TABLE).await.expect("count"), 300_000);
    let (_, batches) = target.read_back(TABLE).await;
    let ids: Vec<i64> =
        batches.iter().flat_map(|b| b.records().map(|r| r.get_i64(0).expect("id").expect("not null"))).collect();
    assert_eq!(ids, (0..300_000).collect::<Vec<_>>(), "every row, in order");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while moto.uploads(BUCKET).await.contains("<UploadId>") {
        assert!(tokio::time::Instant::now() < deadline, "the abandoned upload was aborted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!moto.listing(BUCKET).await.contains(&abandoned.to_string()), "no file of the abandoned partition");
}

#[tokio::test]
async fn each_swap_keeps_the_copy_it_replaced_and_deletes_older_ones() {
    let target = Target::local();
    let destination = target.destination();
    let mut executions = Vec::new();
    for _ in 0..3 {
        let shadow = swap_in_a_copy(destination.as_ref()).await;
        destination.swap(&shadow, TABLE).await.expect("a retried swap changes nothing");
        executions.push(shadow.rsplit_once('@').map(|(_, e)| Uuid::parse_str(e).expect("execution")).expect("copy"));
    }
    let latest = target.json("public/things/_latest.json").await;
    assert_eq!(latest["execution"], json!(executions[2]));
    assert_eq!(latest["previous"], json!(executions[1]));
    let keys = target.keys().await;
    let held = |e: &Uuid| keys.iter().any(|k| k.contains(&e.to_string()));
    assert_eq!(executions.iter().map(held).collect::<Vec<_>>(), [false, true, true], "{keys:?}");
    destination.drop_table(TABLE).await.expect("drop");
    assert!(target.keys().await.is_empty(), "dropping the table deletes every copy");
    assert_eq!(destination.columns(TABLE).await.expect("columns"), None);
}

#[tokio::test]
async fn whole_copies_refuse_upserts_and_deletes() {
    let target = Target::local();
    let destination = target.destination();
    let schema = schema_of(&cases());
    let shadow = copy(destination.as_ref(), &schema).await;
    let upsert = LoadRequest {
        mode: LoadMode::Upsert,
        key: vec!["c1".into()],
        ..request(&shadow, schema.clone(), Uuid::new_v4())
    };
    let refusals = [
        destination.load(upsert).await.err().expect("an upsert"),
        destination.load(request(TABLE, schema.clone(), Uuid::new_v4())).await.err().expect("a load into the table"),
        destination.retire(TABLE, &shadow, &["c1".into()], None).await.expect_err("retire"),
        destination
            .delete_keys(TABLE, (futures::stream::empty().boxed(), schema.clone(), Keys::Unlisted), None)
            .await
            .expect_err("sweep"),
    ];
    for refusal in refusals {
        assert_eq!(refusal.class, ErrorClass::Config, "{refusal}");
        assert!(refusal.message.contains("whole copies"), "{refusal}");
    }
    assert_eq!(destination.count(TABLE).await.expect_err("no copy").class, ErrorClass::NotFound);
}

#[tokio::test]
async fn check_writes_a_probe_and_refuses_what_it_cannot_reach() {
    let target = Target::local();
    connector().check(&context(vec![]), &target.config).await.expect("a writable directory");
    assert!(target.keys().await.is_empty(), "the probe is deleted");
    let refused = connector().destination(&context(vec![]), &target.config).err().expect("no model syncs");
    assert_eq!(refused.class, ErrorClass::Config);
    for outside in ["file:///etc/syncline", "file:///tmp/syncline-lake/../payloads"] {
        let config = json!({"url": outside});
        let error = connector().check(&context(vec![]), &config).await.expect_err("outside LOCAL_FILES_ROOT");
        assert_eq!(error.class, ErrorClass::Config, "{error}");
        assert!(error.message.contains("LOCAL_FILES_ROOT"), "{error}");
        let destination = connector().bulk_destination(&context(vec![]), &config).expect("a bulk destination");
        let error = destination.count(TABLE).await.expect_err("nothing is read outside LOCAL_FILES_ROOT");
        assert!(error.message.contains("LOCAL_FILES_ROOT"), "{error}");
    }
    let error = connector()
        .check(&context(vec![]), &json!({"url": "s3://b/p?metadata_endpoint=http://169.254.169.254"}))
        .await
        .expect_err("an option that is not accepted");
    assert_eq!(error.class, ErrorClass::Config, "{error}");

    let Some(s3) = Target::s3().await else { return };
    connector().check(&context(vec![]), &s3.config).await.expect("a bucket");
    let mut missing = s3.config.clone();
    missing["url"] = json!(s3.moto.as_ref().expect("moto").url("no-such-bucket", "p"));
    let error = connector().check(&context(vec![]), &missing).await.expect_err("a missing bucket");
    assert!(error.message.contains("_syncline_probe_"), "{error}");
    let denied = context(vec!["127.0.0.0/8".parse().expect("rule")]);
    let error = connector().check(&denied, &s3.config).await.expect_err("the egress policy");
    assert_eq!(error.class, ErrorClass::Config, "{error}");
}
