//! Faults end to end: model syncs through the API with the in-memory reference connector
//! (`REFERENCE_CONNECTORS=true`) failing on purpose. Every execution ends as it should (none
//! stays `running`), its console log tells each try, and the next run, after the connection is
//! fixed, completes. Then a
//! memory source with a composite identity into PostgreSQL: equal by checksum, a 1% change
//! sends exactly that 1%, an unchanged model sends nothing.

use std::{collections::HashMap, time::Duration};

use futures::SinkExt;
use serde_json::{Value as Json, json};
use syncline_connectors::memory::Dataset;
use syncline_core::record::Value;

use crate::support::{Api, Install, Process, TestDb, assert_none_running, organization, pg_connection, run_sync};

const TIMEOUT: Duration = Duration::from_secs(120);
/// Records of the model the fault tests sync.
const ROWS: i64 = 200;
/// Every field of the generated dataset but the identity.
const FIELDS: [&str; 10] =
    ["name", "amount", "happened_at", "tags", "payload", "flag", "note", "day", "ref_id", "score"];

/// An installation with the reference connector, one organization, and a sync from a memory
/// source into `target` (an object of a memory or PostgreSQL connection).
struct Faulty {
    install: Install,
    process: Process,
    api: Api,
    source: String,
    sync_id: String,
}

async fn install(name: &str) -> (Install, Process, Api) {
    let mut install = Install::new().await;
    install.extra_env = vec![("REFERENCE_CONNECTORS".into(), "true".into())];
    let process = install.spawn("api,worker").await;
    let (_, api) = organization(&install, &process, name).await;
    (install, process, api)
}

async fn connection(api: &Api, name: &str, configuration: Json) -> String {
    let body = json!({"name": name, "type": "memory", "configuration": configuration});
    api.ok("POST", "/api/connections", Some(body)).await["id"].as_str().expect("connection id").to_owned()
}

/// A model of the memory `source` and an updateOrCreate sync of every field into `object` of
/// `target`, identified by `(region, id)`.
async fn sync(api: &Api, source: &str, target: &str, object: &str) -> String {
    let model = json!({"name": "orders", "connection_id": source, "configuration": {"dataset": "orders"}});
    let model = api.ok("POST", "/api/models", Some(model)).await;
    let model_id = model["id"].as_str().expect("model id");
    let identity = |field: &str| json!({"source": {"model_id": model_id, "field": field}, "target": field, "function": "Equality"});
    let fields: Vec<Json> =
        FIELDS.iter().map(|f| json!({"source": {"model_id": model_id, "field": f}, "target": f})).collect();
    let body = json!({
        "name": "orders", "mode": "updateOrCreate", "schedule": {"frequency": "manual"},
        "target": {"connection_id": target, "object": object},
        "identities": {"mappings": [identity("region"), identity("id")], "strategy": "and"},
        "fields": fields,
    });
    api.ok("POST", "/api/syncs", Some(body)).await["id"].as_str().expect("sync id").to_owned()
}

fn memory(dataset: &str, faults: Json) -> Json {
    json!({"dataset": dataset, "rows": ROWS, "faults": faults})
}

impl Faulty {
    /// A sync from a clean memory source into a memory destination with `faults`.
    async fn new(name: &str, faults: Json) -> (Self, String) {
        let (install, process, api) = install(name).await;
        let source = connection(&api, "source", memory("orders", json!({}))).await;
        let target = connection(&api, "target", memory("sink", faults)).await;
        let sync_id = sync(&api, &source, &target, "orders").await;
        (Self { install, process, api, source, sync_id }, target)
    }

    /// Replaces the configuration of connection `id`.
    async fn configure(&self, id: &str, name: &str, configuration: Json) {
        let body = json!({"name": name, "configuration": configuration});
        self.api.ok("PUT", &format!("/api/connections/{id}"), Some(body)).await;
    }

    async fn run(&self) -> Json {
        run_sync(&self.api, &self.sync_id, TIMEOUT).await
    }

    /// The console log messages of execution `execution` (up to 50).
    async fn console(&self, execution: &Json) -> Vec<String> {
        let id = execution["id"].as_str().expect("execution id");
        let log = self.api.ok("GET", &format!("/api/syncs/{}/executions/{id}/consolelog", self.sync_id), None).await;
        let entries = log["entries"].as_array().expect("entries");
        entries.iter().map(|e| e["message"].as_str().expect("message").to_owned()).collect()
    }

    /// Seconds between the start and the end of execution `id`.
    async fn took(&self, execution: &Json) -> f64 {
        let id: uuid::Uuid = execution["id"].as_str().and_then(|id| id.parse().ok()).expect("execution id");
        let state = self.install.db.client().await;
        let row = state
            .query_one(
                "select extract(epoch from completed_at - started_at)::float8 from executions where id = $1",
                &[&id],
            )
            .await
            .expect("execution times");
        row.get(0)
    }

    /// Checks that no execution is left running, then removes everything.
    async fn finish(self) {
        assert_none_running(&self.install).await;
        drop(self.process);
        self.install.finish().await;
    }
}

/// Asserts a failed execution: its class, retries and a message naming the cause.
fn assert_failed(execution: &Json, class: &str, cause: &str) {
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(execution["error_class"], class, "{execution}");
    assert_eq!(execution["retries"], 0, "{execution}");
    let errors = execution["errors"].to_string();
    assert!(errors.contains(cause), "errors name the cause {cause:?}: {execution}");
}

fn assert_copied(execution: &Json) {
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(execution["counts"]["insert"], ROWS, "{execution}");
}

#[tokio::test]
async fn a_panic_mid_load_or_mid_read_fails_the_execution() {
    let (faulty, target) = Faulty::new("panic", json!({"panic_at_batch": 1})).await;
    let run = faulty.run().await;
    assert_failed(&run, "permanent", "injected panic at write batch 1");
    assert!(run["errors"].to_string().contains("the run crashed"), "{run}");
    faulty.configure(&target, "target", memory("sink", json!({}))).await;
    assert_copied(&faulty.run().await);

    // The source panics inside the extract stage, a task of its own.
    faulty
        .configure(
            &faulty.source,
            "source",
            json!({"dataset": "orders", "rows": ROWS, "version": 2,
        "faults": {"panic_at_batch": 1}}),
        )
        .await;
    let run = faulty.run().await;
    assert_failed(&run, "permanent", "injected panic at read batch 1");
    faulty.configure(&faulty.source, "source", json!({"dataset": "orders", "rows": ROWS, "version": 2})).await;
    let next = faulty.run().await;
    assert_eq!((next["status"].as_str(), next["counts"]["update"].as_i64()), (Some("completed"), Some(2)), "{next}");
    faulty.finish().await;
}

#[tokio::test]
async fn a_failure_index_past_the_batch_fails_the_execution() {
    let (faulty, target) = Faulty::new("range", json!({"out_of_range_failure": true})).await;
    let run = faulty.run().await;
    assert_failed(
        &run,
        "permanent",
        &format!("the destination reported a failure for record {} of a batch of {ROWS}", ROWS + 1),
    );
    faulty.configure(&target, "target", memory("sink", json!({}))).await;
    assert_copied(&faulty.run().await);
    faulty.finish().await;
}

#[tokio::test]
async fn transient_failures_are_retried_until_they_clear() {
    let (faulty, _) = Faulty::new("transient", json!({"transient_failures": 2})).await;
    let run = faulty.run().await;
    assert_copied(&run);
    assert_eq!(run["retries"], 2, "{run}");
    assert_eq!(run["errors"], json!([]), "{run}");
    // Each failed try, and the wait before the next, is in the console log; the last try completed.
    let log = faulty.console(&run).await;
    let tries: Vec<&str> = log
        .iter()
        .filter(|m| m.starts_with("failed (") || m.starts_with("trying again") || m.starts_with("completed"))
        .map(|m| m.split(':').next().unwrap_or_default())
        .collect();
    let waits = ["trying again in 1 s (retry 1 of 3)", "trying again in 2 s (retry 2 of 3)"];
    assert_eq!(tries, ["failed (transient)", waits[0], "failed (transient)", waits[1], "completed"], "{log:?}");
    assert_eq!(log.iter().filter(|m| m.starts_with("started: model \"orders\"")).count(), 3, "{log:?}");
    // The records arrived: the destination's object reads back as a model.
    let target = faulty.api.ok("GET", "/api/connections", None).await;
    let target_id = target.as_array().and_then(|c| c.iter().find(|c| c["name"] == "target")).expect("target")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let written = json!({"name": "written", "connection_id": target_id, "configuration": {"dataset": "orders"}});
    let written = faulty.api.ok("POST", "/api/models", Some(written)).await;
    let sample =
        faulty.api.ok("GET", &format!("/api/models/{}/sample", written["id"].as_str().expect("id")), None).await;
    assert_eq!(sample["records"].as_array().map(Vec::len), Some(10), "{sample}");
    let again = faulty.run().await;
    assert_eq!((again["status"].as_str(), again["counts"]["total"].as_i64()), (Some("completed"), Some(0)), "{again}");
    assert_eq!(again["retries"], 0, "{again}");
    faulty.finish().await;
}

#[tokio::test]
async fn a_rate_limit_is_waited_out() {
    let faults = json!({"rate_limited": {"times": 1, "retry_after_ms": 2500}});
    let (faulty, _) = Faulty::new("ratelimit", faults).await;
    let run = faulty.run().await;
    assert_copied(&run);
    assert_eq!(run["retries"], 1, "{run}");
    let took = faulty.took(&run).await;
    assert!(took >= 2.5, "the worker waited for retry_after: the run took {took} s");
    let log = faulty.console(&run).await;
    assert!(log.contains(&"trying again in 2.5 s (retry 1 of 3)".to_owned()), "{log:?}");
    assert_eq!(faulty.run().await["status"], "completed");
    faulty.finish().await;
}

#[tokio::test]
async fn a_permanent_error_fails_at_once() {
    let (faulty, target) = Faulty::new("permanent", json!({"permanent": "the disk is on fire"})).await;
    let run = faulty.run().await;
    assert_failed(&run, "permanent", "the disk is on fire");
    faulty.configure(&target, "target", memory("sink", json!({}))).await;
    assert_copied(&faulty.run().await);
    faulty.finish().await;
}

/// The destination table and a copy of what it must hold (same columns, primary key).
const ORDERS: &str = "(region text, id bigint, name text, amount numeric(38,10), happened_at timestamptz,
    tags text[], payload json, flag boolean, note text, day date, ref_id uuid, score double precision,
    primary key (region, id))";

/// Row count and a digest of every column of `table`, in identity order.
async fn checksum(client: &tokio_postgres::Client, table: &str) -> String {
    let sql = format!(
        "select count(*)::text || ' ' || coalesce(md5(string_agg(md5(t::text), '' order by t.region collate \"C\", t.id)), '-')
         from {table} t"
    );
    client.query_one(&sql, &[]).await.expect("checksum").get(0)
}

/// Replaces the rows of `table` with `data`, copied in PostgreSQL's binary format.
async fn fill(client: &tokio_postgres::Client, table: &str, data: &Dataset) {
    client.batch_execute(&format!("truncate {table}")).await.expect("truncate");
    let sink =
        client.copy_in::<_, bytes::Bytes>(&format!("copy {table} from stdin (format binary)")).await.expect("copy");
    futures::pin_mut!(sink);
    let header = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
    for part in
        [bytes::Bytes::from_static(header), data.batch().data().clone(), bytes::Bytes::from_static(&[0xff, 0xff])]
    {
        sink.send(part).await.expect("copy data");
    }
    sink.finish().await.expect("copy done");
}

/// `(region, id) → xmin` of every destination row: a row whose xmin changed was rewritten.
async fn versions(client: &tokio_postgres::Client) -> HashMap<(String, i64), String> {
    let rows = client.query("select region, id, xmin::text from orders", &[]).await.expect("versions");
    rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect()
}

#[tokio::test]
async fn memory_source_into_postgres_with_a_composite_identity() {
    let (install, process, api) = install("composite").await;
    let data = TestDb::new().await;
    let db = data.client().await;
    db.batch_execute(&format!("create table orders {ORDERS}; create table expected {ORDERS};")).await.expect("tables");
    let source_config = |version: u32| json!({"dataset": "orders", "rows": 1000, "seed": 42, "version": version});
    let source = connection(&api, "source", source_config(1)).await;
    let target = pg_connection(&api, "db", &data.name).await;
    let sync_id = sync(&api, &source, &target, "public.orders").await;

    let first = run_sync(&api, &sync_id, TIMEOUT).await;
    assert_eq!(
        (first["status"].as_str(), first["counts"]["insert"].as_i64()),
        (Some("completed"), Some(1000)),
        "{first}"
    );
    let v1 = Dataset { rows: 1000, seed: 42, version: 1 };
    fill(&db, "expected", &v1).await;
    assert_eq!(checksum(&db, "orders").await, checksum(&db, "expected").await, "the destination equals the model");

    let before = versions(&db).await;
    api.ok(
        "PUT",
        &format!("/api/connections/{source}"),
        Some(json!({"name": "source", "configuration": source_config(2)})),
    )
    .await;
    let second = run_sync(&api, &sync_id, TIMEOUT).await;
    assert_eq!(
        (second["status"].as_str(), second["counts"]["update"].as_i64(), second["counts"]["insert"].as_i64()),
        (Some("completed"), Some(10), Some(0)),
        "a 1% change sends 1%: {second}"
    );
    let v2 = Dataset { version: 2, ..v1 };
    fill(&db, "expected", &v2).await;
    assert_eq!(checksum(&db, "orders").await, checksum(&db, "expected").await);
    let after = versions(&db).await;
    let mut rewritten: Vec<(String, i64)> =
        after.into_iter().filter(|(key, v)| before.get(key) != Some(v)).map(|(key, _)| key).collect();
    let mut changed: Vec<(String, i64)> = (0..1000)
        .filter(|i| v2.changed(*i))
        .map(|i| match &v2.row(i)[..2] {
            [Value::Text(region), Value::Int(id)] => (region.clone(), *id),
            other => panic!("identity {other:?}"),
        })
        .collect();
    rewritten.sort();
    changed.sort();
    assert_eq!(rewritten, changed, "exactly the changed records were written");

    let third = run_sync(&api, &sync_id, TIMEOUT).await;
    assert_eq!((third["status"].as_str(), third["counts"]["total"].as_i64()), (Some("completed"), Some(0)), "{third}");
    drop(process);
    data.drop_now().await;
    install.finish().await;
}
