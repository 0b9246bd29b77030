//! Deadlines and cancels: a customer system that accepts connections and never answers costs a
//! bounded wait, a cancel stops the remote work in flight and commits nothing after it, and one
//! organization's stuck syncs never hold every worker slot.

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::{
    Api, Install, Scene, TestDb, model_and_sync, organization, pg_config, pg_connection, tarpit, users_sync,
    wait_for_end,
};

/// Points connection `id` at `port` on this host (giving the password again, as a new port
/// needs), without testing it.
async fn point_at(api: &Api, id: &str, database: &str, port: u16) {
    let configuration = pg_config("127.0.0.1", port, database, "db");
    api.ok(
        "PUT",
        &format!("/api/connections/{id}"),
        Some(json!({"name": "db", "configuration": configuration, "validate": false})),
    )
    .await;
}

/// Sends a request and returns its status, body and how long it took.
async fn timed(api: &Api, method: &str, path: &str, body: Option<Json>) -> (u16, Json, Duration) {
    let started = Instant::now();
    let (status, body) = api.send(method, path, body).await;
    (status, body, started.elapsed())
}

#[tokio::test]
async fn a_silent_server_costs_one_deadline() {
    let mut install = Install::new().await;
    install.extra_env = vec![
        ("CONNECTION_CONNECT_TIMEOUT_SECONDS".into(), "2".into()),
        ("CONNECTION_QUERY_TIMEOUT_SECONDS".into(), "2".into()),
    ];
    let scene =
        Scene::with(install, "api,worker", "deadline", "create table users (id bigint primary key, email text)").await;
    let api = scene.api.clone();
    let (model_id, sync_id) = users_sync(&api, &scene.conn, &scene.conn).await;
    let (port, _held) = tarpit().await;
    point_at(&api, &scene.conn, &scene.data.name, port).await;

    let (s, b, took) = timed(&api, "POST", "/api/connections/test", Some(json!({"connection_id": scene.conn}))).await;
    assert_eq!(s, 422, "{b}");
    assert!(b["message"].as_str().unwrap_or_default().contains("did not answer within 2 s"), "{b}");
    assert!(took < Duration::from_secs(8), "the test answered after {took:?}");

    let (s, b, took) = timed(&api, "GET", &format!("/api/models/{model_id}/sample"), None).await;
    assert_eq!(s, 422, "{b}");
    assert!(took < Duration::from_secs(8), "the sample answered after {took:?}");

    let started = Instant::now();
    let execution = api.ok("POST", &format!("/api/syncs/{sync_id}/executions"), Some(json!({}))).await;
    let done = wait_for_end(&api, &sync_id, execution["id"].as_str().expect("id"), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["errors"].to_string().contains("did not answer within 2 s"), "{done}");
    // A timeout is transient: the worker tries 4 times (each try waits one connect deadline for
    // the estimate and one for the read), backing off 1 + 2 + 4 s between tries.
    assert_eq!((done["retries"].as_i64(), done["error_class"].as_str()), (Some(3), Some("transient")), "{done}");
    assert!(started.elapsed() < Duration::from_secs(40), "the sync failed after {:?}", started.elapsed());
    scene.finish().await;
}

/// An installation whose connections wait long to connect, so a sync on a silent server hangs
/// until it is canceled.
async fn patient_install() -> Install {
    let mut install = Install::new().await;
    install.extra_env = vec![("CONNECTION_CONNECT_TIMEOUT_SECONDS".into(), "300".into())];
    install
}

/// Waits until one of the executions runs.
async fn wait_for_running(api: &Api, syncs: &[String], executions: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (sync_id, execution_id) in syncs.iter().zip(executions) {
            let e = api.ok("GET", &format!("/api/syncs/{sync_id}/executions/{execution_id}"), None).await;
            if e["status"] == "running" {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no execution started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Cancels an execution and returns how long it took to end, with its final state.
async fn cancel(api: &Api, sync_id: &str, execution_id: &str) -> (Duration, Json) {
    let started = Instant::now();
    api.ok("POST", &format!("/api/syncs/{sync_id}/executions/{execution_id}/cancel"), None).await;
    let done = wait_for_end(api, sync_id, execution_id, Duration::from_secs(60)).await;
    (started.elapsed(), done)
}

#[tokio::test]
async fn stuck_syncs_cancel_and_never_starve_other_organizations() {
    let scene = Scene::with(
        patient_install().await,
        "api,worker",
        "stuck",
        "create table users (id bigint primary key, email text)",
    )
    .await;
    let (api, data) = (scene.api.clone(), scene.data.name.clone());
    let (port, _held) = tarpit().await;
    // Two syncs of one organization read from the silent server; the worker has two slots.
    let source = pg_connection(&api, "silent", &data).await;
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let (_, sync_id) = users_sync(&api, &source, &scene.conn).await;
        stuck.push(sync_id);
    }
    point_at(&api, &source, &data, port).await;
    let mut executions = Vec::new();
    for sync_id in &stuck {
        let e = api.ok("POST", &format!("/api/syncs/{sync_id}/executions"), Some(json!({}))).await;
        executions.push(e["id"].as_str().expect("id").to_owned());
    }
    wait_for_running(&api, &stuck, &executions).await;

    // Another organization's sync runs meanwhile.
    let (_, other) = organization(&scene.install, &scene.process, "other").await;
    let other_data = TestDb::new().await;
    other_data
        .client()
        .await
        .batch_execute("create table users (id bigint primary key, email text); insert into users values (1, 'a@b')")
        .await
        .expect("data");
    let conn = pg_connection(&other, "other", &other_data.name).await;
    let (_, sync_id) = users_sync(&other, &conn, &conn).await;
    let done = crate::support::run_sync(&other, &sync_id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");

    // Both stuck syncs end canceled within seconds, and the next start is accepted.
    for (sync_id, execution_id) in stuck.iter().zip(&executions) {
        let (took, done) = cancel(&api, sync_id, execution_id).await;
        assert_eq!(done["status"], "canceled", "{done}");
        assert!(took < Duration::from_secs(10), "canceled after {took:?}");
    }
    api.ok("POST", &format!("/api/syncs/{}/executions", stuck[0]), Some(json!({}))).await;
    other_data.drop_now().await;
    scene.finish().await;
}

#[tokio::test]
async fn a_cancel_stops_a_slow_write_and_commits_nothing_after_it() {
    let scene = Scene::new("api,worker", "slow", "create table users (id bigint primary key, email text)").await;
    let api = scene.api.clone();
    let data = scene.data.client().await;
    data.batch_execute("create table people (id bigint primary key, email text); insert into people select g, 'p' || g || '@x' from generate_series(1, 1000) g")
        .await
        .expect("source rows");
    let (_, sync_id) = model_and_sync(
        &api,
        &scene.conn,
        &scene.conn,
        "select id, email from people",
        "public.users",
        &["email"],
        "updateOrCreate",
    )
    .await;
    // The destination table is locked against writes (not reads): the batch write blocks
    // inside the destination.
    let mut locker = scene.data.client().await;
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute("lock table users in exclusive mode").await.expect("lock");
    let execution = api.ok("POST", &format!("/api/syncs/{sync_id}/executions"), Some(json!({}))).await;
    let execution_id = execution["id"].as_str().expect("id").to_owned();
    let waiting =
        "select count(*) from pg_stat_activity where application_name = 'syncline' and wait_event_type = 'Lock'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while data.query_one(waiting, &[]).await.expect("activity").get::<_, i64>(0) == 0 {
        assert!(Instant::now() < deadline, "the write never reached the lock");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (took, done) = cancel(&api, &sync_id, &execution_id).await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert!(took < Duration::from_secs(10), "canceled after {took:?}");
    // The statement waiting on the lock was canceled on the server, not left behind it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while data.query_one(waiting, &[]).await.expect("activity").get::<_, i64>(0) > 0 {
        assert!(Instant::now() < deadline, "the destination still runs the canceled write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lock.rollback().await.expect("unlock");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written: i64 = data.query_one("select count(*) from users", &[]).await.expect("count").get(0);
    assert_eq!(written, 0, "nothing was committed after the cancel");
    scene.finish().await;
}

#[tokio::test]
async fn model_queries_only_read_and_stop_in_time() {
    let mut install = Install::new().await;
    install.extra_env = vec![("CONNECTION_QUERY_TIMEOUT_SECONDS".into(), "2".into())];
    let scene = Scene::with(install, "api", "readonly", "create table users (id bigint primary key, email text)").await;
    scene.data.client().await.batch_execute("insert into users values (1, 'a@x')").await.expect("row");
    let api = scene.api.clone();
    let model = |query: &str| json!({"name": "m", "connection_id": scene.conn, "configuration": {"query": query}});

    // A model whose function writes: described fine, refused when it runs.
    let add = "create function add_user() returns bigint language sql as 'insert into users values (2, ''b@x'') returning id'";
    scene.data.client().await.batch_execute(add).await.expect("function");
    let writes = api.ok("POST", "/api/models", Some(model("select add_user() as id"))).await;
    let (s, b) = api.send("GET", &format!("/api/models/{}/sample", writes["id"].as_str().expect("id")), None).await;
    assert!((400..500).contains(&s), "a model that writes is refused: {b}");
    assert!(b["message"].as_str().unwrap_or_default().contains("read-only transaction"), "{b}");

    let slow = api.ok("POST", "/api/models", Some(model("select id, pg_sleep(30)::text as nap from users"))).await;
    let (s, b, took) =
        timed(&api, "GET", &format!("/api/models/{}/sample", slow["id"].as_str().expect("id")), None).await;
    assert_eq!(s, 422, "{b}");
    assert!(took < Duration::from_secs(8), "the sample stopped after {took:?}");
    let count: i64 =
        scene.data.client().await.query_one("select count(*) from users", &[]).await.expect("count").get(0);
    assert_eq!(count, 1, "the model query wrote nothing");
    scene.finish().await;
}
