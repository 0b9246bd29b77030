//! The admin CLI and the health check.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value as Json;

use crate::support::{Api, Install};

#[tokio::test]
async fn provisioning_is_idempotent_and_minted_keys_work() {
    let install = Install::new().await;
    let args =
        ["workspaces", "provision", "--name", "Acme", "--users", "a@acme.io,b@acme.io", "--domain", "acme.io", "--yes"];
    let first: Json = serde_json::from_str(&install.run(&args)).expect("json");
    let again: Json = serde_json::from_str(&install.run(&args)).expect("json");
    assert_eq!(first["organization_id"], again["organization_id"], "the same organization");
    assert_eq!(first["users"], again["users"], "the same users");
    assert_eq!(first["users"].as_array().map(Vec::len), Some(2));
    let migrate = install.run(&["migrate"]);
    assert_eq!(migrate.trim(), "database is up to date");

    let key = install.run(&["keys", "create", "--organization", "Acme", "--user", "B@acme.io"]);
    let process = install.spawn("api").await;
    let me = Api::new(process.base(), key.trim()).ok("GET", "/api/me", None).await;
    assert_eq!((me["email"].as_str(), me["is_user"].as_bool()), (Some("b@acme.io"), Some(true)));
    assert_eq!(me["organization_id"], first["organization_id"]);
    drop(process);
    install.finish().await;
}

#[tokio::test]
async fn status_is_503_while_redis_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start a private redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut install = Install::new().await;
    install.redis_url = format!("redis://127.0.0.1:{port}");
    let process = install.spawn("api").await;
    let status = |base: String| async move {
        let response = reqwest::get(format!("{base}/status.txt")).await.expect("status");
        (response.status().as_u16(), response.text().await.expect("body"))
    };
    assert_eq!(status(process.base()).await.0, 200);
    redis.kill().expect("stop redis");
    redis.wait().expect("reap redis");
    let (code, body) = status(process.base()).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("redis: down") && body.contains("database: ok"), "{body}");
    drop(process);
    install.finish().await;
}
