//! Bulk syncs end to end: PostgreSQL → PostgreSQL in every mode, PostgreSQL → MariaDB and
//! PostgreSQL → Parquet files on S3, tables cut into partitions that several workers load,
//! incremental runs with deletes, and schema changes that stop only their own schema.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mysql_async::prelude::Queryable;
use serde_json::{Value as Json, json};
use syncline_connectors::moto::Moto;
use syncline_core::{
    config::Deadlines,
    connector::{Context, LoadMode, LoadRequest, TableSpec},
    egress::Egress,
    record::{Field, Schema},
};
use uuid::Uuid;

use crate::support::*;

/// Changes to the source `users`: 100 rows inserted, 50 updated, 30 deleted.
const CHANGES: &str =
    "insert into users select g, 'new' || g || '@example.com', 'N', 'N', null, 1, 1.00, true, now(), now(), null, 'US'
       from generate_series(100001, 100100) g;
     update users set email = 'changed' || id || '@example.com', updated_at = now() where id between 1000 and 1049;
     delete from users where id between 5000 and 5029;";

/// A bulk sync from `source` into `destination` of `schemas` (id, config), into schema `public`
/// unless `spec` names one (`null`: the destination's default).
pub(crate) async fn bulk_sync(
    scene: &Scene,
    destination: &str,
    mode: &str,
    schemas: &[(&str, Json)],
    spec: Json,
) -> Uuid {
    let state = scene.install.db.client().await;
    let id = Uuid::new_v4();
    let org: Uuid = scene.org_id.parse().expect("org id");
    let (source, destination): (Uuid, Uuid) = (scene.conn.parse().expect("id"), destination.parse().expect("id"));
    let mut spec = spec;
    if spec["destination_configuration"].get("schema").is_none() {
        spec["destination_configuration"]["schema"] = json!("public");
    }
    state
        .execute(
            "insert into bulk_syncs (id, organization_id, name, source_connection_id, destination_connection_id, mode, active, spec)
             values ($1, $2, 'bulk', $3, $4, $5, true, $6)",
            &[&id, &org, &source, &destination, &mode, &spec],
        )
        .await
        .expect("bulk sync");
    for (schema, config) in schemas {
        state
            .execute(
                "insert into bulk_sync_schemas (bulk_sync_id, schema_id, config) values ($1, $2, $3)",
                &[&id, schema, config],
            )
            .await
            .expect("schema");
    }
    id
}

/// A schema of an ended execution: id, status, message, rows written, rows deleted, partitions.
type SchemaRun = (String, String, Option<String>, i64, i64, i32);

/// Starts a run of `sync_id` with `options` (through a due schedule) and waits for it to end;
/// returns its status, error and schemas.
pub(crate) async fn run(scene: &Scene, sync_id: Uuid, options: Json) -> (String, Option<String>, Vec<SchemaRun>) {
    let execution = start(scene, sync_id, options).await;
    wait(scene, execution).await
}

/// Starts a run of `sync_id` with `options` through a due schedule; returns the execution.
pub(crate) async fn start(scene: &Scene, sync_id: Uuid, options: Json) -> Uuid {
    let state = scene.install.db.client().await;
    let org: Uuid = scene.org_id.parse().expect("org id");
    let started: String = state.query_one("select now()::text", &[]).await.expect("now").get(0);
    state
        .execute(
            "insert into schedules (kind, subject_id, organization_id, schedule_id, schedule, options, next_run_at)
             values ('bulk_sync', $1, $2, 'test', '{\"frequency\": \"continuous\"}', $3, now())",
            &[&sync_id, &org, &options],
        )
        .await
        .expect("schedule");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = state
            .query_opt(
                "select id from executions where kind = 'bulk_sync' and subject_id = $1 and created_at >= $2::text::timestamptz",
                &[&sync_id, &started],
            )
            .await
            .expect("execution");
        if let Some(row) = row {
            state.execute("delete from schedules where subject_id = $1", &[&sync_id]).await.expect("unschedule");
            return row.get(0);
        }
        assert!(Instant::now() < deadline, "the bulk execution did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for bulk execution `id` to end; returns its status, error and schemas.
pub(crate) async fn wait(scene: &Scene, id: Uuid) -> (String, Option<String>, Vec<SchemaRun>) {
    let state = scene.install.db.client().await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let row = state
            .query_one("select status, errors ->> 0 from executions where id = $1", &[&id])
            .await
            .expect("execution");
        let status: String = row.get(0);
        if matches!(status.as_str(), "completed" | "completed_with_errors" | "failed" | "canceled") {
            let schemas = state
                .query(
                    "select schema_id, status, status_message, rows_written, rows_deleted, partitions
                     from bulk_schema_executions where execution_id = $1 order by schema_id",
                    &[&id],
                )
                .await
                .expect("schemas")
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect();
            return (status, row.get(1), schemas);
        }
        assert!(Instant::now() < deadline, "the bulk execution did not end in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A scene whose workers cut tables into partitions of about `partition_rows` rows, with a
/// source `users` table of `rows` rows and a destination connection.
pub(crate) async fn scene(name: &str, partition_rows: u64, rows: i64) -> (Scene, TestDb, String) {
    scene_with_roles(name, partition_rows, rows, "api,worker,scheduler").await
}

pub(crate) async fn scene_with_roles(
    name: &str,
    partition_rows: u64,
    rows: i64,
    roles: &str,
) -> (Scene, TestDb, String) {
    let mut install = Install::new().await;
    install.extra_env.push(("BULK_PARTITION_ROWS".into(), partition_rows.to_string()));
    let scene = Scene::with(install, roles, name, "select 1").await;
    let destination = TestDb::new().await;
    let source = scene.data.client().await;
    source.batch_execute(include_str!("../../../../testdata/sample_users_table.sql")).await.expect("table");
    let fill = include_str!("../../../../testdata/sample_users_fill.sql").replace("{rows}", &rows.to_string());
    source.batch_execute(&fill).await.expect("fill");
    let conn = pg_connection(&scene.api, "dest", &destination.name).await;
    (scene, destination, conn)
}

#[tokio::test]
async fn replicate_loads_in_partitions_then_applies_only_changes_and_deletes() {
    let (scene, destination, conn) = scene("bulk-replicate", 3_000, 20_000).await;
    let sync =
        bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({"tracking_field": "updated_at"}))], json!({}))
            .await;
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    let (source, target) = (scene.data.client().await, destination.client().await);
    assert_eq!(checksum(&target).await, checksum(&source).await, "the destination equals the source");
    let (_, _, _, written, _, partitions) = &schemas[0];
    assert_eq!(*written, 20_000);
    assert!(*partitions >= 5, "20,000 rows in partitions of 3,000: {partitions}");

    source.batch_execute(CHANGES).await.expect("change the source");
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    assert_eq!(checksum(&target).await, checksum(&source).await, "inserts, updates and deletes arrived");
    let (_, _, _, written, deleted, partitions) = &schemas[0];
    assert_eq!(*deleted, 30, "deletes are counted");
    assert_eq!(*partitions, 1, "an incremental run reads one slice");
    // The changed rows plus what the 5-minute lookback reads again (one row per second).
    assert!((150..=150 + 301).contains(written), "only moved rows are read: {written}");
    let shadows: i64 = target
        .query_one(
            "select count(*) from pg_tables where tablename like '%syncline%' and tablename <> '_syncline_loads'",
            &[],
        )
        .await
        .expect("tables")
        .get(0);
    assert_eq!(shadows, 0, "no shadow table is left behind");
    assert_none_running(&scene.install).await;
    destination.drop_now().await;
    scene.finish().await;
}

/// A coordinator that stopped after swapping a schema's shadow in but before recording the
/// schema's end leaves the schema running with its shadow now the table: the coordinator that
/// takes over completes it, with the deletes counted before the swap, instead of failing on a
/// shadow that is gone.
#[tokio::test]
async fn a_coordinator_taking_over_after_the_swap_completes_the_schema() {
    let (scene, destination, conn) = scene("bulk-swap", 3_000, 5_000).await;
    let sync = bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({}))], json!({})).await;
    let (status, error, _) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?}");
    let source = scene.data.client().await;
    source.batch_execute("delete from users where id <= 10").await.expect("delete at the source");
    let resync = start(&scene, sync, json!({"resync_mode": "resync"})).await;
    let (status, error, schemas) = wait(&scene, resync).await;
    assert_eq!((status.as_str(), schemas[0].4), ("completed", 10), "{error:?} {schemas:?}");

    let state = scene.install.db.client().await;
    state
        .execute(
            "update bulk_schema_executions set status = 'running', completed_at = null where execution_id = $1",
            &[&resync],
        )
        .await
        .expect("the schema as the stopped coordinator left it");
    state
        .execute(
            "update executions set status = 'running', completed_at = null, lease_until = now() - interval '1 second'
             where id = $1",
            &[&resync],
        )
        .await
        .expect("the run as the stopped coordinator left it");
    let (status, error, schemas) = wait(&scene, resync).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    let (_, schema_status, message, _, deleted, _) = &schemas[0];
    assert_eq!((schema_status.as_str(), *deleted), ("completed", 10), "{message:?}");
    let attempts: i32 =
        state.query_one("select attempt from executions where id = $1", &[&resync]).await.expect("run").get(0);
    assert!(attempts >= 2, "another coordinator took the run over");
    let target = destination.client().await;
    assert_eq!(checksum(&target).await, checksum(&source).await, "the destination equals the source");
    assert_none_running(&scene.install).await;
    destination.drop_now().await;
    scene.finish().await;
}

/// `users` row by row, every column but `attributes` rendered alike by both engines (timestamps in
/// UTC, decimals without trailing zeros: the source's `numeric(12,2)` is read as `numeric`, which
/// MariaDB stores as `DECIMAL(65,30)`), and `attributes` parsed: PostgreSQL writes `jsonb` with
/// spaces, MariaDB as it was sent.
type UserRows = Vec<(i64, String, Option<Json>)>;

async fn pg_users(client: &tokio_postgres::Client) -> UserRows {
    let sql = "select id, concat_ws('|', email, first_name, last_name, coalesce(company, '(null)'), score,
                      trim_scale(revenue), active, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
                      to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), country),
                      attributes::text
               from users order by id";
    let rows = client.query(sql, &[]).await.expect("users");
    rows.iter().map(|r| (r.get(0), r.get(1), parsed(r.get(2)))).collect()
}

async fn mariadb_users(db: &MariaDb) -> UserRows {
    let sql = "select id, concat_ws('|', email, first_name, last_name, coalesce(company, '(null)'), score,
                      trim(trailing '.' from trim(trailing '0' from revenue)), case active when 1 then 't' when 0 then 'f' end,
                      date_format(created_at, '%Y-%m-%d %H:%i:%s.%f'),
                      date_format(updated_at, '%Y-%m-%d %H:%i:%s.%f'), country),
                      attributes
               from users order by id";
    let mut conn = db.conn().await;
    let rows: Vec<(i64, String, Option<String>)> = conn.query(sql).await.expect("users");
    rows.into_iter().map(|(id, line, attributes)| (id, line, parsed(attributes))).collect()
}

/// Asserts `actual` equals `expected`, showing the first row that differs.
fn assert_same(actual: &UserRows, expected: &UserRows, what: &str) {
    let differs = actual.iter().zip(expected).find(|(a, e)| a != e);
    assert!(differs.is_none(), "{what}: {differs:?}");
    assert_eq!(actual.len(), expected.len(), "{what}");
}

fn parsed(json: Option<String>) -> Option<Json> {
    json.map(|text| serde_json::from_str(&text).expect("JSON"))
}

#[tokio::test]
async fn replicate_into_mariadb_equals_the_source() {
    let (scene, unused, _) = scene("bulk-mariadb", 3_000, 20_000).await;
    unused.drop_now().await;
    let mariadb = MariaDb::new().await;
    let conn = mariadb.connection(&scene.api, "maria").await;
    // No schema: the tables go into the connection's database.
    let spec = json!({"destination_configuration": {"schema": null}});
    let sync =
        bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({"tracking_field": "updated_at"}))], spec).await;
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    let source = scene.data.client().await;
    let expected = pg_users(&source).await;
    assert_eq!(expected.len(), 20_000);
    assert_same(&mariadb_users(&mariadb).await, &expected, "the destination equals the source");
    let (_, _, _, written, _, partitions) = &schemas[0];
    assert_eq!(*written, 20_000);
    assert!(*partitions >= 5, "20,000 rows in partitions of 3,000: {partitions}");

    source.batch_execute(CHANGES).await.expect("change the source");
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    assert_same(&mariadb_users(&mariadb).await, &pg_users(&source).await, "inserts, updates and deletes arrived");
    let (_, _, _, written, deleted, partitions) = &schemas[0];
    assert_eq!(*deleted, 30, "deletes are counted");
    assert_eq!(*partitions, 1, "an incremental run reads one slice");
    assert!((150..=150 + 301).contains(written), "only moved rows are read: {written}");
    let mut tables: Vec<String> = mariadb
        .conn()
        .await
        .query("select table_name from information_schema.tables where table_schema = database()")
        .await
        .expect("tables");
    tables.sort();
    assert_eq!(tables, ["_syncline_loads", "users"], "no shadow table is left behind");
    assert_none_running(&scene.install).await;
    mariadb.drop_now().await;
    scene.finish().await;
}

/// The checksum of `users` as files connection `config` holds it: its latest copy read back
/// with the parquet crate, loaded into the empty database `into` by the PostgreSQL bulk
/// destination and summed there by the query that sums the source; and the copy's manifest.
async fn files_checksum(scene: &Scene, config: &Json, into: &TestDb) -> (String, Json) {
    let egress = Egress::new(&scene.install.db.url, vec![], vec![]);
    let ctx = Context::new(Arc::new(egress), Deadlines::default());
    let table = "public.users";
    let (manifest, batches) =
        syncline_connectors::files::read::latest(&ctx, config, table).await.expect("read the files back");
    let fields: Vec<Field> = serde_json::from_value(manifest["schema"].clone()).expect("the manifest's schema");
    let schema = Arc::new(Schema { fields });
    let (host, port) = server_address();
    let postgres = syncline_connectors::get("postgresql").expect("postgresql");
    let target = postgres.bulk_destination(&ctx, &pg_config(&host, port, &into.name, "readback")).expect("postgres");
    target.drop_table(table).await.expect("drop");
    target.shape(&TableSpec { table: table.into(), fields: schema.fields.clone(), key: vec![] }).await.expect("shape");
    let request = LoadRequest {
        table: table.into(),
        schema,
        key: vec![],
        mode: LoadMode::Append,
        marker: Uuid::new_v4(),
        soft_delete: None,
    };
    let mut loader = target.load(request).await.expect("load");
    for batch in &batches {
        loader.write(batch).await.expect("write");
    }
    loader.commit().await.expect("commit");
    (checksum(&into.client().await).await, manifest)
}

#[tokio::test]
async fn snapshots_into_parquet_on_s3_equal_the_source() {
    let Some(moto) = Moto::start().await else { return };
    moto.create_bucket("lake").await;
    let (scene, readback, _) = scene("bulk-files", 2_000, 6_000).await;
    let config = json!({
        "url": moto.url("lake", "warehouse"),
        "format": "parquet",
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    });
    let files = scene
        .api
        .ok("POST", "/api/connections", Some(json!({"name": "lake", "type": "files", "configuration": config})))
        .await["id"]
        .as_str()
        .expect("connection id")
        .to_owned();
    let sync = bulk_sync(&scene, &files, "snapshot", &[("public.users", json!({}))], json!({})).await;
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    let source = scene.data.client().await;
    let (copied, first) = files_checksum(&scene, &config, &readback).await;
    assert_eq!(copied, checksum(&source).await, "the Parquet copy equals the source");
    assert!(first["files"].as_array().map_or(0, Vec::len) >= 2, "a file per partition: {first}");

    source.batch_execute(CHANGES).await.expect("change the source");
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    assert_eq!(schemas[0].3, 6_070, "the new copy is whole: {schemas:?}");
    let (copied, second) = files_checksum(&scene, &config, &readback).await;
    assert_eq!(copied, checksum(&source).await, "inserts, updates and deletes arrived");
    assert_ne!(second["execution"], first["execution"]);
    let listing = moto.listing("lake").await;
    let first_copy = first["execution"].as_str().expect("execution");
    assert!(listing.contains(first_copy), "the copy swapped out stays for readers until the next swap");
    assert_none_running(&scene.install).await;
    readback.drop_now().await;
    scene.finish().await;
}

#[tokio::test]
async fn snapshot_replaces_and_append_adds() {
    let (scene, destination, conn) = scene("bulk-modes", 1_000, 3_000).await;
    let target = destination.client().await;
    let snapshot = bulk_sync(&scene, &conn, "snapshot", &[("public.users", json!({}))], json!({})).await;
    for _ in 0..2 {
        let (status, error, _) = run(&scene, snapshot, json!({})).await;
        assert_eq!(status, "completed", "{error:?}");
        assert_eq!(checksum(&target).await, checksum(&scene.data.client().await).await, "each snapshot is whole");
    }
    let append = bulk_sync(
        &scene,
        &conn,
        "append",
        &[("public.users", json!({"user_output_name": "users_log", "fields": ["id", "email"]}))],
        json!({"automatically_add_new_fields": "none"}),
    )
    .await;
    for run_number in 1..=2 {
        let (status, error, _) = run(&scene, append, json!({})).await;
        assert_eq!(status, "completed", "{error:?}");
        let rows: i64 = target.query_one("select count(*) from users_log", &[]).await.expect("count").get(0);
        assert_eq!(rows, 3_000 * run_number, "append adds every run's rows");
    }
    let columns: Vec<String> = target
        .query(
            "select column_name::text from information_schema.columns where table_name = 'users_log' order by 1",
            &[],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["email", "id"], "only the selected fields");
    destination.drop_now().await;
    scene.finish().await;
}

#[tokio::test]
async fn schema_changes_stop_only_their_schema() {
    let (scene, destination, conn) = scene("bulk-schema", 1_000, 2_000).await;
    let source = scene.data.client().await;
    source
        .batch_execute(
            "create table things (id int primary key, label text); insert into things values (1, 'a'), (2, 'b');",
        )
        .await
        .expect("things");
    let sync =
        bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({})), ("public.things", json!({}))], json!({}))
            .await;
    let (status, error, _) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?}");

    source.batch_execute("alter table users add column plan text default 'free'; alter table things alter column label type int using 0;").await.expect("alter");
    let (status, _, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed_with_errors", "{schemas:?}");
    let things = schemas.iter().find(|s| s.0 == "public.things").expect("things");
    assert_eq!(things.1, "failed");
    assert!(things.2.as_deref().unwrap_or_default().contains("\"label\" changed type"), "{things:?}");
    let users = schemas.iter().find(|s| s.0 == "public.users").expect("users");
    assert_eq!(users.1, "completed", "{users:?}");
    let target = destination.client().await;
    let plans: i64 =
        target.query_one("select count(*) from users where plan = 'free'", &[]).await.expect("plan").get(0);
    assert_eq!(plans, 2_000, "the new column arrived");

    let (status, error, schemas) =
        run(&scene, sync, json!({"resync_mode": "rebuild", "schemas": ["public.things"]})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    assert_eq!(schemas.len(), 1, "only the schema asked for ran");
    let label: i32 = target.query_one("select label from things where id = 1", &[]).await.expect("label").get(0);
    assert_eq!(label, 0, "the rebuilt table has the new type");

    source.batch_execute("drop table things").await.expect("drop");
    let (status, _, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed_with_errors");
    let things = schemas.iter().find(|s| s.0 == "public.things").expect("things");
    assert!(things.2.as_deref().unwrap_or_default().contains("no longer exists"), "{things:?}");
    destination.drop_now().await;
    scene.finish().await;
}

/// Rows of the scale-out test's table (`SYNCLINE_SCALE_ROWS`; the full-size run uses 10,000,000).
fn scale_rows() -> i64 {
    std::env::var("SYNCLINE_SCALE_ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(300_000)
}

#[tokio::test]
async fn three_workers_share_a_table_and_a_killed_one_loses_nothing() {
    three_workers_and_a_kill(scale_rows(), Victim::PartitionLoader).await;
}

#[tokio::test]
async fn a_killed_coordinator_reloads_its_table_at_a_new_snapshot() {
    three_workers_and_a_kill(60_000, Victim::Coordinator).await;
}

/// Which worker a scale-out test kills mid-load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// One loading a partition but not coordinating: the run resumes with the partitions not
    /// yet committed.
    PartitionLoader,
    /// The one coordinating: the snapshot the partitions read at ends with it, so the table is
    /// loaded again from the start at a new one.
    Coordinator,
}

/// Loads a `rows`-row table with three workers, kills `victim` once partitions committed, and
/// checks the run still completes with the destination equal to the source, each partition
/// loaded once.
async fn three_workers_and_a_kill(rows: i64, victim: Victim) {
    let (scene, destination, conn) = scene_with_roles("bulk-scale", (rows / 40) as u64, rows, "api,scheduler").await;
    let mut workers = Vec::new();
    for host in ["w1", "w2", "w3"] {
        workers.push(scene.install.spawn_as("worker", host).await);
    }
    let sync = bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({}))], json!({})).await;
    let execution = start(&scene, sync, json!({})).await;
    let state = scene.install.db.client().await;
    // Once partitions committed, kill -9 a worker that is loading one.
    let deadline = Instant::now() + Duration::from_secs(300);
    let host = loop {
        let row = state
            .query_opt(
                "select case when $2 then c.worker else e.worker end
                 from executions e join bulk_partitions p on e.kind = 'bulk_partition' and e.subject_id = p.id
                 join executions c on c.id = p.execution_id
                 where p.execution_id = $1 and e.status = 'running' and e.worker is not null
                   and c.worker is not null and (e.worker <> c.worker or $2)
                   and exists (select 1 from bulk_partitions d where d.execution_id = $1 and d.status = 'committed')
                   and (select count(*) from bulk_partitions u where u.execution_id = $1 and u.status <> 'committed') >= 5
                 limit 1",
                &[&execution, &(victim == Victim::Coordinator)],
            )
            .await
            .expect("running partitions");
        if let Some(row) = row {
            let worker: String = row.get(0);
            break ["w1", "w2", "w3"].iter().position(|h| worker.contains(&format!("-{h}-"))).expect("a known host");
        }
        assert!(Instant::now() < deadline, "no partition was loading");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    workers[host].kill();
    let (status, error, schemas) = wait(&scene, execution).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    let (source, target) = (scene.data.client().await, destination.client().await);
    assert_eq!(checksum(&target).await, checksum(&source).await, "the destination equals the source");
    let (_, _, _, written, _, partitions) = &schemas[0];
    assert_eq!(*written, rows, "every row written once");
    let row = state
        .query_one(
            "select count(*), count(distinct worker), count(*) filter (where status = 'committed'), array_agg(id)
             from bulk_partitions where execution_id = $1",
            &[&execution],
        )
        .await
        .expect("partitions");
    let (count, workers_used, committed, ids): (i64, i64, i64, Vec<Uuid>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(count, *partitions as i64);
    assert_eq!(committed, count, "every partition committed");
    assert!(workers_used >= 2, "partitions ran on several workers: {workers_used}");
    let markers: i64 = target
        .query_one("select count(*) from public._syncline_loads where marker = any($1)", &[&ids])
        .await
        .expect("markers")
        .get(0);
    assert_eq!(markers, count, "each partition was loaded exactly once");
    // When the coordinator died, the snapshot its partitions read at ended with it: the table
    // was loaded again from the start (said in the log), at one new snapshot. A table is only
    // reloaded by a coordinator that started again (after its worker died, or a retry or a lost
    // lease on a loaded machine).
    let row = state
        .query_one(
            "select (select count(*) from execution_logs
                     where execution_id = $1 and message like '%loading it again from the start%'),
                    attempt > 1 or retries > 0
             from executions where id = $1",
            &[&execution],
        )
        .await
        .expect("logs");
    let (reloaded, restarted): (i64, bool) = (row.get(0), row.get(1));
    match victim {
        Victim::Coordinator => assert!(reloaded > 0, "the killed coordinator's table was reloaded"),
        Victim::PartitionLoader => assert!(reloaded == 0 || restarted, "no reload without a coordinator restart"),
    }
    assert_none_running(&scene.install).await;
    drop(workers);
    destination.drop_now().await;
    scene.finish().await;
}

#[tokio::test]
async fn soft_deletes_mark_rows_and_keep_them_through_full_reloads() {
    let (scene, destination, conn) = scene("bulk-soft", 1_000, 2_000).await;
    let spec = json!({"destination_configuration": {"soft_delete_column": "deleted_at"}});
    let sync = bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({}))], spec).await;
    assert_eq!(run(&scene, sync, json!({})).await.0, "completed");
    let source = scene.data.client().await;
    source.batch_execute("delete from users where id <= 10").await.expect("delete");
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?}");
    assert_eq!(schemas[0].4, 10, "ten rows newly deleted");
    let target = destination.client().await;
    let row = target
        .query_one("select count(*), count(*) filter (where deleted_at is not null and id <= 10) from users", &[])
        .await
        .expect("counts");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (2_000, 10), "deleted rows stay, marked");
    source.batch_execute("insert into users select * from users where false").await.expect("noop");
    let (_, _, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(schemas[0].4, 0, "rows deleted before are not counted again");
    let marked: i64 =
        target.query_one("select count(*) from users where deleted_at is not null", &[]).await.expect("marked").get(0);
    assert_eq!(marked, 10, "a full reload keeps the marks");
    destination.drop_now().await;
    scene.finish().await;
}
