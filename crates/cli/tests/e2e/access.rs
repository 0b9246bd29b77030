//! Organization scoping, roles and policies, the audit log and authentication limits.

use serde_json::{Value as Json, json};

use crate::support::{Install, Process, Scene, member, model_and_sync, organization, pg_connection};

/// Every route the API declares, read from the route attributes of `crates/api/src/routes`, so a
/// route added later is walked too.
fn route_table() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, routes: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("routes dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, routes);
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("route source");
            for line in source.lines().map(str::trim) {
                for method in ["get", "post", "put", "patch", "delete"] {
                    if let Some(rest) = line.strip_prefix(&format!("#[{method}(\"")) {
                        let route = rest.split('"').next().expect("route path");
                        routes.push((method.to_uppercase(), format!("/api{route}")));
                    }
                }
            }
        }
    }
    let mut routes = Vec::new();
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src/routes"), &mut routes);
    routes.retain(|(_, path)| path != "/api/status.txt");
    routes
}

/// An organization (its Admin's API is `scene.api`) with a connection, a model and a sync.
async fn scene_with_sync(name: &str) -> (Scene, String, String) {
    let scene = Scene::new("api", name, "create table users (id bigint primary key, email text)").await;
    let (model, sync) = model_and_sync(
        &scene.api,
        &scene.conn,
        &scene.conn,
        "select id, email from users",
        "public.users",
        &["email"],
        "updateOrCreate",
    )
    .await;
    (scene, model, sync)
}

fn id(value: &Json) -> String {
    value["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn every_route_hides_other_organizations_objects() {
    // Organization B and one object of every kind.
    let (scene, model, sync) = scene_with_sync("bravo").await;
    let (install, process, b) = (&scene.install, &scene.process, &scene.api);
    let execution = id(&b.ok("POST", &format!("/api/syncs/{sync}/executions"), Some(json!({}))).await);
    let (b_user, _) = member(install, process, &scene.org_id, "member@bravo.test").await;
    let b_key = id(&b.ok("POST", &format!("/api/organization/users/{b_user}/keys"), None).await);
    let role = id(&b.ok("POST", "/api/permissions/roles", Some(json!({"name": "Analysts"}))).await);
    let policy = id(&b.ok("POST", "/api/permissions/policies", Some(json!({"name": "Ops"}))).await);
    let bulk_body = json!({"name": "bulk", "source_connection_id": scene.conn, "destination_connection_id": scene.conn,
                           "destination_configuration": {"schema": "copy"}, "default_schedule": {"frequency": "manual"}});
    let bulk = id(&b.ok("POST", "/api/bulk/syncs", Some(bulk_body)).await);
    let bulk_execution = id(&b.ok("POST", &format!("/api/bulk/syncs/{bulk}/executions"), Some(json!({}))).await);
    let event_source = id(&b.ok("POST", "/api/event_sources", Some(json!({"name": "server"}))).await);
    let event_route = id(&b
        .ok("POST", &format!("/api/event_sources/{event_source}/routes"), Some(json!({"connection_id": scene.conn})))
        .await);

    // Organization A: its Admin and a Member.
    let (a_org, a_admin) = organization(install, process, "alpha").await;
    let (_, a_member) = member(install, process, &a_org, "member@alpha.test").await;

    let routes = route_table();
    assert!(routes.len() > 40, "the route table was read: {routes:?}");
    let mut walked = 0;
    for (method, route) in &routes {
        let mut path = String::new();
        let mut previous = "";
        let mut named = false;
        let in_bulk = route.starts_with("/api/bulk/");
        for segment in route.trim_start_matches('/').split('/') {
            let value = match segment.starts_with('{') {
                false => segment.to_owned(),
                true => {
                    named = true;
                    match previous {
                        "connections" => scene.conn.clone(),
                        "models" => model.clone(),
                        "syncs" if in_bulk => bulk.clone(),
                        "syncs" => sync.clone(),
                        "executions" if in_bulk => bulk_execution.clone(),
                        "executions" => execution.clone(),
                        "schemas" => "public.users".into(),
                        "schedules" => "default".into(),
                        "fields" => "email".into(),
                        "properties" => "schema".into(),
                        "organizations" => scene.org_id.clone(),
                        "users" => b_user.clone(),
                        "keys" => b_key.clone(),
                        "roles" => role.clone(),
                        "policies" => policy.clone(),
                        "connection_types" => "postgresql".into(),
                        "event_sources" => event_source.clone(),
                        "routes" => event_route.clone(),
                        // A record log type after an execution, and a file of that type.
                        "{id}" => "inserts".into(),
                        "{type}" => "inserts-00000.jsonl.gz".into(),
                        other => {
                            panic!("{method} {route}: no object of organization B for a parameter after {other:?}")
                        }
                    }
                }
            };
            path.push('/');
            path.push_str(&value);
            previous = segment;
        }
        if !named || route.starts_with("/api/connection_types/") {
            continue; // names no object of B (lists, creates, global connection types)
        }
        walked += 1;
        let path = format!("{path}?target=public.users");
        let body = matches!(method.as_str(), "POST" | "PUT" | "PATCH").then(|| json!({}));
        let (status, answer) = a_admin.send(method, &path, body.clone()).await;
        assert_eq!(status, 404, "A's admin must not reach B's object: {method} {route} answered {answer}");
        assert_eq!(answer["key"], "not_found", "{method} {route}: {answer}");
        let (status, answer) = a_member.send(method, &path, body).await;
        assert!(
            matches!(status, 403 | 404),
            "A's member must not reach B's object: {method} {route} answered {status} {answer}"
        );
    }
    assert!(walked > 30, "walked {walked} object routes");

    // Objects named in bodies are scoped too.
    for (method, path, body) in [
        ("POST", "/api/connections/test", json!({"connection_id": scene.conn})),
        (
            "POST",
            "/api/models",
            json!({"name": "m", "connection_id": scene.conn, "configuration": {"query": "select 1"}}),
        ),
        (
            "POST",
            "/api/model-preview",
            json!({"name": "m", "connection_id": scene.conn, "configuration": {"query": "select 1"}}),
        ),
        (
            "POST",
            "/api/permissions/policies",
            json!({"name": "p", "policy_actions": [{"action": "read", "role_ids": [role]}]}),
        ),
        ("PUT", "/api/organization/users/00000000-0000-0000-0000-000000000000", json!({"role_ids": [role]})),
    ] {
        let (status, answer) = a_admin.send(method, path, Some(body)).await;
        assert!(matches!(status, 400 | 404 | 422), "{method} {path} with B's ids answered {status} {answer}");
    }
    let listed = a_admin.ok("GET", "/api/connections", None).await;
    assert_eq!(listed, json!([]), "A lists none of B's connections");
    scene.finish().await;
}

#[tokio::test]
async fn members_need_a_role_for_guarded_routes() {
    let (scene, model, sync) = scene_with_sync("acme").await;
    let (install, process, admin) = (&scene.install, &scene.process, &scene.api);
    let (member_id, member) = member(install, process, &scene.org_id, "member@acme.test").await;

    // The Default policy lets Members read everything and change nothing.
    for path in
        [format!("/api/connections/{}", scene.conn), format!("/api/models/{model}"), format!("/api/syncs/{sync}")]
    {
        member.ok("GET", &path, None).await;
    }
    assert_eq!(member.ok("GET", "/api/connections", None).await.as_array().map(Vec::len), Some(1));
    let connection = json!({"name": "x", "type": "postgresql", "configuration": {"hostname": "h", "database": "d", "username": "u"}});
    for (method, path, body) in [
        ("POST", "/api/connections".to_owned(), Some(connection.clone())),
        ("PUT", format!("/api/connections/{}", scene.conn), Some(json!({"name": "y", "configuration": {}}))),
        ("DELETE", format!("/api/connections/{}", scene.conn), None),
        ("DELETE", format!("/api/models/{model}"), None),
        ("POST", format!("/api/syncs/{sync}/executions"), Some(json!({}))),
        ("POST", format!("/api/syncs/{sync}/cancel"), Some(json!({}))),
        ("POST", format!("/api/syncs/{sync}/activate"), Some(json!({"active": false}))),
        ("DELETE", format!("/api/syncs/{sync}"), None),
        ("POST", "/api/organization/users".to_owned(), Some(json!({"email": "x@acme.test"}))),
        ("POST", "/api/permissions/roles".to_owned(), Some(json!({"name": "r"}))),
        ("GET", "/api/audit-events".to_owned(), None),
    ] {
        let (status, answer) = member.send(method, &path, body).await;
        assert_eq!(status, 403, "a Member may not {method} {path}: {answer}");
        assert_eq!(answer["key"], "forbidden");
    }

    // A custom role: run any sync (type-wide grant), and update one connection (a policy on it).
    let runner = id(&admin.ok("POST", "/api/permissions/roles", Some(json!({"name": "Runners"}))).await);
    admin
        .ok(
            "POST",
            "/api/permissions/policies",
            Some(json!({"name": "Run syncs", "policy_actions": [{"action": "sync:run", "role_ids": [runner]}]})),
        )
        .await;
    let edit = admin
        .ok(
            "POST",
            "/api/permissions/policies",
            Some(json!({"name": "Edit db", "policy_actions": [{"action": "update", "role_ids": [runner]}]})),
        )
        .await;
    let member_role = admin.ok("GET", "/api/permissions/roles", None).await;
    let member_role =
        member_role.as_array().expect("roles").iter().find(|r| r["name"] == "Member").map(id).expect("Member");
    admin
        .ok("PUT", &format!("/api/organization/users/{member_id}"), Some(json!({"role_ids": [member_role, runner]})))
        .await;
    let other = pg_connection(admin, "other", &scene.data.name).await;
    let current = admin.ok("GET", &format!("/api/connections/{}", scene.conn), None).await;
    let mut attached =
        json!({"name": "db", "configuration": current["configuration"], "policies": [id(&edit)], "validate": false});
    admin.ok("PUT", &format!("/api/connections/{}", scene.conn), Some(attached.clone())).await;

    member.ok("POST", &format!("/api/syncs/{sync}/executions"), Some(json!({}))).await;
    attached["name"] = json!("db renamed by a member");
    member.ok("PUT", &format!("/api/connections/{}", scene.conn), Some(attached.clone())).await;
    let (status, _) = member.send("PUT", &format!("/api/connections/{other}"), Some(attached)).await;
    assert_eq!(status, 403, "the policy is attached to one connection only");
    let (status, _) = member.send("DELETE", &format!("/api/connections/{}", scene.conn), None).await;
    assert_eq!(status, 403, "the policy grants update, not delete");

    // Unknown actions and policies are rejected; the system role cannot change.
    let (status, answer) = admin
        .send(
            "POST",
            "/api/permissions/policies",
            Some(json!({"name": "bad", "policy_actions": [{"action": "create", "role_ids": []}]})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    let (status, _) =
        admin.send("PUT", &format!("/api/permissions/roles/{member_role}"), Some(json!({"name": "x"}))).await;
    assert_eq!(status, 403);
    scene.finish().await;
}

#[tokio::test]
async fn the_audit_log_records_who_did_what() {
    let (scene, _, sync) = scene_with_sync("audited").await;
    let admin = &scene.api;
    let execution = admin.ok("POST", &format!("/api/syncs/{sync}/executions"), Some(json!({}))).await;
    let me = admin.ok("GET", "/api/me", None).await;
    let key = admin.ok("POST", &format!("/api/organization/users/{}/keys", id(&me)), None).await;
    let (status, _) = admin.send("DELETE", "/api/connections/not-an-id", None).await;
    assert_eq!(status, 404);

    let events = admin.ok("GET", "/api/audit-events?limit=100", None).await;
    let events = events.as_array().expect("events");
    let find = |action: &str, object: &str| {
        events.iter().find(|e| e["action"] == action && e["object_id"] == object).unwrap_or_else(|| {
            panic!("no {action} of {object} in {events:?}");
        })
    };
    let created = find("connection.create", &scene.conn);
    assert_eq!(created["actor"]["email"], me["email"]);
    assert_eq!(created["actor"]["type"], "user");
    assert_eq!(created["object_type"], "connection");
    assert!(created["created_at"].is_string() && created["ip"] == "127.0.0.1", "{created}");
    find("sync.create", &sync);
    find("execution.create", &id(&execution));
    find("key.create", &id(&key));
    assert!(!events.iter().any(|e| e["action"] == "connection.delete"), "failed requests are not recorded");
    assert!(
        !events.iter().any(|e| e["action"].as_str().is_some_and(|a| a.ends_with(".get"))),
        "reads are not recorded"
    );
    let created_orgs = events.iter().filter(|e| e["action"] == "organization.create").count();
    assert_eq!(created_orgs, 1, "the partner's creation of this organization is in its log");

    let only = admin.ok("GET", &format!("/api/audit-events?action=sync.create&object_id={sync}"), None).await;
    assert_eq!(only.as_array().map(Vec::len), Some(1));

    // Keys record their last use and can be revoked.
    let keys_path = format!("/api/organization/users/{}/keys", id(&me));
    let keys = admin.ok("GET", &keys_path, None).await;
    let entry = |keys: &Json, key_id: &str| keys.as_array().and_then(|k| k.iter().find(|k| k["id"] == key_id)).cloned();
    assert!(entry(&keys, &id(&key)).expect("listed")["last_used_at"].is_null(), "the new key was never used");
    assert_eq!(keys.as_array().map(|k| k.iter().filter(|k| k["last_used_at"].is_string()).count()), Some(1), "{keys}");
    let second = admin.with_auth(&format!("Bearer {}", key["value"].as_str().expect("value")));
    second.ok("GET", "/api/me", None).await;
    admin.ok("DELETE", &format!("{keys_path}/{}", id(&key)), None).await;
    let (status, _) = second.send("GET", "/api/me", None).await;
    assert_eq!(status, 401, "a revoked key no longer works");
    let keys = admin.ok("GET", &keys_path, None).await;
    assert!(entry(&keys, &id(&key)).expect("listed")["revoked_at"].is_string(), "{keys}");
    scene.finish().await;
}

/// `Authorization` and `X-Forwarded-For` of one request.
async fn from(process: &Process, auth: &str, client: &str) -> (u16, Json) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/connections", process.base()))
        .header("Authorization", auth)
        .header("X-Forwarded-For", client)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

#[tokio::test]
async fn failed_authentication_is_rate_limited_without_locking_out_the_innocent() {
    // The test talks through a "proxy" (itself, on loopback) that names the client.
    let mut install = Install::new().await;
    install.extra_env = vec![("TRUSTED_PROXIES".into(), "127.0.0.1".into())];
    let process = install.spawn("api").await;
    let (org, api) = organization(&install, &process, "limited").await;
    let basic = |key: &str| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{org}:{key}")))
    };

    // Per account and source: wrong deployment keys against one organization from one client.
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(from(&process, &basic("wrong"), "203.0.113.5").await.0);
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    assert_eq!(statuses[10], 429, "the 11th failure against one account from one client is refused");
    let (status, answer) = from(&process, &basic("wrong"), "203.0.113.5").await;
    assert_eq!((status, answer["key"].as_str()), (429, Some("too_many_requests")), "{answer}");
    assert!(answer["metadata"]["retry_after"].as_u64().is_some_and(|s| s > 0 && s <= 300), "{answer}");
    let (status, _) = from(&process, &basic("wrong"), "203.0.113.6").await;
    assert_eq!(status, 401, "another client's attempts against the account are not locked out");
    let (status, answer) = from(&process, &basic(&install.key), "203.0.113.5").await;
    assert_eq!(status, 200, "the right key still works from the locked client: {answer}");

    // Per IP: wrong API keys.
    let mut statuses = Vec::new();
    for _ in 0..31 {
        statuses.push(from(&process, "Bearer sk_wrong", "198.51.100.7").await.0);
    }
    assert_eq!((&statuses[..30], statuses[30]), (&[401; 30][..], 429), "the IP's budget of 30 failures is used up");
    let (status, _) = from(&process, "Bearer sk_wrong", "198.51.100.7").await;
    assert_eq!(status, 429, "further failures from the IP wait for the window");
    let valid = api.send("GET", "/api/me", None).await;
    assert_eq!(valid.0, 200, "a valid key works from anywhere: {}", valid.1);
    let user_key = format!("Bearer {}", api.token());
    assert_eq!(from(&process, &user_key, "198.51.100.7").await.0, 200, "a valid key works from the failing address");
    drop(process);

    // Without trusted proxies, X-Forwarded-For is the client's own claim and changes nothing.
    install.extra_env.clear();
    let process = install.spawn("api").await;
    let mut last = 0;
    for i in 0..31 {
        last = from(&process, "Bearer sk_wrong", &format!("192.0.2.{i}")).await.0;
    }
    assert_eq!(last, 429, "failures are charged to the TCP peer, whatever the header says");
    drop(process);
    install.finish().await;
}

#[tokio::test]
async fn browsers_may_call_only_from_configured_origins() {
    let mut install = Install::new().await;
    install.extra_env = vec![("VALID_ORIGINS".into(), "https://ui.example.com, https://admin.example.com".into())];
    let process = install.spawn("api").await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}/api/connections", process.base()))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "x-csrf-token, content-type")
            .send()
    };
    for origin in ["https://ui.example.com", "https://admin.example.com"] {
        let answer = preflight(origin).await.expect("preflight");
        let allowed = answer.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok());
        assert_eq!(allowed, Some(origin), "{origin} is configured");
        let credentials = answer.headers().get("access-control-allow-credentials").and_then(|v| v.to_str().ok());
        assert_eq!(credentials, Some("true"));
    }
    let answer = preflight("https://evil.example.com").await.expect("preflight");
    assert!(answer.headers().get("access-control-allow-origin").is_none(), "other origins get no CORS grant");
    drop(process);
    install.finish().await;
}
