//! Change data capture of bulk syncs: a `replicate` sync from a PostgreSQL connection with
//! `change_detection` on gets a replication slot before its initial load, then streams the
//! source's changes into the destination; the slot is dropped once the sync is deleted.

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::{
    bulk_sync::{bulk_sync, run, scene, scene_with_roles},
    support::*,
};

/// Turns `change_detection` on for the scene's source connection.
async fn capture_changes(scene: &Scene) {
    let state = scene.install.db.client().await;
    let conn: Uuid = scene.conn.parse().expect("id");
    state
        .execute(
            "update connections set configuration = configuration || '{\"change_detection\": true}' where id = $1",
            &[&conn],
        )
        .await
        .expect("change detection");
}

/// The replication slots of the source database.
async fn slots(scene: &Scene) -> Vec<String> {
    let source = scene.data.client().await;
    let sql = "select slot_name::text from pg_replication_slots where database = current_database() order by 1";
    source.query(sql, &[]).await.expect("slots").iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn a_capturing_sync_has_a_slot_from_its_first_load_until_it_is_deleted() {
    let (scene, destination, conn) = scene("bulk-cdc-slot", 10_000, 1_000).await;
    capture_changes(&scene).await;
    let sync = bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({}))], json!({})).await;
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    let slot = format!("syncline_{}", sync.simple());
    assert_eq!(slots(&scene).await, vec![slot.clone()], "one slot per capturing sync");
    let state = scene.install.db.client().await;
    let recorded: i64 = state
        .query_one("select count(*) from capture_slots where bulk_sync_id = $1 and slot = $2", &[&sync, &slot])
        .await
        .expect("capture slots")
        .get(0);
    assert_eq!(recorded, 1, "the slot is recorded");
    let (status, error, _) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "a second run keeps the slot: {error:?}");
    assert_eq!(slots(&scene).await, vec![slot], "still one slot");

    state.execute("delete from bulk_syncs where id = $1", &[&sync]).await.expect("delete the sync");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !slots(&scene).await.is_empty() {
        assert!(Instant::now() < deadline, "the slot of the deleted sync was not dropped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let publications: i64 =
        scene.data.client().await.query_one("select count(*) from pg_publication", &[]).await.expect("pubs").get(0);
    assert_eq!(publications, 0, "the publication is dropped too");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: i64 = state.query_one("select count(*) from capture_slots", &[]).await.expect("rows").get(0);
        if rows == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the capture_slots row stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    destination.drop_now().await;
    scene.finish().await;
}

/// Seconds the writer changes the source (`SYNCLINE_CDC_SECONDS`, 10 by default; 60 for the
/// full run).
fn writer_seconds() -> u64 {
    std::env::var("SYNCLINE_CDC_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

/// Changes about 1,000 rows a second of the source's `users` (`rows` of them at the start) for
/// `seconds`: inserts, updates and deletes, 100 every 100 ms.
async fn write_changes(source: &tokio_postgres::Client, rows: i64, seconds: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for step in 0..(seconds as i64 * 10) {
        tick.tick().await;
        let (new, updated, deleted) = (rows + 1 + step * 40, 1 + (step * 40) % rows, rows - step * 20);
        source
            .batch_execute(&format!(
                "insert into users select g, 'new' || g || '@example.com', 'N', 'N', null, 1, 1.00, true, now(), now(), null, 'US'
                   from generate_series({new}, {new} + 39) g;
                 update users set email = 'changed{step}.' || id || '@example.com', updated_at = now()
                   where id between {updated} and {updated} + 39;
                 delete from users where id between {deleted} - 19 and {deleted};"
            ))
            .await
            .expect("change the source");
    }
}

/// Waits until the destination equals the source (checksum and row count); returns how long.
async fn converge(scene: &Scene, destination: &TestDb, limit: Duration) -> Duration {
    let (source, target) = (scene.data.client().await, destination.client().await);
    let started = Instant::now();
    let count = "select count(*) from users";
    loop {
        let same = checksum(&target).await == checksum(&source).await
            && target.query_one(count, &[]).await.expect("count").get::<_, i64>(0)
                == source.query_one(count, &[]).await.expect("count").get::<_, i64>(0);
        if same {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "the destination did not converge to the source within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for sync `sync`'s capture to run.
async fn capture_running(scene: &Scene, sync: Uuid) {
    let state = scene.install.db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sql = "select count(*) from executions where kind = 'bulk_cdc' and subject_id = $1 and status = 'running'";
        if state.query_one(sql, &[&sync]).await.expect("capture").get::<_, i64>(0) == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "the capture did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The messages of the ingest console log of the scene's source connection, of sync `sync`.
async fn ingest_log(scene: &Scene, sync: Uuid) -> Vec<String> {
    let path = format!("/api/connections/{}/ingest/consolelog?sync_id={sync}", scene.conn);
    let data = scene.api.ok("GET", &path, None).await;
    let entries = data["entries"].as_array().expect("entries");
    entries.iter().map(|e| e["message"].as_str().expect("a message").to_owned()).collect()
}

/// Waits until sync `sync` has no capture in progress.
async fn capture_ended(scene: &Scene, sync: Uuid) {
    let state = scene.install.db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sql = "select count(*) from executions where kind = 'bulk_cdc' and subject_id = $1
                   and status in ('created', 'queued', 'running', 'canceling')";
        if state.query_one(sql, &[&sync]).await.expect("capture").get::<_, i64>(0) == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the capture did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_deactivated_sync_pauses_its_capture_and_resumes_from_its_position() {
    let (scene, destination, conn) = scene("bulk-cdc-pause", 5_000, 5_000).await;
    capture_changes(&scene).await;
    let schedule = json!({"default_schedule": {"id": "default", "frequency": "manual"}});
    let sync = bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({}))], schedule).await;
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    capture_running(&scene, sync).await;
    let activate = format!("/api/bulk/syncs/{sync}/activate");
    scene.api.ok("POST", &activate, Some(json!({"active": false}))).await;
    capture_ended(&scene, sync).await;
    let (source, target) = (scene.data.client().await, destination.client().await);
    source
        .batch_execute(
            "update users set email = 'paused.' || id || '@example.com' where id <= 100;
             delete from users where id between 101 and 150",
        )
        .await
        .expect("change the source");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_ne!(checksum(&target).await, checksum(&source).await, "nothing is applied while the sync is inactive");
    assert_eq!(slots(&scene).await.len(), 1, "the paused sync keeps its slot");
    let status = scene.api.ok("GET", &format!("/api/bulk/syncs/{sync}/status"), None).await;
    let ingestion = &status["ingestion_status"];
    assert_eq!((&ingestion["is_running"], &ingestion["status"]), (&json!(false), &json!("ok")), "{ingestion}");
    assert!(ingestion["status_message"].as_str().is_some_and(|m| m.contains("paused")), "{ingestion}");
    let log = ingest_log(&scene, sync).await;
    assert!(log.iter().any(|l| l.starts_with("capture started at LSN ")), "{log:?}");
    assert!(log.iter().any(|l| l.starts_with("capture paused at LSN ")), "{log:?}");

    scene.api.ok("POST", &activate, Some(json!({"active": true}))).await;
    capture_running(&scene, sync).await;
    converge(&scene, &destination, Duration::from_secs(30)).await;
    let log = ingest_log(&scene, sync).await;
    assert!(log.last().is_some_and(|l| l.starts_with("capture resumed from LSN ")), "{log:?}");

    let (_, other) = organization(&scene.install, &scene.process, "bulk-cdc-other").await;
    let (code, body) = other.send("GET", &format!("/api/connections/{}/ingest/consolelog", scene.conn), None).await;
    assert_error(code, &body, 404, "connection");
    destination.drop_now().await;
    scene.finish().await;
}

#[tokio::test]
async fn changes_stream_after_the_load_and_converge_within_5_seconds() {
    let rows = 20_000;
    let (scene, destination, conn) = scene("bulk-cdc-stream", 5_000, rows).await;
    capture_changes(&scene).await;
    let sync = bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({}))], json!({})).await;
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    capture_running(&scene, sync).await;
    let seconds = writer_seconds();
    write_changes(&scene.data.client().await, rows, seconds).await;
    let took = converge(&scene, &destination, Duration::from_secs(60)).await;
    println!("change capture: converged {took:?} after a {seconds} s writer stopped");
    assert!(took <= Duration::from_secs(5), "converged in {took:?}");
    let state = scene.install.db.client().await;
    let sql =
        "select position is not null and position_time is not null, applied from capture_slots where bulk_sync_id = $1";
    let row = state.query_one(sql, &[&sync]).await.expect("progress");
    let (positioned, applied): (bool, i64) = (row.get(0), row.get(1));
    assert!(positioned && applied >= 1_000, "the capture records its progress: {applied} changes");
    let status = scene.api.ok("GET", &format!("/api/bulk/syncs/{sync}/status"), None).await;
    let ingestion = &status["ingestion_status"];
    assert_eq!(
        (&ingestion["enabled"], &ingestion["is_running"], &ingestion["status"]),
        (&json!(true), &json!(true), &json!("ok")),
        "{ingestion}"
    );
    let lsn = |v: &serde_json::Value| v.as_str().is_some_and(|s| s.contains('/'));
    assert!(lsn(&ingestion["position"]) && lsn(&ingestion["highwater_mark"]), "LSNs as text: {ingestion}");
    assert!(ingestion["position_time"].is_string() && ingestion["updated_at"].is_string(), "{ingestion}");
    destination.drop_now().await;
    scene.finish().await;
}

#[tokio::test]
async fn a_killed_capture_worker_loses_and_duplicates_nothing() {
    let rows = 20_000;
    let (scene, destination, conn) = scene_with_roles("bulk-cdc-kill", 5_000, rows, "api,scheduler").await;
    let mut first = scene.install.spawn_as("worker", "w1").await;
    capture_changes(&scene).await;
    let sync = bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({}))], json!({})).await;
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    capture_running(&scene, sync).await;
    let seconds = writer_seconds();
    let source = scene.data.client().await;
    let writer = tokio::spawn(async move { write_changes(&source, rows, seconds).await });
    tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
    first.kill();
    let second = scene.install.spawn_as("worker", "w2").await;
    writer.await.expect("the writer");
    let took = converge(&scene, &destination, Duration::from_secs(120)).await;
    println!("change capture after a kill -9: converged {took:?} after the writer stopped");
    let state = scene.install.db.client().await;
    let sql = "select worker from executions where kind = 'bulk_cdc' and subject_id = $1 and status = 'running'";
    let worker: Option<String> = state.query_one(sql, &[&sync]).await.expect("the capture").get(0);
    assert!(worker.is_some_and(|w| w.contains("-w2-")), "the second worker took the capture over");
    drop(second);
    destination.drop_now().await;
    scene.finish().await;
}

#[tokio::test]
async fn a_slot_holding_too_much_wal_stops_the_capture_and_is_dropped() {
    let (mut scene, destination, conn) = scene_with_roles("bulk-cdc-wal", 5_000, 2_000, "api,scheduler").await;
    scene.install.extra_env.push(("CDC_MAX_RETAINED_WAL_MB".into(), "1".into()));
    let worker = scene.install.spawn_as("worker", "w1").await;
    capture_changes(&scene).await;
    let sync = bulk_sync(&scene, &conn, "replicate", &[("public.users", json!({}))], json!({})).await;
    let (status, error, _) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?}");
    capture_running(&scene, sync).await;
    // One transaction of a few MB of WAL.
    let source = scene.data.client().await;
    source
        .batch_execute(
            "insert into users select g, 'bulk' || g || '@example.com', 'N', 'N', null, 1, 1.00, true, now(), now(), null, 'US'
               from generate_series(100001, 130000) g",
        )
        .await
        .expect("a large change");
    let state = scene.install.db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let error = loop {
        let sql = "select status, errors ->> 0 from executions where kind = 'bulk_cdc' and subject_id = $1";
        let row = state.query_one(sql, &[&sync]).await.expect("the capture");
        if row.get::<_, String>(0) == "failed" {
            break row.get::<_, Option<String>>(1).unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "the capture did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("held more than 1 MB of WAL") && error.contains("slot dropped"), "{error}");
    assert!(slots(&scene).await.is_empty(), "the slot is dropped");
    let status = scene.api.ok("GET", &format!("/api/bulk/syncs/{sync}/status"), None).await;
    let ingestion = &status["ingestion_status"];
    assert_eq!((&ingestion["status"], &ingestion["is_running"]), (&json!("error"), &json!(false)), "{ingestion}");
    assert!(ingestion["status_message"].as_str().is_some_and(|m| m.contains("held more than 1 MB")), "{ingestion}");
    let log = ingest_log(&scene, sync).await;
    assert!(log.iter().any(|l| l.starts_with("capture failed: the replication slot held more than 1 MB")), "{log:?}");
    let (status, error, _) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "the next run reloads: {error:?}");
    assert_eq!(checksum(&destination.client().await).await, checksum(&source).await, "the reload caught up");
    assert_eq!(slots(&scene).await.len(), 1, "the next run prepares a new slot");
    drop(worker);
    destination.drop_now().await;
    scene.finish().await;
}

/// `docs` rows: id, n, and the body's md5 and length.
async fn docs(client: &tokio_postgres::Client) -> Vec<(i32, i32, String, i32)> {
    let rows = client.query("select id, n, md5(body), length(body) from docs order by id", &[]).await.expect("docs");
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
}

#[tokio::test]
async fn an_update_leaving_a_large_value_out_keeps_it_at_the_destination() {
    let (scene, destination, conn) = scene("bulk-cdc-toast", 5_000, 100).await;
    let source = scene.data.client().await;
    // About 13 KB of random hex per row: stored out of line (TOAST), and an update of another
    // column does not send it.
    source
        .batch_execute(
            "create table docs (id integer primary key, body text not null, n integer not null);
             insert into docs select g, (select string_agg(md5(random()::text || i), '') from generate_series(1, 400) i where g > 0), 0
               from generate_series(1, 3) g",
        )
        .await
        .expect("docs");
    capture_changes(&scene).await;
    let sync = bulk_sync(&scene, &conn, "replicate", &[("public.docs", json!({}))], json!({})).await;
    let (status, error, schemas) = run(&scene, sync, json!({})).await;
    assert_eq!(status, "completed", "{error:?} {schemas:?}");
    capture_running(&scene, sync).await;
    source
        .batch_execute("update docs set n = 1 where id = 1; update docs set n = 2, body = 'small' where id = 3")
        .await
        .expect("update the source");
    let target = destination.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while docs(&target).await != docs(&source).await {
        assert!(Instant::now() < deadline, "the destination did not converge: {:?}", docs(&target).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = docs(&target).await;
    assert!(kept[0].1 == 1 && kept[0].3 > 8_000, "the large value is kept, the sent column changed: {kept:?}");

    // A row the destination lacks cannot take an update without its large value.
    target.execute("delete from docs where id = 2", &[]).await.expect("lose a row");
    source.execute("update docs set n = 5 where id = 2", &[]).await.expect("update it at the source");
    let state = scene.install.db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let error = loop {
        let sql = "select status, errors ->> 0 from executions where kind = 'bulk_cdc' and subject_id = $1
                   order by created_at desc limit 1";
        let row = state.query_one(sql, &[&sync]).await.expect("the capture");
        if row.get::<_, String>(0) == "failed" {
            break row.get::<_, Option<String>>(1).unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "the capture did not fail");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("public.docs") && error.contains("REPLICA IDENTITY FULL"), "{error}");
    destination.drop_now().await;
    scene.finish().await;
}
