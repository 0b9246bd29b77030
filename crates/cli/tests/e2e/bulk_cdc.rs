//! Change data capture of bulk syncs: a `replicate` sync from a PostgreSQL connection with
//! `change_detection` on gets a replication slot before its initial load, dropped once the sync
//! is deleted.

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::{
    bulk_sync::{bulk_sync, run, scene},
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
