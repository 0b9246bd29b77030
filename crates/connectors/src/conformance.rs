//! The conformance suite: the checks every connector passes, written once against the
//! contract (`syncline_core::connector`) and run per connector with [`conformance_suite!`].
//!
//! A connector takes part by implementing [`Fixture`] (a fresh database or namespace, the
//! field types it stores, a value it rejects, a long model, how to count its open reads) in
//! `crates/connectors/tests/conformance/<id>.rs` and adding one line there:
//!
//! ```ignore
//! syncline_connectors::conformance_suite!(mysql_fixture().await);
//! ```
//!
//! plus `mod <id>;` in `tests/conformance/main.rs`. Each check gets a fixture of its own, so
//! the checks run in parallel without seeing each other's objects.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value as Json;
use syncline_core::{
    config::Deadlines,
    connector::{
        Context, Cursor, Destination, DynConnector, ErrorClass, ObjectSpec, Operation, Operations, Partition,
        ReadEvent, ReadRequest, Readable, RecordFailure, Source, SyncMode, WriteBatch, WriteRequest,
    },
    egress::Egress,
    record::{Field, FieldType, RecordBatch, RecordBatchBuilder, Schema, Value},
};

/// What the suite needs to know about one connector and a fresh place to test it in.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The connection type under test.
    fn connector(&self) -> Arc<dyn DynConnector>;
    /// A configuration that works, pointing at this fixture's own empty database or namespace.
    fn config(&self) -> Json;
    /// Configurations `check` must refuse, each with the class of its failure.
    fn bad_configs(&self) -> Vec<(Json, ErrorClass)>;
    /// The name of a new object called `name` (`public.name` for a database).
    fn object(&self, name: &str) -> String;
    /// The field types the connector writes and reads back unchanged, with a value of each.
    fn types(&self) -> Vec<(FieldType, Value)>;
    /// A value of some type the destination rejects, with the configuration that rejects it.
    fn rejection(&self) -> Rejection;
    /// A model that reads for long (many records), for the cancel checks.
    fn long_model(&self) -> Json;
    /// Reads (connections, statements) still at work on the system for this fixture.
    async fn open_reads(&self) -> usize;
    /// Removes what the fixture created.
    async fn finish(&self);
}

/// A value the destination refuses record by record.
pub struct Rejection {
    /// The configuration writes go through.
    pub config: Json,
    pub field_type: FieldType,
    /// A value it accepts.
    pub good: Value,
    /// A value it rejects.
    pub bad: Value,
}

/// Runs every check against fixtures made by `$fixture` (an expression, awaited inside each
/// test), one `#[tokio::test]` per check.
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:expr) => {
        $crate::conformance_suite!(@checks $fixture; check_config, discover, type_round_trip, idempotent_writes,
            failure_isolation, cancel_by_drop, cancel_by_token, checkpoints, partitions);
    };
    (@checks $fixture:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture;
                $crate::conformance::$check(&fixture).await;
                $crate::conformance::Fixture::finish(&fixture).await;
            }
        )*
    };
}

/// A context for connector calls in tests: every network allowed, default deadlines.
pub fn context() -> Context {
    let egress = Egress::new("postgres://state.invalid:1/syncline_state", vec![], vec![]);
    Context::new(Arc::new(egress), Deadlines::default())
}

fn source(fixture: &dyn Fixture, ctx: &Context) -> Arc<dyn Source> {
    fixture.connector().source(ctx, &fixture.config()).expect("the connector opens as a source")
}

fn destination(fixture: &dyn Fixture, config: &Json) -> Arc<dyn Destination> {
    fixture.connector().destination(&context(), config).expect("the connector opens as a destination")
}

fn field(name: &str, field_type: FieldType) -> Field {
    Field { name: name.into(), field_type }
}

fn batch(schema: &Arc<Schema>, rows: &[Vec<Value>]) -> RecordBatch {
    let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 1 << 16);
    for row in rows {
        builder.push_row(row).expect("test rows fit their schema");
    }
    builder.finish()
}

/// Creates `object` with `fields` (identity: the first) through `apply`.
async fn create(destination: &dyn Destination, object: &str, fields: &[Field]) {
    let spec = ObjectSpec { object: object.into(), fields: fields.to_vec(), key: vec![fields[0].name.clone()] };
    destination.apply(&spec, false).await.expect("apply creates the object");
}

/// Writes `rows` to `object` in `mode`, identity the first field, `per_batch` records a batch;
/// returns the failures with indexes into `rows`.
async fn write(
    destination: &dyn Destination,
    object: &str,
    schema: &Arc<Schema>,
    rows: &[Vec<Value>],
    per_batch: usize,
) -> Vec<RecordFailure> {
    let request = WriteRequest {
        object: object.into(),
        mode: SyncMode::UpdateOrCreate,
        schema: schema.clone(),
        targets: schema.fields.iter().map(|f| f.name.clone()).collect(),
        identity: vec![0],
        shaping: Default::default(),
        matching: Default::default(),
    };
    let mut writer = destination.writer(request).await.expect("a writer opens");
    let mut failures = Vec::new();
    for (n, chunk) in rows.chunks(per_batch).enumerate() {
        let batch = WriteBatch { records: batch(schema, chunk), operations: Operations::All(Operation::Upsert) };
        let found = writer.write(&batch).await.expect("the batch is written");
        failures.extend(found.into_iter().map(|f| RecordFailure { index: n * per_batch + f.index, ..f }));
    }
    failures
}

/// Every record and checkpoint of a read; with each checkpoint, how many records came before it.
async fn read_all(source: &dyn Source, request: ReadRequest) -> (Vec<Vec<Value>>, Vec<(usize, Json)>) {
    let mut reading = source.read(request).await.expect("the read starts");
    let (mut rows, mut checkpoints) = (Vec::new(), Vec::new());
    while let Some(event) = reading.events.next().await {
        match event.expect("the read goes on") {
            ReadEvent::Batch(batch) => rows.extend(batch.records().map(|r| r.values().expect("every value decodes"))),
            ReadEvent::Checkpoint(state) => checkpoints.push((rows.len(), state)),
        }
    }
    (rows, checkpoints)
}

fn stream_read(object: &str, fields: &[&str]) -> ReadRequest {
    let fields = fields.iter().map(|f| f.to_string()).collect();
    ReadRequest::new(Readable::Stream(object.into()), fields, 100, 1 << 20)
}

fn sorted_by_id(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort_by_key(|row| match row[0] {
        Value::Int(id) => id,
        _ => i64::MIN,
    });
    rows
}

/// `check` accepts the good configuration and refuses each bad one with its class.
pub async fn check_config(fixture: &dyn Fixture) {
    let (connector, ctx) = (fixture.connector(), context());
    connector.check(&ctx, &fixture.config()).await.expect("the good configuration checks");
    for (config, class) in fixture.bad_configs() {
        let error = connector.check(&ctx, &config).await.expect_err("a bad configuration fails its check");
        assert_eq!(error.class, class, "{config}: {error}");
    }
}

/// `discover` finds a written object with its fields and key.
pub async fn discover(fixture: &dyn Fixture) {
    let object = fixture.object("conf_discover");
    let fields = [field("id", FieldType::Int64), field("name", FieldType::Text)];
    let dest = destination(fixture, &fixture.config());
    create(dest.as_ref(), &object, &fields).await;
    let schema = Arc::new(Schema { fields: fields.to_vec() });
    write(dest.as_ref(), &object, &schema, &[vec![Value::Int(1), Value::Text("a".into())]], 10).await;
    let catalog = source(fixture, &context()).discover().await.expect("discover");
    assert!(catalog.streams.iter().all(|s| !s.fields.is_empty()), "every stream has fields");
    let stream = catalog.stream(&object).unwrap_or_else(|| panic!("{object} is discovered"));
    let names: Vec<&str> = stream.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["id", "name"]);
    assert_eq!(stream.key, ["id"]);
}

/// Every supported type survives a write into an object `apply` created and a read back.
pub async fn type_round_trip(fixture: &dyn Fixture) {
    let object = fixture.object("conf_types");
    let types = fixture.types();
    let fields: Vec<Field> = [field("id", FieldType::Int64)]
        .into_iter()
        .chain(types.iter().enumerate().map(|(n, (ty, _))| field(&format!("c{n}"), ty.clone())))
        .collect();
    let dest = destination(fixture, &fixture.config());
    let spec = ObjectSpec { object: object.clone(), fields: fields.clone(), key: vec!["id".into()] };
    let planned = dest.apply(&spec, true).await.expect("dry run");
    assert!(!planned.is_empty(), "a dry run says what it would create");
    assert_eq!(dest.apply(&spec, true).await.expect("dry run"), planned, "a dry run changes nothing");
    assert_eq!(dest.apply(&spec, false).await.expect("apply"), planned, "apply does what the dry run said");
    assert!(dest.apply(&spec, false).await.expect("apply again").is_empty(), "apply is idempotent");
    let with_values: Vec<Value> = [Value::Int(1)].into_iter().chain(types.iter().map(|(_, v)| v.clone())).collect();
    let nulls: Vec<Value> = [Value::Int(2)].into_iter().chain(types.iter().map(|_| Value::Null)).collect();
    let schema = Arc::new(Schema { fields: fields.clone() });
    let rows = vec![with_values, nulls];
    assert!(write(dest.as_ref(), &object, &schema, &rows, 10).await.is_empty(), "nothing is rejected");
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let (read, _) = read_all(source(fixture, &context()).as_ref(), stream_read(&object, &names)).await;
    let read = sorted_by_id(read);
    for (row, expected) in read.iter().zip(&rows) {
        for ((value, wanted), field) in row.iter().zip(expected).zip(&fields) {
            assert_eq!(value, wanted, "{} ({}) reads back as written", field.name, field.field_type.postgres_name());
        }
    }
    assert_eq!(read.len(), 2);
}

fn people(ids: std::ops::Range<i64>) -> (Arc<Schema>, Vec<Vec<Value>>) {
    let schema = Arc::new(Schema {
        fields: vec![field("id", FieldType::Int64), field("name", FieldType::Text), field("n", FieldType::Int32)],
    });
    let rows = ids.map(|id| vec![Value::Int(id), Value::Text(format!("person {id} ✓")), Value::Int(id % 7)]).collect();
    (schema, rows)
}

/// Writing the same batch twice in updateOrCreate leaves the same records.
pub async fn idempotent_writes(fixture: &dyn Fixture) {
    let object = fixture.object("conf_idempotent");
    let (schema, rows) = people(0..100);
    let dest = destination(fixture, &fixture.config());
    create(dest.as_ref(), &object, &schema.fields).await;
    write(dest.as_ref(), &object, &schema, &rows, 100).await;
    write(dest.as_ref(), &object, &schema, &rows, 100).await;
    let (read, _) = read_all(source(fixture, &context()).as_ref(), stream_read(&object, &["id", "name", "n"])).await;
    assert_eq!(sorted_by_id(read), rows, "the second write changed nothing");
}

/// One rejected record is reported with its index; the others are written.
pub async fn failure_isolation(fixture: &dyn Fixture) {
    let object = fixture.object("conf_failures");
    let rejection = fixture.rejection();
    let schema = Arc::new(Schema { fields: vec![field("id", FieldType::Int64), field("v", rejection.field_type)] });
    let rows: Vec<Vec<Value>> = (0..10)
        .map(|id| vec![Value::Int(id), if id == 4 { rejection.bad.clone() } else { rejection.good.clone() }])
        .collect();
    let dest = destination(fixture, &rejection.config);
    create(dest.as_ref(), &object, &schema.fields).await;
    let failures = write(dest.as_ref(), &object, &schema, &rows, 10).await;
    let indexes: Vec<usize> = failures.iter().map(|f| f.index).collect();
    assert_eq!(indexes, [4], "{failures:?}");
    assert!(!failures[0].message.is_empty(), "a failure says why");
    let (read, _) = read_all(source(fixture, &context()).as_ref(), stream_read(&object, &["id", "v"])).await;
    let ids: Vec<Value> = sorted_by_id(read).into_iter().map(|row| row[0].clone()).collect();
    let expected: Vec<Value> = (0..10).filter(|id| *id != 4).map(Value::Int).collect();
    assert_eq!(ids, expected, "the other records are written");
}

/// Waits up to 10 s for the fixture's open reads to drop to zero.
async fn assert_released(fixture: &dyn Fixture, how: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = fixture.open_reads().await;
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} read(s) still open 10 s after {how}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn long_read(fixture: &dyn Fixture) -> ReadRequest {
    let request = ReadRequest::new(Readable::Model(fixture.long_model()), vec!["id".into()], 100, 1 << 20);
    ReadRequest { order_by: vec![], ..request }
}

/// Dropping a read mid-stream stops it and releases its connection.
pub async fn cancel_by_drop(fixture: &dyn Fixture) {
    let source = source(fixture, &context());
    let mut reading = source.read(long_read(fixture)).await.expect("the read starts");
    let first = reading.events.next().await.expect("an event").expect("no failure");
    assert!(matches!(first, ReadEvent::Batch(_)), "the read yields batches");
    assert!(fixture.open_reads().await > 0, "the read is open while it streams");
    drop(reading);
    assert_released(fixture, "the read was dropped").await;
}

/// Cancelling the context stops a read: its stream ends (or fails) and its connection goes.
pub async fn cancel_by_token(fixture: &dyn Fixture) {
    let ctx = context().child();
    let source = source(fixture, &ctx);
    let mut reading = source.read(long_read(fixture)).await.expect("the read starts");
    reading.events.next().await.expect("an event").expect("no failure");
    ctx.cancel.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = reading.events.next().await {
            if event.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "a canceled read stops within 10 s");
    drop(reading);
    assert_released(fixture, "the read was canceled").await;
}

/// Records `0..n` with a timestamp cursor `at`, written to a new object.
async fn timeline(fixture: &dyn Fixture, name: &str, n: i64) -> (String, Vec<Vec<Value>>) {
    let object = fixture.object(name);
    // A zoned timestamp where the connector keeps one, else a plain one.
    let zoned = fixture.types().iter().any(|(ty, _)| *ty == FieldType::TimestampTz);
    let at_type = if zoned { FieldType::TimestampTz } else { FieldType::Timestamp };
    let schema = Arc::new(Schema {
        fields: vec![field("id", FieldType::Int64), field("at", at_type), field("name", FieldType::Text)],
    });
    let start = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("a time");
    let rows: Vec<Vec<Value>> = (0..n)
        .map(|id| {
            let at = start + chrono::Duration::seconds(id * 7) + chrono::Duration::microseconds(id);
            let at = if zoned { Value::TimestampTz(at) } else { Value::Timestamp(at.naive_utc()) };
            vec![Value::Int(id), at, Value::Text(format!("event {id}"))]
        })
        .collect();
    let dest = destination(fixture, &fixture.config());
    create(dest.as_ref(), &object, &schema.fields).await;
    assert!(write(dest.as_ref(), &object, &schema, &rows, 250).await.is_empty());
    (object, rows)
}

/// A cursor read emits checkpoints, and resuming from one returns only the records after it.
pub async fn checkpoints(fixture: &dyn Fixture) {
    let (object, rows) = timeline(fixture, "conf_cursor", 1000).await;
    let source = source(fixture, &context());
    let catalog = source.discover().await.expect("discover");
    let stream = catalog.stream(&object).expect("the object is discovered");
    assert!(stream.capabilities.cursor_fields.iter().any(|f| f == "at"), "{:?}", stream.capabilities);
    let cursor = Cursor { field: "at".into(), after: None, ordered: true };
    let request = ReadRequest { cursor: Some(cursor.clone()), ..stream_read(&object, &["id", "at", "name"]) };
    let (read, checkpoints) = read_all(source.as_ref(), request.clone()).await;
    assert_eq!(read, rows, "a cursor read returns every record in cursor order");
    assert!(checkpoints.len() >= 3, "a checkpoint per batch: {}", checkpoints.len());
    let (before, state) = checkpoints[checkpoints.len() / 2].clone();
    let resume = Cursor { after: state.get("cursor").cloned(), ..cursor };
    let (after, _) =
        read_all(source.as_ref(), ReadRequest { cursor: Some(resume.clone()), state: Some(state), ..request.clone() })
            .await;
    assert_eq!(after, rows[before..], "resuming returns only the records after the checkpoint");
    let unordered = Cursor { ordered: false, ..resume };
    let (mut any_order, _) = read_all(source.as_ref(), ReadRequest { cursor: Some(unordered), ..request }).await;
    // The timeline's ids rise with its cursor.
    any_order.sort_by_key(|record| match record[0] {
        Value::Int(id) => id,
        _ => i64::MAX,
    });
    assert!(any_order == rows[before..], "an unordered read returns the same records as resuming");
}

/// Partitions of a read cover every record exactly once.
pub async fn partitions(fixture: &dyn Fixture) {
    let (object, rows) = timeline(fixture, "conf_partitions", 500).await;
    let source = source(fixture, &context());
    for count in [1, 4] {
        let mut seen = Vec::new();
        for index in 0..count {
            let request = ReadRequest { partition: Some(Partition { index, count }), ..stream_read(&object, &["id"]) };
            let (read, _) = read_all(source.as_ref(), request).await;
            seen.extend(read.into_iter().map(|row| row[0].clone()));
        }
        let ids: Vec<Value> = sorted_by_id(seen.into_iter().map(|id| vec![id]).collect()).concat();
        let expected: Vec<Value> = rows.iter().map(|row| row[0].clone()).collect();
        assert_eq!(ids, expected, "{count} partitions cover every record once");
    }
}
