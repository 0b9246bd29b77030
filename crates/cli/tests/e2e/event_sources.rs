//! Event sources: names, write keys shown once and kept only as digests, key rotation, roles
//! and policies.

use serde_json::{Value as Json, json};

use crate::support::{Scene, assert_error, member};

fn id(value: &Json) -> String {
    value["id"].as_str().expect("id").to_owned()
}

/// How many event sources the state database holds for write key `key`, found by its digest.
async fn stored_for(scene: &Scene, key: &str) -> i64 {
    let state = scene.install.db.client().await;
    let sql = "select count(*) from event_sources where write_key_hash = sha256(convert_to($1, 'UTF8'))";
    state.query_one(sql, &[&key]).await.expect("count").get(0)
}

#[tokio::test]
async fn write_keys_are_shown_once_kept_as_digests_and_replaced_on_request() {
    let scene = Scene::new("api", "events", "select 1").await;
    let admin = &scene.api;
    let created = admin.ok("POST", "/api/event_sources", Some(json!({"name": "server"}))).await;
    let source = id(&created);
    let key = created["write_key"].as_str().expect("the write key, shown on creation").to_owned();
    assert!(key.starts_with("wk_") && key.len() == 67, "256 random bits: {key}");
    assert_eq!(created["write_key_hint"], key[key.len() - 4..], "{created}");
    assert_eq!(stored_for(&scene, &key).await, 1, "the key's digest is stored");
    let state = scene.install.db.client().await;
    let leaked: i64 = state
        .query_one("select count(*) from event_sources where position($1 in write_key_hash::text || name) > 0", &[&key])
        .await
        .expect("search")
        .get(0);
    assert_eq!(leaked, 0, "the key itself is stored nowhere");

    let shown = admin.ok("GET", &format!("/api/event_sources/{source}"), None).await;
    assert!(shown.get("write_key").is_none(), "never shown again: {shown}");
    let listed = admin.ok("GET", "/api/event_sources", None).await;
    assert_eq!(listed.as_array().map(|l| l.iter().map(id).collect()), Some(vec![source.clone()]));
    assert!(listed[0].get("write_key").is_none(), "{listed}");

    let renamed = admin.ok("PUT", &format!("/api/event_sources/{source}"), Some(json!({"name": "backend"}))).await;
    assert_eq!((renamed["name"].as_str(), &renamed["write_key_hint"]), (Some("backend"), &created["write_key_hint"]));

    let rotated = admin.ok("POST", &format!("/api/event_sources/{source}/write_key"), None).await;
    let new_key = rotated["write_key"].as_str().expect("the new key").to_owned();
    assert_ne!(new_key, key);
    assert_eq!((stored_for(&scene, &key).await, stored_for(&scene, &new_key).await), (0, 1), "the old key is gone");

    let (status, body) = admin.send("POST", "/api/event_sources", Some(json!({"name": "BACKEND"}))).await;
    assert_error(status, &body, 409, "name");
    let (status, body) = admin.send("POST", "/api/event_sources", Some(json!({"name": "x", "routes": []}))).await;
    assert_error(status, &body, 422, "routes");
    let (status, body) = admin.send("POST", "/api/event_sources", Some(json!({}))).await;
    assert_error(status, &body, 422, "name");
    for (rules, part) in [
        (json!([{"events": ["user.first_named"], "channel": "#c"}]), "SLACK_TOKEN"),
        (json!([{"events": ["user.first_named"], "token": "xoxb-1"}]), "SLACK_CHANNEL"),
        (
            json!([{"events": ["user.renamed"], "webhook_url": "https://hooks.slack.com/services/T/B/X"}]),
            "user.renamed",
        ),
        (json!([{"events": [], "webhook_url": "ftp://hooks"}]), "webhook_url"),
        (json!([{"events": [], "webhook_url": "https://h", "token": "t"}]), "not both"),
        (json!([{"events": [], "sms": "+1"}]), "sms"),
    ] {
        let body = json!({"name": "notifying", "notifications": rules});
        let (status, answer) = admin.send("POST", "/api/event_sources", Some(body)).await;
        assert_error(status, &answer, 422, part);
        assert_eq!(answer["metadata"]["field"], "notifications", "{answer}");
    }

    admin.ok("DELETE", &format!("/api/event_sources/{source}"), None).await;
    let (status, body) = admin.send("GET", &format!("/api/event_sources/{source}"), None).await;
    assert_error(status, &body, 404, "event_source");
    assert_eq!(stored_for(&scene, &new_key).await, 0);
    scene.finish().await;
}

#[tokio::test]
async fn members_read_event_sources_and_need_grants_to_change_them() {
    let scene = Scene::new("api", "eventroles", "select 1").await;
    let (install, process, admin) = (&scene.install, &scene.process, &scene.api);
    let (member_id, member) = member(install, process, &scene.org_id, "member@eventroles.test").await;
    let source = id(&admin.ok("POST", "/api/event_sources", Some(json!({"name": "client"}))).await);
    member.ok("GET", &format!("/api/event_sources/{source}"), None).await;
    for (method, path, body) in [
        ("POST", "/api/event_sources".to_owned(), Some(json!({"name": "mine"}))),
        ("PUT", format!("/api/event_sources/{source}"), Some(json!({"name": "renamed"}))),
        ("POST", format!("/api/event_sources/{source}/write_key"), None),
        ("DELETE", format!("/api/event_sources/{source}"), None),
    ] {
        let (status, answer) = member.send(method, &path, body).await;
        assert_error(status, &answer, 403, "");
        assert_eq!(answer["key"], "forbidden", "{method} {path}");
    }

    // A type-wide grant lets the Member create; a policy on one source lets them rotate its key.
    let keepers = id(&admin.ok("POST", "/api/permissions/roles", Some(json!({"name": "Keepers"}))).await);
    let grants =
        json!([{"action": "event_source:create", "role_ids": [keepers]}, {"action": "update", "role_ids": [keepers]}]);
    let policy = id(&admin
        .ok("POST", "/api/permissions/policies", Some(json!({"name": "Keys", "policy_actions": grants})))
        .await);
    let roles = admin.ok("GET", "/api/permissions/roles", None).await;
    let member_role = roles.as_array().expect("roles").iter().find(|r| r["name"] == "Member").map(id).expect("Member");
    admin
        .ok("PUT", &format!("/api/organization/users/{member_id}"), Some(json!({"role_ids": [member_role, keepers]})))
        .await;
    member.ok("POST", "/api/event_sources", Some(json!({"name": "mine"}))).await;
    let (status, _) = member.send("POST", &format!("/api/event_sources/{source}/write_key"), None).await;
    assert_eq!(status, 403, "the policy is not on the source yet");
    admin
        .ok("PUT", &format!("/api/event_sources/{source}"), Some(json!({"name": "client", "policies": [policy]})))
        .await;
    member.ok("POST", &format!("/api/event_sources/{source}/write_key"), None).await;

    // Deleting the policy takes it off the source.
    admin.ok("DELETE", &format!("/api/permissions/policies/{policy}"), None).await;
    let shown = admin.ok("GET", &format!("/api/event_sources/{source}"), None).await;
    assert_eq!(shown["policies"], json!([]), "{shown}");
    scene.finish().await;
}
