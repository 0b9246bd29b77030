//! What the state database refuses answers the JSON error object naming the field: a taken name
//! is 409, a reference to an object that does not exist is 422 — never 503.

use serde_json::{Value as Json, json};

use crate::support::{Api, Scene, assert_error};

const MISSING: &str = "0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f";

fn id(object: &Json) -> String {
    object["id"].as_str().expect("an id").to_owned()
}

/// `send` answers a 409 naming `field`, with `message` in its words.
async fn conflict(api: &Api, (method, path): (&str, &str), body: Json, field: &str, message: &str) {
    let (status, answer) = api.send(method, path, Some(body)).await;
    assert_error(status, &answer, 409, message);
    assert_eq!(answer["key"], "conflict", "{method} {path}: {answer}");
    assert_eq!(answer["metadata"]["field"], field, "{method} {path}: {answer}");
}

/// `send` answers a 422 naming `field`.
async fn unprocessable(api: &Api, (method, path): (&str, &str), body: Json, field: &str, message: &str) {
    let (status, answer) = api.send(method, path, Some(body)).await;
    assert_error(status, &answer, 422, message);
    assert_eq!(answer["key"], "unprocessable_entity", "{method} {path}: {answer}");
    assert_eq!(answer["metadata"]["field"], field, "{method} {path}: {answer}");
}

#[tokio::test]
async fn taken_names_are_conflicts_naming_the_field() {
    let scene = Scene::new("api", "dupes", "create table users (id bigint primary key, email text)").await;
    let (api, partner) = (scene.api.clone(), scene.install.partner(&scene.process));

    // Created twice: the second create answers 409.
    api.ok("POST", "/api/permissions/roles", Some(json!({"name": "Ops"}))).await;
    let role = ("POST", "/api/permissions/roles");
    conflict(&api, role, json!({"name": "ops"}), "name", "a role named \"ops\" already exists").await;
    api.ok("POST", "/api/permissions/policies", Some(json!({"name": "Runners"}))).await;
    let policy = ("POST", "/api/permissions/policies");
    conflict(&api, policy, json!({"name": "Runners"}), "name", "a policy named \"runners\" already exists").await;
    let organizations = ("POST", "/api/organizations");
    conflict(&partner, organizations, json!({"name": "dupes"}), "name", "an organization named \"dupes\"").await;
    let users = ("POST", "/api/organization/users");
    conflict(&api, users, json!({"email": "admin@dupes.test"}), "email", "a user with email").await;

    // Renamed onto a taken name: the database's unique index refuses it.
    let other = id(&api.ok("POST", "/api/permissions/roles", Some(json!({"name": "Other"}))).await);
    let path = format!("/api/permissions/roles/{other}");
    conflict(&api, ("PUT", &path), json!({"name": "OPS"}), "name", "a role named \"ops\" already exists").await;
    let second = id(&api.ok("POST", "/api/organization/users", Some(json!({"email": "second@dupes.test"}))).await);
    let path = format!("/api/organization/users/{second}");
    let taken = json!({"email": "Admin@dupes.test"});
    conflict(&api, ("PUT", &path), taken, "email", "a user with email \"admin@dupes.test\" already exists").await;
    let org = id(&partner.ok("POST", "/api/organizations", Some(json!({"name": "elsewhere"}))).await);
    let path = format!("/api/organizations/{org}");
    conflict(&partner, ("PUT", &path), json!({"name": "dupes"}), "name", "an organization named \"dupes\"").await;

    // Nothing was changed by the refused requests.
    let roles = api.ok("GET", &format!("/api/permissions/roles/{other}"), None).await;
    assert_eq!(roles["name"], "Other");
    scene.finish().await;
}

#[tokio::test]
async fn references_to_missing_objects_are_unprocessable() {
    let scene = Scene::new("api", "refs", "create table users (id bigint primary key, email text)").await;
    let (api, conn) = (scene.api.clone(), scene.conn.clone());
    let models = ("POST", "/api/models");
    let query = json!({"query": "select id, email from users"});

    let model = json!({"name": "m", "connection_id": MISSING, "configuration": query});
    unprocessable(&api, models, model, "connection_id", "connection_id names no connection").await;
    let model = json!({"name": "m", "connection_id": conn, "configuration": query, "policies": [MISSING]});
    unprocessable(&api, models, model, "policies", "every entry must be a policy of this organization").await;
    let connection = json!({"name": "x", "type": "postgresql", "configuration": {}, "policies": [MISSING]});
    unprocessable(&api, ("POST", "/api/connections"), connection, "policies", "policy").await;

    let model = id(&api
        .ok("POST", "/api/models", Some(json!({"name": "m", "connection_id": conn, "configuration": query})))
        .await);
    let sync = |model_id: &str, target: &str| {
        json!({
            "name": "s", "mode": "updateOrCreate", "schedule": {"frequency": "manual"},
            "target": {"connection_id": target, "object": "public.users"},
            "identity": {"source": {"model_id": model_id, "field": "id"}, "target": "id", "function": "Equality"},
            "fields": [{"source": {"model_id": model_id, "field": "email"}, "target": "email"}],
        })
    };
    let syncs = ("POST", "/api/syncs");
    let message = "target.connection_id names no connection";
    unprocessable(&api, syncs, sync(&model, MISSING), "target.connection_id", message).await;
    let message = "fields.source.model_id names no model";
    unprocessable(&api, syncs, sync(MISSING, &conn), "fields.source.model_id", message).await;

    // The same body with objects that exist is taken.
    api.ok("POST", "/api/syncs", Some(sync(&model, &conn))).await;
    scene.finish().await;
}
