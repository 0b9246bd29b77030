//! The edge of the API: bad input is refused with 422 naming the field before it reaches the
//! database, and bursts of requests never exhaust the state-database pool for good.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value as Json, json};

use crate::support::{Api, Install, Scene, assert_error, pg_config, server_address, tarpit, users_sync};

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let scene = Scene::new("api", "edge", "create table users (id bigint primary key, email text)").await;
    let api = scene.api.clone();
    let (model_id, sync_id) = users_sync(&api, &scene.conn, &scene.conn).await;
    let (_, port) = server_address();
    let configuration = pg_config("127.0.0.1\u{0}", port, &scene.data.name, "e");

    let (s, b) = api
        .send("POST", "/api/connections", Some(json!({"name": "a\u{0}b", "type": "postgresql", "configuration": {}})))
        .await;
    assert_error(s, &b, 422, "name must not contain NUL bytes or control characters");
    assert_eq!(b["metadata"]["field"], "name");
    let (s, b) = api
        .send(
            "POST",
            "/api/connections",
            Some(json!({"name": "x", "type": "postgresql", "configuration": configuration})),
        )
        .await;
    assert_error(s, &b, 422, "configuration.hostname must not contain NUL bytes");
    let (s, b) = api.send("POST", "/api/organization/users", Some(json!({"email": "a\u{0}@b.c"}))).await;
    assert_error(s, &b, 422, "email must not contain NUL bytes");
    let (s, b) =
        api.send("POST", "/api/connections", Some(json!({"name": "n".repeat(900_000), "type": "postgresql"}))).await;
    assert_error(s, &b, 422, "name must be at most");
    let (s, b) = api
        .send(
            "PUT",
            &format!("/api/models/{model_id}"),
            Some(json!({"name": "m".repeat(256), "connection_id": scene.conn,
        "configuration": {"query": "select id, email from users"}})),
        )
        .await;
    assert_error(s, &b, 422, "name must be at most 255 characters");

    for query in ["mode=%00", "page_token=%01x", &format!("mode={}", "m".repeat(5000))] {
        let (s, b) = api.send("GET", &format!("/api/syncs?{query}"), None).await;
        assert_error(s, &b, 422, "query parameter");
    }
    let negative = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("-5");
    for token in [negative.as_str(), "bm90LWEtbnVtYmVy", "%%%"] {
        let (s, b) = api.send("GET", &format!("/api/syncs?page_token={token}"), None).await;
        assert_error(s, &b, 422, "page_token is not valid");
        let (s, b) = api.send("GET", &format!("/api/syncs/{sync_id}/executions?page_token={token}"), None).await;
        assert_error(s, &b, 422, "page_token is not valid");
    }

    let sync = api.ok("GET", &format!("/api/syncs/{sync_id}"), None).await;
    let with = |key: &str, value: Json| {
        let mut body = sync.clone();
        body[key] = value;
        body
    };
    let (s, b) = api.send("PUT", &format!("/api/syncs/{sync_id}"), Some(with("active", json!("yes")))).await;
    assert_error(s, &b, 422, "active must be true or false");
    let february_30 = json!({"frequency": "custom", "minute": "0", "hour": "0", "day_of_month": "30", "month": "2"});
    let (s, b) = api.send("PUT", &format!("/api/syncs/{sync_id}"), Some(with("schedule", february_30))).await;
    assert_error(s, &b, 422, "can never run");
    let (s, b) = api.send("PUT", &format!("/api/syncs/{sync_id}"), Some(with("name", json!("two\nlines")))).await;
    assert_error(s, &b, 422, "name must be one line");
    scene.finish().await;
}

/// Sends `count` requests at once; answers each status and the longest wait.
async fn burst(requests: Vec<(Api, String, Json, String)>) -> (Vec<u16>, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(api, path, body, key)| tokio::spawn(async move { api.send_with_key("POST", &path, body, &key).await.0 }))
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("request"));
    }
    (statuses, started.elapsed())
}

async fn status_answers_quickly(api: &Api) {
    let started = Instant::now();
    let (status, _) = api.with_auth("").send("GET", "/status.txt", None).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "status took {:?}", started.elapsed());
}

#[tokio::test]
async fn bursts_never_exhaust_the_pool_for_good() {
    let mut install = Install::new().await;
    install.extra_env = vec![("API_POOL_SIZE".into(), "3".into())];
    let scene = Scene::with(install, "api", "burst", "create table users (id bigint primary key, email text)").await;
    let api = scene.api.clone();
    let (host, port) = server_address();
    let configuration = pg_config(&host, port, &scene.data.name, "b");

    // Concurrent creates, each under its own idempotency key, each testing its connection.
    let creates = (0..24)
        .map(|i| {
            let body = json!({"name": format!("c{i}"), "type": "postgresql", "configuration": configuration});
            (api.clone(), "/api/connections".to_owned(), body, format!("create-key-{i:04}"))
        })
        .collect();
    let (statuses, took) = burst(creates).await;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.iter().filter(|s| **s == 200).count() >= 20, "most creates succeed: {statuses:?}");
    assert!(took < Duration::from_secs(60), "the burst took {took:?}");
    status_answers_quickly(&api).await;

    // Concurrent starts of different syncs (no worker runs: they stay queued).
    let mut starts = Vec::new();
    for i in 0..40 {
        let (_, sync_id) = users_sync(&api, &scene.conn, &scene.conn).await;
        starts.push((api.clone(), format!("/api/syncs/{sync_id}/executions"), json!({}), format!("start-key-{i:04}")));
    }
    let (statuses, _) = burst(starts).await;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.iter().filter(|s| **s == 200).count() >= 30, "most starts succeed: {statuses:?}");
    status_answers_quickly(&api).await;

    let state = scene.install.db.client().await;
    let queued: i64 =
        state.query_one("select count(*) from executions where status = 'queued'", &[]).await.expect("count").get(0);
    assert_eq!(queued as usize, statuses.iter().filter(|s| **s == 200).count(), "every accepted start is queued once");
    scene.finish().await;
}

#[tokio::test]
async fn a_request_dropped_by_its_client_releases_what_it_held() {
    let mut install = Install::new().await;
    install.extra_env =
        vec![("API_POOL_SIZE".into(), "2".into()), ("CONNECTION_CONNECT_TIMEOUT_SECONDS".into(), "120".into())];
    let scene = Scene::with(install, "api", "dropped", "create table users (id bigint primary key)").await;
    let (port, _held) = tarpit().await;
    let body = json!({"name": "silent", "type": "postgresql", "configuration": pg_config("127.0.0.1", port, "x", "d")});
    // Clients that give up on a create waiting for a silent server, under idempotency keys.
    for i in 0..6 {
        let key = format!("dropped-key-{i:04}");
        let request = scene.api.send_with_key("POST", "/api/connections", body.clone(), &key);
        assert!(tokio::time::timeout(Duration::from_millis(500), request).await.is_err(), "the create waits");
    }
    status_answers_quickly(&scene.api).await;
    let state = scene.install.db.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let claimed: i64 = state.query_one("select count(*) from idempotency_keys", &[]).await.expect("count").get(0);
        if claimed == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{claimed} idempotency keys stay claimed by requests nobody waits for");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scene.finish().await;
}
