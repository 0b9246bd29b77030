//! Scheduled syncs start exactly once however many schedulers run.

use serde_json::json;
use syncline_core::{db, executions, queue};

use crate::support::{Scene, model_and_sync, redis_url};

#[tokio::test]
async fn a_due_sync_starts_once_across_replicas() {
    let scene = Scene::new("api", "sched", "create table users (id bigint primary key, email text)").await;
    let (api, conn, install) = (scene.api.clone(), scene.conn.clone(), &scene.install);
    let (model_id, sync_id) =
        model_and_sync(&api, &conn, &conn, "select id, email from users", "public.users", &["email"], "updateOrCreate")
            .await;
    let hourly = api
        .ok(
            "PUT",
            &format!("/api/syncs/{sync_id}"),
            Some(json!({
                "name": "hourly", "mode": "updateOrCreate", "active": true,
                "schedule": {"frequency": "hourly", "minute": "30"},
                "target": {"connection_id": conn, "object": "public.users"},
                "identity": {"source": {"model_id": model_id, "field": "id"}, "target": "id", "function": "Equality"},
                "fields": [{"source": {"model_id": model_id, "field": "email"}, "target": "email"}],
            })),
        )
        .await;
    assert_eq!(hourly["schedule"]["frequency"], "hourly");
    let status = api.ok("GET", &format!("/api/syncs/{sync_id}/status"), None).await;
    let next = status["next_execution_time"].as_str().expect("next run is scheduled");
    assert!(next.contains(":30:00"), "hourly at minute 30: {next}");

    let state = install.db.client().await;
    state
        .execute(
            "update schedules set next_run_at = now() - interval '1 second' where subject_id = $1::text::uuid",
            &[&sync_id],
        )
        .await
        .expect("make due");
    let replicas = (0..4).map(|_| {
        let (url, prefix) = (install.db.url.clone(), install.prefix.clone());
        tokio::spawn(async move {
            let pool = db::pool(&url, 2, std::time::Duration::from_secs(30)).expect("pool");
            let (queues, _) =
                queue::connect(&redis_url(), &prefix, std::time::Duration::from_secs(1), executions::KINDS)
                    .await
                    .expect("queue");
            syncline_api::scheduler::run_due(&pool, &queues).await.expect("run due")
        })
    });
    let mut started = 0;
    for replica in replicas {
        started += replica.await.expect("join");
    }
    assert_eq!(started, 1, "exactly one replica starts the due run");
    let executions: i64 = state
        .query_one(
            "select count(*) from executions where kind = 'model_sync' and subject_id = $1::text::uuid and trigger = 'schedule'",
            &[&sync_id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(executions, 1);
    let still_due: bool = state
        .query_one("select next_run_at <= now() from schedules where subject_id = $1::text::uuid", &[&sync_id])
        .await
        .expect("next")
        .get(0);
    assert!(!still_due, "the next run moved forward");
    scene.finish().await;
}

#[tokio::test]
async fn the_scheduler_role_runs_due_syncs() {
    let scene = Scene::new(
        "api,worker,scheduler",
        "cron",
        "create table src (id bigint primary key, email text); insert into src values (1, 'a'), (2, 'b');
                        create table dst (id bigint primary key, email text);",
    )
    .await;
    let (api, conn, install) = (scene.api.clone(), scene.conn.clone(), &scene.install);
    let (model_id, sync_id) =
        model_and_sync(&api, &conn, &conn, "select id, email from src", "public.dst", &["email"], "updateOrCreate")
            .await;
    api.ok(
        "PUT",
        &format!("/api/syncs/{sync_id}"),
        Some(json!({
            "name": "daily", "mode": "updateOrCreate", "active": true,
            "schedule": {"frequency": "daily", "hour": "3", "minute": "0"},
            "target": {"connection_id": conn, "object": "public.dst"},
            "identity": {"source": {"model_id": model_id, "field": "id"}, "target": "id", "function": "Equality"},
            "fields": [{"source": {"model_id": model_id, "field": "email"}, "target": "email"}],
        })),
    )
    .await;
    let state = install.db.client().await;
    state
        .execute("update schedules set next_run_at = now() where subject_id = $1::text::uuid", &[&sync_id])
        .await
        .expect("due");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let execution = loop {
        let list = api.send("GET", &format!("/api/syncs/{sync_id}/executions"), None).await.1;
        if let Some(e) = list["data"].as_array().and_then(|d| d.first()).filter(|e| e["status"] == "completed") {
            break e.clone();
        }
        assert!(std::time::Instant::now() < deadline, "the scheduled run did not complete: {list}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!((execution["trigger"].as_str(), execution["counts"]["insert"].as_i64()), (Some("schedule"), Some(2)));
    let status = api.ok("GET", &format!("/api/syncs/{sync_id}/status"), None).await;
    assert!(status["next_execution_time"].as_str().is_some_and(|t| t.contains("T03:00:00")), "{status}");
    scene.finish().await;
}
