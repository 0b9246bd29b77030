//! The bulk sync API (the engine that runs bulk syncs is tested in `bulk_sync.rs`): bodies
//! checked against their connections and the source's catalog, one execution at a time,
//! idempotent starts, roles, and the connections bulk syncs use.

use serde_json::{Value as Json, json};

use crate::support::{Install, Scene, assert_error, local_files_root, member, organization, pg_connection};

/// Two tables; `events` has no primary key.
const TABLES: &str = "create table users (id bigint primary key, email text, updated_at timestamptz);
                      create table events (id bigint, payload jsonb);";

/// A bulk sync body from `source` to `destination` (schemas omitted: every table).
fn body(source: &str, destination: &str) -> Json {
    json!({
        "name": "bulk", "source_connection_id": source, "destination_connection_id": destination,
        "destination_configuration": {"schema": "copy"}, "default_schedule": {"frequency": "manual"},
    })
}

fn id(value: &Json) -> String {
    value["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn bodies_are_checked_against_the_connections_and_the_catalog() {
    let mut install = Install::new().await;
    install.extra_env = vec![("REFERENCE_CONNECTORS".into(), "true".into())];
    let scene = Scene::with(install, "api", "bulkcheck", TABLES).await;
    let (api, conn) = (&scene.api, &scene.conn);
    let memory = json!({"name": "mem", "type": "memory", "configuration": {"dataset": "orders", "rows": 10}});
    let memory = id(&api.ok("POST", "/api/connections", Some(memory)).await);

    let (status, answer) = api.send("POST", "/api/bulk/syncs", Some(body(conn, &memory))).await;
    assert_error(status, &answer, 422, "a memory connection cannot be a bulk sync destination");
    assert_eq!(answer["metadata"]["field"], "destination_connection_id");
    let (status, answer) = api.send("GET", &format!("/api/connections/{memory}/bulksync/target"), None).await;
    assert_error(status, &answer, 422, "cannot be a bulk sync destination");
    let (status, answer) = api.send("GET", &format!("/api/connections/{memory}/bulksync/source"), None).await;
    assert_error(status, &answer, 422, "cannot be a bulk sync source (bulk syncs read postgresql, mysql)");

    let (other_org, other) = organization(&scene.install, &scene.process, "elsewhere").await;
    assert_ne!(other_org, scene.org_id);
    let foreign = pg_connection(&other, "foreign", &scene.data.name).await;
    let (status, answer) = api.send("POST", "/api/bulk/syncs", Some(body(&foreign, conn))).await;
    assert_error(status, &answer, 422, "names no connection of this organization");
    assert_eq!(answer["metadata"]["field"], "source_connection_id");

    let mut tracking = body(conn, conn);
    tracking["schemas"] =
        json!([{"id": "public.events", "enabled": false}, {"id": "public.users", "tracking_field": "email"}]);
    let (status, answer) = api.send("POST", "/api/bulk/syncs", Some(tracking)).await;
    assert_error(status, &answer, 422, "cannot be the tracking field of public.users");
    assert_eq!(answer["metadata"]["field"], "schemas[1].tracking_field");
    let mut duplicate = body(conn, conn);
    duplicate["schemas"] =
        json!(["public.users", {"id": "public.events", "enabled": false, "user_output_name": "USERS"}]);
    let (status, answer) = api.send("POST", "/api/bulk/syncs", Some(duplicate)).await;
    assert_error(status, &answer, 422, "would both be written to table \"USERS\"");
    assert_eq!(answer["metadata"]["field"], "schemas[1]");
    assert_eq!(api.ok("GET", "/api/bulk/syncs", None).await, json!([]), "nothing refused was stored");

    // A listed table without a primary key cannot be replicated; omitted schemas select every
    // table, one without a primary key disabled. Unknown body members are accepted, not echoed.
    let mut keyless = body(conn, conn);
    keyless["schemas"] = json!(["public.users", "public.events"]);
    let (status, answer) = api.send("POST", "/api/bulk/syncs", Some(keyless)).await;
    assert_error(status, &answer, 422, "replicate mode needs a primary key and public.events has none");
    assert_eq!(answer["metadata"]["field"], "schemas[1]");
    let mut every = body(conn, conn);
    every["comment"] = json!("not a bulk sync setting");
    let sync = api.ok("POST", "/api/bulk/syncs", Some(every)).await;
    assert!(sync.get("comment").is_none(), "{sync}");
    let schemas = api.ok("GET", &format!("/api/bulk/syncs/{}/schemas", id(&sync)), None).await;
    let selected: Vec<(&str, bool)> = schemas
        .as_array()
        .expect("schemas")
        .iter()
        .map(|s| (s["id"].as_str().expect("id"), s["enabled"].as_bool().expect("enabled")))
        .collect();
    assert_eq!(selected, [("public.events", false), ("public.users", true)]);
    let (status, answer) = other.send("GET", &format!("/api/bulk/syncs/{}", id(&sync)), None).await;
    assert_error(status, &answer, 404, "not found");
    scene.finish().await;
}

#[tokio::test]
async fn one_execution_at_a_time_and_starts_are_idempotent() {
    let scene = Scene::new("api", "bulkrun", TABLES).await;
    let (api, conn) = (&scene.api, &scene.conn);
    let sync = id(&api.ok("POST", "/api/bulk/syncs", Some(body(conn, conn))).await);
    let start = format!("/api/bulk/syncs/{sync}/executions");

    let first = api.ok("POST", &start, Some(json!({"schemas": ["public.users"]}))).await;
    assert_eq!((first["status"].as_str(), first["is_partial"].as_bool()), (Some("scheduled"), Some(true)), "{first}");
    let (status, answer) = api.send("POST", &start, Some(json!({}))).await;
    assert_error(status, &answer, 409, "already has an execution in progress");
    let state = scene.install.db.client().await;
    let stored = state
        .query_one("select options, resync from executions where id = $1::text::uuid", &[&id(&first)])
        .await
        .expect("execution");
    assert_eq!(stored.get::<_, Json>(0), json!({"schemas": ["public.users"]}), "the options the engine reads");
    assert!(!stored.get::<_, bool>(1));
    api.ok("POST", &format!("/api/bulk/syncs/{sync}/cancel"), None).await;

    let options = json!({"resync_mode": "resync", "fetch_mode": "full"});
    let (status, once) = api.send_with_key("POST", &start, options.clone(), "bulk-start-0001").await;
    assert_eq!(status, 200, "{once}");
    let (status, again) = api.send_with_key("POST", &start, options, "bulk-start-0001").await;
    assert_eq!((status, &again["data"]["id"]), (200, &once["data"]["id"]), "a retried start is replayed, not a 409");
    let (status, answer) = api.send_with_key("POST", &start, json!({"test": true}), "bulk-start-0001").await;
    assert_error(status, &answer, 422, "already used for a different request");
    let executions = api.ok("GET", &format!("{start}?only_terminal=true"), None).await;
    assert_eq!(executions.as_array().map(Vec::len), Some(1), "the canceled one: {executions}");
    let (status, answer) = api.send("POST", &start, Some(json!({"resync": true}))).await;
    assert_error(status, &answer, 400, "use resync_mode");
    scene.finish().await;
}

#[tokio::test]
async fn members_read_bulk_syncs_and_need_grants_to_change_or_run_them() {
    let scene = Scene::new("api", "bulkroles", TABLES).await;
    let (admin, conn) = (&scene.api, &scene.conn);
    let sync = id(&admin.ok("POST", "/api/bulk/syncs", Some(body(conn, conn))).await);
    let (member_id, member) = member(&scene.install, &scene.process, &scene.org_id, "member@bulkroles.test").await;

    assert_eq!(member.ok("GET", "/api/bulk/syncs", None).await.as_array().map(Vec::len), Some(1));
    member.ok("GET", &format!("/api/bulk/syncs/{sync}/schemas"), None).await;
    for (method, path, body) in [
        ("POST", "/api/bulk/syncs".to_owned(), Some(body(conn, conn))),
        ("PUT", format!("/api/bulk/syncs/{sync}"), Some(body(conn, conn))),
        ("POST", format!("/api/bulk/syncs/{sync}/activate"), Some(json!({"active": false}))),
        ("POST", format!("/api/bulk/syncs/{sync}/executions"), Some(json!({}))),
        ("POST", format!("/api/bulk/syncs/{sync}/schedules"), Some(json!({"schedule": {"frequency": "hourly"}}))),
        ("DELETE", format!("/api/bulk/syncs/{sync}"), None),
    ] {
        let (status, answer) = member.send(method, &path, body).await;
        assert_eq!((status, answer["key"].as_str()), (403, Some("forbidden")), "a Member may not {method} {path}");
    }

    // `sync:run` is for model syncs; `bulk_sync:run` lets the Member start bulk syncs.
    let runner = id(&admin.ok("POST", "/api/permissions/roles", Some(json!({"name": "Runners"}))).await);
    let grant = |action: &str| json!({"name": action, "policy_actions": [{"action": action, "role_ids": [runner]}]});
    admin.ok("POST", "/api/permissions/policies", Some(grant("sync:run"))).await;
    let roles = admin.ok("GET", "/api/permissions/roles", None).await;
    let member_role = roles.as_array().expect("roles").iter().find(|r| r["name"] == "Member").map(id).expect("Member");
    let roles = json!({"role_ids": [member_role, runner]});
    admin.ok("PUT", &format!("/api/organization/users/{member_id}"), Some(roles)).await;
    let start = format!("/api/bulk/syncs/{sync}/executions");
    assert_eq!(member.send("POST", &start, Some(json!({}))).await.0, 403);
    admin.ok("POST", "/api/permissions/policies", Some(grant("bulk_sync:run"))).await;
    member.ok("POST", &start, Some(json!({}))).await;
    scene.finish().await;
}

#[tokio::test]
async fn connections_in_use_by_a_bulk_sync_are_kept_unless_forced() {
    let scene = Scene::new("api", "bulkuse", TABLES).await;
    let (api, conn) = (&scene.api, &scene.conn);
    let mut active = body(conn, conn);
    active["additional_schedules"] = json!([{"frequency": "hourly", "minute": "5", "schemas": ["public.users"]}]);
    let sync = id(&api.ok("POST", "/api/bulk/syncs", Some(active)).await);
    let state = scene.install.db.client().await;
    let scheduled = "select count(*) from schedules where subject_id = $1::text::uuid";
    assert_eq!(state.query_one(scheduled, &[&sync]).await.expect("count").get::<_, i64>(0), 1);

    let (status, answer) = api.send("DELETE", &format!("/api/connections/{conn}"), None).await;
    assert_error(status, &answer, 422, "bulk sync(s)");
    let (status, _) = api.send("DELETE", &format!("/api/connections/{conn}?force=true"), None).await;
    assert_eq!(status, 204);
    let (status, _) = api.send("GET", &format!("/api/bulk/syncs/{sync}"), None).await;
    assert_eq!(status, 404, "force deletes the bulk syncs using the connection");
    assert_eq!(state.query_one(scheduled, &[&sync]).await.expect("count").get::<_, i64>(0), 0, "and their schedules");
    scene.finish().await;
}

#[tokio::test]
async fn cancelling_a_schema_stops_it_where_the_execution_is() {
    // No worker: executions wait until the test plays the engine's part.
    let scene = Scene::new("api", "bulkcancel", TABLES).await;
    let (api, conn) = (&scene.api, &scene.conn);
    let mut snapshot = body(conn, conn);
    snapshot["mode"] = json!("snapshot");
    let sync = id(&api.ok("POST", "/api/bulk/syncs", Some(snapshot)).await);
    let cancel = |schema: &str| format!("/api/bulk/syncs/{sync}/schemas/{schema}/cancel");
    let state = scene.install.db.client().await;
    let start = format!("/api/bulk/syncs/{sync}/executions");

    // Waiting: the schema is taken out of the execution; the last one cancels it.
    let waiting = id(&api.ok("POST", &start, Some(json!({}))).await);
    let answer = api.ok("POST", &cancel("public.events"), None).await;
    assert_eq!(answer["message"], "the schema was taken out of the execution, which has not started yet");
    let execution = api.ok("GET", &format!("{start}/{waiting}"), None).await;
    assert_eq!((execution["status"].as_str(), execution["is_partial"].as_bool()), (Some("scheduled"), Some(true)));
    let options = "select options from executions where id = $1::text::uuid";
    let stored: Json = state.query_one(options, &[&waiting]).await.expect("options").get(0);
    assert_eq!(stored, json!({"schemas": ["public.users"]}), "what the engine will plan");
    assert_eq!(api.ok("POST", &cancel("public.users"), None).await["message"], "cancel requested");
    assert_eq!(api.ok("GET", &format!("{start}/{waiting}"), None).await["status"], "canceled");

    // Planning (running, no schema planned yet): try again. Planned: the engine is asked.
    let running = id(&api.ok("POST", &start, Some(json!({}))).await);
    state
        .execute("update executions set status = 'running', worker = 'w' where id = $1::text::uuid", &[&running])
        .await
        .expect("claim");
    let (status, answer) = api.send("POST", &cancel("public.users"), None).await;
    assert_error(status, &answer, 409, "being planned");
    state
        .batch_execute(&format!(
            "insert into bulk_schema_executions (execution_id, schema_id, output_name, status) values
               ('{running}', 'public.users', 'users', 'running'), ('{running}', 'public.events', 'events', 'completed')"
        ))
        .await
        .expect("plan");
    assert_eq!(api.ok("POST", &cancel("public.users"), None).await["message"], "cancel requested");
    let requested =
        "select schema_id from bulk_schema_executions where cancel_requested and execution_id = $1::text::uuid";
    let rows = state.query(requested, &[&running]).await.expect("requested");
    assert_eq!(rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), ["public.users"]);
    let answer = api.ok("POST", &cancel("public.events"), None).await;
    assert_eq!(answer["message"], "the schema already ended in the execution in progress");
    let (status, _) = api.send("POST", &cancel("public.nothing"), None).await;
    assert_eq!(status, 404, "a schema the sync does not replicate");
    scene.finish().await;
}

#[tokio::test]
async fn a_files_destination_takes_snapshots_only() {
    let scene = Scene::new("api", "bulkfiles", TABLES).await;
    let (api, conn) = (&scene.api, &scene.conn);
    let outside = json!({"name": "etc", "type": "files", "configuration": {"url": "file:///etc/syncline"}});
    let (status, refused) = api.send("POST", "/api/connections", Some(outside)).await;
    assert_error(status, &refused, 422, "LOCAL_FILES_ROOT");
    let dir = local_files_root().join(format!("syncline-files-{}", scene.org_id));
    let files = json!({"name": "lake", "type": "files", "configuration": {"url": format!("file://{}", dir.display())}});
    let files = id(&api.ok("POST", "/api/connections", Some(files)).await);
    let target = api.ok("GET", &format!("/api/connections/{files}/bulksync/target"), None).await;
    assert_eq!(
        target["modes"].as_array().map(|m| m.iter().map(|m| m["id"].clone()).collect()),
        Some(vec![json!("snapshot")])
    );

    let mut replicate = body(conn, &files);
    replicate["mode"] = json!("replicate");
    let (status, answer) = api.send("POST", "/api/bulk/syncs", Some(replicate)).await;
    assert_error(status, &answer, 422, "a files destination does not take replicate mode (it takes snapshot)");
    assert_eq!(answer["metadata"]["field"], "mode");
    let sync = api.ok("POST", "/api/bulk/syncs", Some(body(conn, &files))).await;
    assert_eq!(sync["mode"], "snapshot", "the destination's mode when none is given: {sync}");
    std::fs::remove_dir_all(dir).ok();
    scene.finish().await;
}
