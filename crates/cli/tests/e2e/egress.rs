//! Where connections may go: never Syncline's own state database, only where the operator lets
//! them, and a stored secret only to the server and user it was stored for.

use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    Scene, assert_error, password, pg_config, pg_connection, server_address, users_sync, wait_for_end,
};

/// A PostgreSQL connection configuration for `database` on `host:port`.
fn config(host: &str, port: u16, database: &str) -> Json {
    pg_config(host, port, database, "x")
}

#[tokio::test]
async fn the_state_database_is_out_of_reach() {
    let scene = Scene::new("api", "egress", "create table users (id bigint primary key)").await;
    let (api, state_db) = (scene.api.clone(), scene.install.db.name.clone());
    let (_, port) = server_address();
    let create = |configuration: Json, validate: bool| {
        let api = api.clone();
        async move {
            let body = json!({"name": "x", "type": "postgresql", "configuration": configuration, "validate": validate});
            api.send("POST", "/api/connections", Some(body)).await
        }
    };
    // By address, by alias names of this host, with or without a test of the connection.
    for host in ["127.0.0.1", "localhost", "127.0.0.2", "0.0.0.0"] {
        for validate in [true, false] {
            let (s, b) = create(config(host, port, &state_db), validate).await;
            assert_error(s, &b, 422, "Syncline's own state database");
        }
    }
    let (s, b) = create(config("/var/run/postgresql", port, &state_db), false).await;
    assert_error(s, &b, 422, "Unix socket");
    let (s, b) = create(config("169.254.169.254", 5432, "x"), false).await;
    assert_error(s, &b, 422, "metadata");
    let (s, b) = api
        .send(
            "POST",
            "/api/connections/test",
            Some(json!({"type": "postgresql", "configuration": config("localhost", port, &state_db)})),
        )
        .await;
    assert_error(s, &b, 422, "state database");

    // Moving an existing connection onto the state database is refused as well.
    let moved = json!({"name": "db", "configuration": config("localhost", port, &state_db)});
    let (s, b) = api.send("PUT", &format!("/api/connections/{}", scene.conn), Some(moved)).await;
    assert_error(s, &b, 422, "state database");
    let state = scene.install.db.client().await;
    let row = state
        .query_one("select configuration->>'database' from connections where id = $1::text::uuid", &[&scene.conn])
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), scene.data.name, "the connection is unchanged");
    scene.finish().await;
}

#[tokio::test]
async fn operators_decide_which_networks_connections_reach() {
    let scene = Scene::new("api,worker", "nets", "create table users (id bigint primary key, email text)").await;
    scene.data.client().await.batch_execute("insert into users values (1, 'a@x')").await.expect("rows");
    let (_, sync_id) = users_sync(&scene.api, &scene.conn, &scene.conn).await;
    let Scene { mut install, process, api, data, .. } = scene;
    drop(process);

    // Only a network the test database is not on: existing connections stop working at their
    // next connection attempt, and new ones are refused.
    install.extra_env = vec![("CONNECTION_ALLOWED_NETWORKS".into(), "192.0.2.0/24, *.corp.example".into())];
    let process = install.spawn("api,worker").await;
    let api = api.at(&process);
    let execution = api.ok("POST", &format!("/api/syncs/{sync_id}/executions"), Some(json!({}))).await;
    let done =
        wait_for_end(&api, &sync_id, execution["id"].as_str().expect("id"), std::time::Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["errors"].to_string().contains("not in CONNECTION_ALLOWED_NETWORKS"), "{done}");
    let (s, b) = api
        .send(
            "POST",
            "/api/connections",
            Some(json!({"name": "y", "type": "postgresql", "configuration": config("127.0.0.1", 5432, &data.name)})),
        )
        .await;
    assert_error(s, &b, 422, "not in CONNECTION_ALLOWED_NETWORKS");
    drop(process);

    install.extra_env = vec![("CONNECTION_DENIED_NETWORKS".into(), "127.0.0.0/8".into())];
    let process = install.spawn("api").await;
    let (s, b) = api
        .at(&process)
        .send(
            "POST",
            "/api/connections/test",
            Some(json!({"type": "postgresql", "configuration": config("127.0.0.1", 5432, &data.name)})),
        )
        .await;
    assert_error(s, &b, 422, "is in CONNECTION_DENIED_NETWORKS");
    drop(process);
    data.drop_now().await;
    install.finish().await;
}

/// A server that speaks just enough PostgreSQL to ask for a cleartext password, and keeps
/// every password it is sent.
async fn password_catcher() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let caught = Arc::new(Mutex::new(Vec::new()));
    let store = caught.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut len = [0u8; 4];
                if socket.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                if socket.read_exact(&mut startup).await.is_err() {
                    return;
                }
                // AuthenticationCleartextPassword.
                let _ = socket.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await;
                let mut head = [0u8; 5];
                if socket.read_exact(&mut head).await.is_ok() && head[0] == b'p' {
                    let mut body = vec![0u8; u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize - 4];
                    if socket.read_exact(&mut body).await.is_ok() {
                        let text = String::from_utf8_lossy(&body).trim_end_matches('\0').to_owned();
                        store.lock().expect("lock").push(text);
                    }
                }
            });
        }
    });
    (port, caught)
}

#[tokio::test]
async fn stored_secrets_only_go_where_they_were_stored_for() {
    let scene = Scene::new("api", "secrets", "create table users (id bigint primary key)").await;
    let (api, conn) = (scene.api.clone(), scene.conn.clone());
    let (port, caught) = password_catcher().await;
    let elsewhere = json!({"hostname": "127.0.0.1", "port": port});

    // A read-only Member cannot test a stored connection at all.
    let partner = scene.install.partner(&scene.process);
    let user = partner
        .ok("POST", &format!("/api/organizations/{}/users", scene.org_id), Some(json!({"email": "m@secrets.test"})))
        .await;
    let key = partner
        .ok(
            "POST",
            &format!("/api/organizations/{}/users/{}/keys", scene.org_id, user["id"].as_str().expect("id")),
            None,
        )
        .await;
    let member = api.with_auth(&format!("Bearer {}", key["value"].as_str().expect("key")));
    let (s, b) = member
        .send("POST", "/api/connections/test", Some(json!({"connection_id": conn, "configuration": elsewhere})))
        .await;
    assert_eq!(s, 403, "testing a stored connection needs update: {b}");

    // An Admin pointing the stored connection elsewhere must give the password again.
    let (s, b) = api
        .send("POST", "/api/connections/test", Some(json!({"connection_id": conn, "configuration": elsewhere})))
        .await;
    assert_error(s, &b, 422, "configuration.password must be given again");
    assert_eq!(b["metadata"]["field"], "configuration.password");
    let mut moved = config("127.0.0.1", port, &scene.data.name);
    moved.as_object_mut().expect("object").remove("password");
    let (s, b) = api
        .send(
            "PUT",
            &format!("/api/connections/{conn}"),
            Some(json!({"name": "db", "configuration": moved.clone(), "validate": false})),
        )
        .await;
    assert_error(s, &b, 422, "configuration.password must be given again");
    let mut other_user = config("127.0.0.1", 5432, &scene.data.name);
    other_user["username"] = json!("someone_else");
    other_user.as_object_mut().expect("object").remove("password");
    let (s, b) = api
        .send(
            "PUT",
            &format!("/api/connections/{conn}"),
            Some(json!({"name": "db", "configuration": other_user, "validate": false})),
        )
        .await;
    assert_error(s, &b, 422, "configuration.password must be given again");

    // The same server and user keep the stored password (renaming the database is fine).
    let (s, b) =
        api.send("POST", "/api/connections/test", Some(json!({"connection_id": conn, "configuration": {}}))).await;
    assert_eq!(s, 200, "{b}");

    // With a new password given, that one — and only that one — goes to the new server.
    moved["password"] = json!("typed-again");
    let (s, _) =
        api.send("PUT", &format!("/api/connections/{conn}"), Some(json!({"name": "db", "configuration": moved}))).await;
    assert_eq!(s, 422, "the catcher is no database");
    let seen = caught.lock().expect("lock").clone();
    assert_eq!(seen, vec!["typed-again".to_owned()], "only the password typed for this server reached it");
    assert!(!seen.contains(&password("db")));
    scene.finish().await;
}

#[tokio::test]
async fn a_connection_moved_with_its_password_still_works() {
    let scene = Scene::new("api", "moved", "create table users (id bigint primary key)").await;
    let other = crate::support::TestDb::new().await;
    let conn = pg_connection(&scene.api, "two", &other.name).await;
    let mut moved = config("localhost", 5432, &scene.data.name);
    moved["password"] = json!(password("two"));
    let updated = scene
        .api
        .ok("PUT", &format!("/api/connections/{conn}"), Some(json!({"name": "two", "configuration": moved})))
        .await;
    assert_eq!(updated["configuration"]["hostname"], "localhost");
    other.drop_now().await;
    scene.finish().await;
}
