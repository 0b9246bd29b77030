//! Nothing lost: a worker killed with SIGKILL mid-execution, or stopped with SIGTERM, leaves
//! an execution that another worker finishes, with the destination equal to the model.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::{
    Api, Install, TestDb, USERS_FIELDS, assert_none_running, checksum, model_and_sync, organization, pg_connection,
    users_table, wait_for_end,
};

fn rows() -> i64 {
    std::env::var("SYNCLINE_RECOVERY_ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(1_000_000)
}

/// Waits until the execution has written some records but is not done.
async fn wait_until_writing(api: &Api, sync_id: &str, execution_id: &str) -> Json {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let e = api.ok("GET", &format!("/api/syncs/{sync_id}/executions/{execution_id}"), None).await;
        if e["status"] == "running" && e["progress"]["records_written"].as_i64().unwrap_or(0) > 0 {
            return e;
        }
        assert!(e["status"] != "completed", "the execution finished before the worker could be stopped: {e}");
        assert!(Instant::now() < deadline, "the execution never started writing: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Scenario {
    install: Install,
    api_process: crate::support::Process,
    api: Api,
    sync_id: String,
    source: (TestDb, tokio_postgres::Client),
    target: (TestDb, tokio_postgres::Client),
}

async fn scenario(name: &str, rows: i64) -> Scenario {
    let install = Install::new().await;
    let api_process = install.spawn("api,scheduler").await;
    let (_, api) = organization(&install, &api_process, name).await;
    let (source_db, target_db) = (TestDb::new().await, TestDb::new().await);
    let (source, target) = (source_db.client().await, target_db.client().await);
    users_table(&source, &target, rows).await;
    let src = pg_connection(&api, "src", &source_db.name).await;
    let dst = pg_connection(&api, "dst", &target_db.name).await;
    let (_, sync_id) =
        model_and_sync(&api, &src, &dst, "select * from users", "public.users", USERS_FIELDS, "updateOrCreate").await;
    Scenario { install, api_process, api, sync_id, source: (source_db, source), target: (target_db, target) }
}

impl Scenario {
    async fn assert_recovered(self, execution_id: &str) {
        let done = wait_for_end(&self.api, &self.sync_id, execution_id, Duration::from_secs(600)).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert!(done["attempt"].as_i64().unwrap_or(0) >= 2, "a second worker ran it: {done}");
        assert_eq!(checksum(&self.target.1).await, checksum(&self.source.1).await, "destination equals the model");
        assert_none_running(&self.install).await;
        drop(self.api_process);
        self.source.0.drop_now().await;
        self.target.0.drop_now().await;
        self.install.finish().await;
    }
}

#[tokio::test]
async fn a_killed_worker_loses_nothing() {
    let s = scenario("kill", rows()).await;
    let mut first = s.install.spawn("worker").await;
    let execution =
        s.api.ok("POST", &format!("/api/syncs/{}/executions", s.sync_id), Some(serde_json::json!({}))).await;
    let execution_id = execution["id"].as_str().expect("id").to_owned();
    let progress = wait_until_writing(&s.api, &s.sync_id, &execution_id).await;
    first.kill();
    let _second = s.install.spawn("worker").await;
    eprintln!("killed the worker after {} records written", progress["progress"]["records_written"]);
    s.assert_recovered(&execution_id).await;
}

#[tokio::test]
async fn sigterm_hands_work_back_within_30_seconds() {
    let s = scenario("term", rows() / 2).await;
    let mut first = s.install.spawn("worker").await;
    let execution =
        s.api.ok("POST", &format!("/api/syncs/{}/executions", s.sync_id), Some(serde_json::json!({}))).await;
    let execution_id = execution["id"].as_str().expect("id").to_owned();
    wait_until_writing(&s.api, &s.sync_id, &execution_id).await;
    let took = first.terminate();
    assert!(took < Duration::from_secs(30), "SIGTERM drained in {took:?}");
    assert!(first.log_text().contains("handed back"), "the worker handed the execution back:\n{}", first.log_text());
    let _second = s.install.spawn("worker").await;
    s.assert_recovered(&execution_id).await;
}

#[tokio::test]
async fn a_running_execution_can_be_canceled() {
    let s = scenario("cancel", (rows() / 4).max(200_000)).await;
    let _worker = s.install.spawn("worker").await;
    let execution =
        s.api.ok("POST", &format!("/api/syncs/{}/executions", s.sync_id), Some(serde_json::json!({}))).await;
    let execution_id = execution["id"].as_str().expect("id").to_owned();
    wait_until_writing(&s.api, &s.sync_id, &execution_id).await;
    let answer = s.api.ok("POST", &format!("/api/syncs/{}/executions/{execution_id}/cancel", s.sync_id), None).await;
    assert_eq!(answer["message"], "cancel requested");
    let done = wait_for_end(&s.api, &s.sync_id, &execution_id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "canceled", "{done}");
    // Nothing was committed: the next run starts from scratch and completes the copy.
    let next = crate::support::run_sync(&s.api, &s.sync_id, Duration::from_secs(300)).await;
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(checksum(&s.target.1).await, checksum(&s.source.1).await);
    drop(s.api_process);
    s.source.0.drop_now().await;
    s.target.0.drop_now().await;
    s.install.finish().await;
}
