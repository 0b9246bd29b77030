//! Encryption-key rotation: connections sealed under an old key keep working while it is a
//! previous key, `syncline secrets rotate` moves them to the current key, and a process without
//! the right key answers a clear error.

use std::time::Duration;

use serde_json::json;

use crate::support::{Install, Scene, model_and_sync, password, pg_connection, run_sync};

const TIMEOUT: Duration = Duration::from_secs(60);

/// `ENCRYPTION_KEY` and, when there are any, `PREVIOUS_ENCRYPTION_KEYS`.
fn keys(current: &str, previous: &[&str]) -> Vec<(String, String)> {
    let mut env = vec![("ENCRYPTION_KEY".to_owned(), current.to_owned())];
    if !previous.is_empty() {
        env.push(("PREVIOUS_ENCRYPTION_KEYS".to_owned(), previous.join(",")));
    }
    env
}

/// Stops the scene's process and starts it again with other keys.
async fn restart(scene: &mut Scene, current: &str, previous: &[&str]) {
    scene.process.terminate();
    scene.install.extra_env = keys(current, previous);
    scene.process = scene.install.spawn("api,worker").await;
    scene.api = scene.api.at(&scene.process);
}

/// The stored `connections.secrets`, by connection id.
async fn sealed(install: &Install) -> Vec<(String, Vec<u8>)> {
    let rows = install.db.client().await.query("select id::text, secrets from connections order by id", &[]).await;
    rows.expect("sealed secrets").iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Both connections pass their test and the sync between them completes (API and worker).
async fn usable(scene: &Scene, connections: &[&str], sync_id: &str) {
    for conn in connections {
        scene.api.ok("POST", "/api/connections/test", Some(json!({"connection_id": conn}))).await;
    }
    let run = run_sync(&scene.api, sync_id, TIMEOUT).await;
    assert_eq!(run["status"], "completed", "{run}");
}

#[tokio::test]
async fn rotation_moves_secrets_to_the_current_key() {
    let (a, b) = ("encryption-key-a", "encryption-key-b");
    let mut install = Install::new().await;
    install.extra_env = keys(a, &[]);
    let mut scene = Scene::with(
        install,
        "api,worker",
        "rotate",
        "create table people (id bigint primary key, email text);
         insert into people select g, 'p' || g || '@x.io' from generate_series(1, 5) g;
         create table copy (id bigint primary key, email text);",
    )
    .await;
    let source = scene.conn.clone();
    let target = pg_connection(&scene.api, "copy", &scene.data.name).await;
    let connections = [source.as_str(), target.as_str()];
    let (_, sync_id) = model_and_sync(
        &scene.api,
        &source,
        &target,
        "select id, email from people",
        "public.copy",
        &["email"],
        "updateOrCreate",
    )
    .await;
    usable(&scene, &connections, &sync_id).await;
    let under_a = sealed(&scene.install).await;
    assert_eq!(under_a.len(), 2);
    // An organization's OIDC client secret is sealed too, and never answered.
    let sso = json!({"name": "sso", "client_id": "cid", "client_secret": "oidc-client-secret"});
    let org = scene.install.partner(&scene.process).ok("POST", "/api/organizations", Some(sso)).await;
    assert!(!org.to_string().contains("oidc-client-secret") && org["client_id"] == "cid", "{org}");
    let stored = scene
        .install
        .db
        .client()
        .await
        .query_one("select client_secret from organizations where name = 'sso'", &[])
        .await;
    let stored: Vec<u8> = stored.expect("organization").get(0);
    assert!(!stored.windows(18).any(|w| w == b"oidc-client-secret"), "the client secret is stored encrypted");

    restart(&mut scene, b, &[a]).await;
    usable(&scene, &connections, &sync_id).await;

    scene.install.extra_env = keys(b, &[]);
    let (ok, _, stderr) = scene.install.command(&["secrets", "rotate"]);
    assert!(!ok, "a secret no key opens aborts the rotation");
    assert!(
        stderr.contains(&format!("connections.secrets of row {} cannot be decrypted", under_a[0].0))
            && stderr.contains("PREVIOUS_ENCRYPTION_KEYS"),
        "names the first row and the variable to set: {stderr}"
    );
    assert_eq!(sealed(&scene.install).await, under_a, "an aborted rotation changes nothing");

    scene.install.extra_env = keys(b, &[a]);
    for _ in 0..2 {
        let out = scene.install.run(&["secrets", "rotate"]);
        assert_eq!(out.trim(), "re-encrypted 3 secrets with the current key");
    }
    let under_b = sealed(&scene.install).await;
    assert!(under_b.iter().zip(&under_a).all(|(b, a)| b.0 == a.0 && b.1 != a.1), "every secret was re-sealed");
    let stored: Vec<&[u8]> = under_a.iter().chain(&under_b).map(|(_, bytes)| bytes.as_slice()).collect();
    for secret in [password("db"), password("copy")] {
        let leaked = stored.iter().any(|bytes| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        assert!(!leaked, "{secret} must be stored encrypted");
    }

    restart(&mut scene, b, &[]).await;
    usable(&scene, &connections, &sync_id).await;

    restart(&mut scene, a, &[]).await;
    let (status, body) = scene.api.send("POST", "/api/connections/test", Some(json!({"connection_id": source}))).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("stored credentials cannot be read")
            && body["key"] == "unprocessable_entity",
        "{body}"
    );
    let run = run_sync(&scene.api, &sync_id, TIMEOUT).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["errors"].to_string().contains("could not be decrypted"), "{run}");
    scene.finish().await;
}
