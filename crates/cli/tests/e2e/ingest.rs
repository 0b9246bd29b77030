//! Segment's tracking API (`/v1/*`): write keys in every form clients send them, gzip bodies,
//! normalized messages committed before the 200, errors clients neither retry forever nor
//! misread, and no acknowledged event lost to a `kill -9` right after the answer.

use std::{io::Write, process::Stdio, sync::LazyLock};

use base64::Engine;
use futures::StreamExt;
use serde_json::{Value as Json, json};

use crate::support::Scene;

/// A source of the scene's organization and its write key.
pub async fn source(scene: &Scene, name: &str) -> (String, String) {
    let created = scene.api.ok("POST", "/api/event_sources", Some(json!({"name": name}))).await;
    (created["id"].as_str().expect("id").to_owned(), created["write_key"].as_str().expect("key").to_owned())
}

/// One client for every request, as a producer keeps one.
static HTTP: LazyLock<reqwest::Client> = LazyLock::new(reqwest::Client::new);

/// How a request carries its write key.
pub enum Key<'a> {
    Basic(&'a str),
    Body(&'a str),
    Header(&'a str),
    None,
}

/// Posts `body` to `/v1/{route}`, gzipped when asked; returns the status and the JSON answer.
pub async fn post(scene: &Scene, route: &str, key: Key<'_>, mut body: Json, gzip: bool) -> (u16, Json) {
    let mut request = HTTP.post(format!("{}/v1/{route}", scene.process.base()));
    match key {
        Key::Basic(key) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
            request = request.header("Authorization", format!("Basic {encoded}"));
        }
        Key::Body(key) => body["writeKey"] = json!(key),
        Key::Header(key) => request = request.header("X-Api-Key", key),
        Key::None => {}
    }
    let bytes = serde_json::to_vec(&body).expect("json");
    let bytes = match gzip {
        true => {
            request = request.header("Content-Encoding", "gzip");
            let mut child = std::process::Command::new("gzip")
                .arg("-c")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("gzip");
            child.stdin.take().expect("stdin").write_all(&bytes).expect("write");
            child.wait_with_output().expect("gzip output").stdout
        }
        false => bytes,
    };
    let response = request.header("Content-Type", "application/json").body(bytes).send().await.expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

/// Every stored event: source, messageId and message, in the order they were committed.
async fn stored(scene: &Scene) -> Vec<(String, String, Json)> {
    let state = scene.install.db.client().await;
    let partitions = state.query("select id from event_partitions order by id", &[]).await.expect("partitions");
    let mut events = Vec::new();
    for partition in partitions {
        let table = format!("events_{}", partition.get::<_, i64>(0));
        let sql = format!(
            "select source_id::text, message_id, convert_from(message, 'UTF8')::jsonb from {table} order by seq"
        );
        for row in state.query(&sql, &[]).await.expect("events") {
            events.push((row.get(0), row.get(1), row.get(2)));
        }
    }
    events
}

/// An error answer clients can read: the status, a `code` and a `message` naming `part`.
fn assert_refused((status, body): (u16, Json), expected: u16, part: &str) {
    assert_eq!(status, expected, "{body}");
    let (code, message) = (body["code"].as_str(), body["message"].as_str().unwrap_or_default());
    assert!(code.is_some() && message.contains(part), "{part:?} in {body}");
}

#[tokio::test]
async fn events_in_every_form_are_committed_normalized_before_the_answer() {
    let scene = Scene::new("api", "ingest", "select 1").await;
    let (server, key) = source(&scene, "server").await;
    let batch = json!({
        "batch": [
            {"type": "track", "event": "Order Completed", "userId": "u1", "anonymousId": null,
             "timestamp": "2026-11-22T05:48:04.542+00:00", "properties": {"revenue": 12.5}, "messageId": "m-1"},
            {"type": "identify", "userId": "u1", "traits": {"name": "Ada"}, "messageId": "m-2"},
            {"type": "track", "userId": "u2", "messageId": "bad"},
        ],
        "sentAt": "2026-11-22T05:48:05.042486+00:00",
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
    });
    let (status, answer) = post(&scene, "batch", Key::Basic(&key), batch, false).await;
    assert_eq!((status, &answer), (200, &json!({"success": true})), "the bad message leaves the good ones");
    let events = stored(&scene).await;
    let ids: Vec<&str> = events.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids, ["m-1", "m-2"], "committed before the 200, the track without an event refused");
    assert!(events.iter().all(|(source, _, _)| *source == server));
    let track = &events[0].2;
    assert_eq!(track["context"]["library"]["name"], "analytics-python", "the batch's context: {track}");
    assert_eq!(track["originalTimestamp"], "2026-11-22T05:48:04.542Z");
    assert_eq!(track["sentAt"], "2026-11-22T05:48:05.042Z");
    assert!(track["receivedAt"].is_string() && track["timestamp"].is_string(), "{track}");
    assert!(track.get("anonymousId").is_none(), "{track}");

    let page = json!({"anonymousId": "a1", "properties": {"path": "/"}});
    assert_eq!(
        post(&scene, "track", Key::Body(&key), json!({"userId": "u3", "event": "Signed Up"}), false).await.0,
        200
    );
    assert_eq!(post(&scene, "page", Key::Header(&key), page, true).await.0, 200, "a gzip body");
    let events = stored(&scene).await;
    assert_eq!(events.len(), 4);
    assert_eq!((events[2].2["type"].as_str(), events[3].2["type"].as_str()), (Some("track"), Some("page")));
    assert!(events[2].2.get("writeKey").is_none(), "the key is not stored: {}", events[2].2);
    assert_eq!(events[3].2["properties"]["path"], "/");
    assert_eq!(events[2].1.len(), 36, "a messageId was assigned");

    let one = json!({"userId": "u", "event": "E"});
    assert_refused(post(&scene, "track", Key::None, one.clone(), false).await, 401, "write key");
    assert_refused(post(&scene, "track", Key::Basic("wk_wrong"), one.clone(), false).await, 401, "not valid");
    assert_refused(post(&scene, "track", Key::Basic(&key), json!({"userId": "u"}), false).await, 400, "event");
    let all_bad = json!({"batch": [{"type": "track", "event": "E"}]});
    assert_refused(post(&scene, "batch", Key::Basic(&key), all_bad, false).await, 400, "batch[0].userId");
    let big = json!({"userId": "u", "event": "E", "properties": {"blob": "x".repeat(40_000)}});
    assert_refused(post(&scene, "track", Key::Basic(&key), big, false).await, 400, "message");
    assert_refused(post(&scene, "batch", Key::Basic(&key), json!({"batch": []}), false).await, 400, "batch");
    assert_refused(post(&scene, "click", Key::Basic(&key), one.clone(), false).await, 404, "/v1/click");

    scene.api.ok("POST", &format!("/api/event_sources/{server}/write_key"), None).await;
    assert_refused(post(&scene, "track", Key::Basic(&key), one, false).await, 401, "not valid");
    assert_eq!(stored(&scene).await.len(), 4, "nothing refused was stored");
    scene.finish().await;
}

#[tokio::test]
async fn events_answered_200_survive_a_kill_right_after_the_answer() {
    let mut scene = Scene::new("api", "ingestkill", "select 1").await;
    let (_, key) = source(&scene, "server").await;
    // Concurrent requests (16 in flight) share commits; every one answered 200 is stored, once.
    let sends = (0..200).map(|request| {
        let batch: Vec<Json> = (0..10)
            .map(|i| json!({"type": "track", "event": "Load", "userId": format!("u{i}"), "messageId": format!("r{request}-{i}")}))
            .collect();
        post(&scene, "batch", Key::Basic(&key), json!({"batch": batch}), false)
    });
    let answers: Vec<(u16, Json)> = futures::stream::iter(sends).buffer_unordered(16).collect().await;
    scene.process.kill();
    let acknowledged = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(acknowledged, 200, "{:?}", answers.iter().find(|(status, _)| *status != 200));
    let events = stored(&scene).await;
    let mut ids: Vec<&str> = events.iter().map(|(_, id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((events.len(), ids.len()), (2_000, 2_000), "every acknowledged event, once");
    scene.finish().await;
}
