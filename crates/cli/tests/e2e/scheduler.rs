//! Scheduled syncs start exactly once however many schedulers run.

use serde_json::json;
use syncline_core::{db, executions, queue};

use crate::support::{Install, Scene, model_and_sync, redis_url, users_sync};

/// How many executions `replicas` schedulers, each with its own pool and queues, start at once.
async fn run_due_on_replicas(install: &Install, replicas: usize) -> usize {
    let replicas = (0..replicas).map(|_| {
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
    started
}

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
    let started = run_due_on_replicas(install, 4).await;
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

/// A sync that runs after two upstreams whose executions end together (their transactions
/// commit at once) is made due once, and of four schedulers exactly one starts it, once.
#[tokio::test]
async fn a_join_of_upstreams_ending_together_starts_once_across_replicas() {
    let scene = Scene::new("api", "joins", "create table users (id bigint primary key, email text)").await;
    let (api, conn, install) = (scene.api.clone(), scene.conn.clone(), &scene.install);
    let (_, first) = users_sync(&api, &conn, &conn).await;
    let (_, second) = users_sync(&api, &conn, &conn).await;
    let (model_id, joined) = users_sync(&api, &conn, &conn).await;
    api.ok(
        "PUT",
        &format!("/api/syncs/{joined}"),
        Some(json!({
            "name": "joined", "mode": "updateOrCreate", "active": true,
            "schedule": {"frequency": "runafter", "run_after": {"sync_ids": [first, second]}},
            "target": {"connection_id": conn, "object": "public.users"},
            "identity": {"source": {"model_id": model_id, "field": "id"}, "target": "id", "function": "Equality"},
            "fields": [{"source": {"model_id": model_id, "field": "email"}, "target": "email"}],
        })),
    )
    .await;
    let status = api.ok("GET", &format!("/api/syncs/{joined}/status"), None).await;
    assert!(status["next_execution_time"].is_null(), "a runafter sync has no time of its own: {status}");

    // Both upstream executions end in transactions that commit together.
    let mut ending = Vec::new();
    for upstream in [&first, &second] {
        let client = install.db.client().await;
        client
            .batch_execute(&format!(
                "begin;
                 insert into executions (id, kind, subject_id, organization_id, status, trigger)
                     values (gen_random_uuid(), 'model_sync', '{upstream}', '{}', 'running', 'manual');
                 update executions set status = 'completed', completed_at = now() where subject_id = '{upstream}';",
                scene.org_id
            ))
            .await
            .expect("end an upstream execution");
        ending.push(client);
    }
    let (a, b) = tokio::join!(ending[0].batch_execute("commit"), ending[1].batch_execute("commit"));
    a.and(b).expect("commit both ends");

    let started = run_due_on_replicas(install, 4).await;
    assert_eq!(started, 1, "exactly one replica starts the joined sync");
    let state = install.db.client().await;
    let runs: Vec<(String, String)> = state
        .query("select subject_id::text, trigger from executions where trigger = 'schedule'", &[])
        .await
        .expect("executions")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(runs, vec![(joined.clone(), "schedule".to_owned())], "only the joined sync was started");
    let due: i64 = state
        .query_one("select count(*) from schedules where subject_id = $1::text::uuid", &[&joined])
        .await
        .expect("schedules")
        .get(0);
    assert_eq!(due, 0, "the start consumed the sync's due run");
    scene.finish().await;
}
