//! Day-to-day operations on connections, models and syncs.

use serde_json::json;

use crate::support::{Scene, model_and_sync};

#[tokio::test]
async fn connections_models_and_syncs_can_be_inspected_changed_and_removed() {
    let scene = Scene::new(
        "api",
        "ops",
        "create table users (id bigint primary key, email text, plan text);
                        insert into users values (1, 'a@x.io', 'pro'), (2, 'b@x.io', null);",
    )
    .await;
    let (org_id, api, conn) = (scene.org_id.clone(), scene.api.clone(), scene.conn.clone());

    let types = api.ok("GET", "/api/connection_types", None).await;
    let pg = types.as_array().expect("types").iter().find(|t| t["id"] == "postgresql").expect("postgresql").clone();
    assert_eq!(
        (pg["capabilities"]["source"].as_bool(), pg["capabilities"]["destination"].as_bool()),
        (Some(true), Some(true))
    );
    let schema = api.send("GET", "/api/connection_types/postgresql", None).await.1;
    assert_eq!(schema["properties"]["password"]["writeOnly"], true);

    // An update without the password keeps the stored one; the connection keeps working.
    let current = api.ok("GET", &format!("/api/connections/{conn}"), None).await;
    let mut config = current["configuration"].clone();
    config["port"] = json!(config["port"].as_i64().unwrap_or(5432));
    let renamed = api
        .ok("PUT", &format!("/api/connections/{conn}"), Some(json!({"name": "renamed", "configuration": config})))
        .await;
    assert_eq!(renamed["name"], "renamed");
    api.ok("POST", "/api/connections/test", Some(json!({"connection_id": conn}))).await;
    let mut wrong = config.clone();
    wrong["port"] = json!(1);
    wrong["password"] = json!("irrelevant");
    let (status, body) =
        api.send("POST", "/api/connections/test", Some(json!({"type": "postgresql", "configuration": wrong}))).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().starts_with("connection test failed"), "{body}");

    let preview = api
        .ok(
            "POST",
            "/api/model-preview",
            Some(json!({"name": "p", "connection_id": conn, "configuration": {"table": "public.users"}})),
        )
        .await;
    let names: Vec<&str> =
        preview["fields"].as_array().expect("fields").iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["id", "email", "plan"]);
    let (model_id, sync_id) = model_and_sync(
        &api,
        &conn,
        &conn,
        "select id, email, plan from users order by id",
        "public.users",
        &["email"],
        "updateOrCreate",
    )
    .await;
    let sample = api.ok("GET", &format!("/api/models/{model_id}/sample"), None).await;
    let first = &sample["records"][0][&model_id];
    assert_eq!((first["id"].as_i64(), first["email"].as_str()), (Some(1), Some("a@x.io")), "{sample}");
    let models = api.ok("GET", "/api/models", None).await;
    assert_eq!(models.as_array().map(Vec::len), Some(1));

    let listed = api.send("GET", "/api/syncs?limit=10", None).await.1;
    assert_eq!(listed["data"][0]["id"], sync_id.as_str());
    assert_eq!(listed["data"][0]["target_object"], "public.users");
    assert_eq!(listed["pagination"]["next_page_token"], "");
    let paused = api.ok("POST", &format!("/api/syncs/{sync_id}/activate"), Some(json!({"active": false}))).await;
    assert_eq!(paused["active"], false);
    assert_eq!(api.ok("GET", &format!("/api/syncs/{sync_id}"), None).await["active"], false);
    let options = api.ok("GET", "/api/syncs/schedules", None).await;
    assert!(options["schedule_options"].as_array().expect("options").iter().any(|o| o["frequency"] == "custom"));

    let (status, body) = api.send("DELETE", &format!("/api/connections/{conn}"), None).await;
    assert_eq!(status, 422, "a connection in use is kept: {body}");
    let (status, _) = api.send("DELETE", &format!("/api/connections/{conn}?force=true"), None).await;
    assert_eq!(status, 204);
    let (status, _) = api.send("GET", &format!("/api/syncs/{sync_id}"), None).await;
    assert_eq!(status, 404, "force deletes the dependents");

    let partner = scene.install.partner(&scene.process);
    let users = partner.ok("GET", &format!("/api/organizations/{org_id}/users"), None).await;
    let user_id = users[0]["id"].as_str().expect("user").to_owned();
    let deleted = partner.ok("DELETE", &format!("/api/organizations/{org_id}/users/{user_id}"), None).await;
    assert_eq!(deleted["email"], "admin@ops.test", "users.delete answers with the user");
    let (status, _) = api.send("GET", "/api/models", None).await;
    assert_eq!(status, 401, "a deleted user's key stops working");
    scene.finish().await;
}
