//! `s3://` payload paths against a real S3-compatible server (moto, from PyPI).

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use syncline_core::payload::PayloadStore;

use crate::support::{Install, Scene, model_and_sync, run_sync};

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moto_server` on a free port, or returns `None` (skip) outside CI when it is absent.
async fn moto() -> Option<Moto> {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let binary =
        std::env::var("MOTO_SERVER").map(Into::into).unwrap_or_else(|_| workspace.join(".venv/bin/moto_server"));
    if !binary.exists() {
        assert!(std::env::var_os("CI").is_none(), "{} is missing: run scripts/python-env.sh", binary.display());
        eprintln!("skipping: {} is missing (run scripts/python-env.sh)", binary.display());
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{endpoint}/")).await.is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(Moto { child, endpoint })
}

async fn create_bucket(moto: &Moto, bucket: &str) {
    let response =
        reqwest::Client::new().put(format!("{}/{bucket}", moto.endpoint)).send().await.expect("create bucket");
    assert!(response.status().is_success(), "create bucket: {}", response.status());
}

fn s3_url(moto: &Moto, bucket: &str) -> String {
    format!(
        "s3://{bucket}/payloads?region=eu-west-1&endpoint={}&allow_http=true&access_key_id=test&secret_access_key=test",
        moto.endpoint
    )
}

#[tokio::test]
async fn s3_payloads_round_trip() {
    let Some(moto) = moto().await else { return };
    create_bucket(&moto, "roundtrip").await;
    let store = PayloadStore::open(&s3_url(&moto, "roundtrip")).expect("open s3 store");
    store.put("a/1.bin", Bytes::from_static(b"first")).await.expect("put");
    store.put("a/2.bin", Bytes::from_static(b"second")).await.expect("put");
    assert_eq!(store.get("a/2.bin").await.expect("get"), Bytes::from_static(b"second"));
    store.delete_prefix("a").await.expect("delete");
    assert_eq!(store.get_optional("a/1.bin").await.expect("get"), None);
    let listing = reqwest::get(format!("{}/roundtrip?list-type=2", moto.endpoint))
        .await
        .expect("list")
        .text()
        .await
        .expect("body");
    assert!(!listing.contains("payloads/a/"), "deleted: {listing}");
}

#[tokio::test]
async fn a_sync_runs_with_payloads_on_s3() {
    let Some(moto) = moto().await else { return };
    create_bucket(&moto, "executions").await;
    let mut install = Install::new().await;
    install.payload_url = s3_url(&moto, "executions");
    let scene = Scene::with(
        install,
        "api,worker",
        "s3",
        "create table src (id bigint primary key, email text);
             insert into src select g, 'u' || g || '@x.io' from generate_series(1, 5000) g;
             create table dst (id bigint primary key, email text);",
    )
    .await;
    let (api, conn) = (scene.api.clone(), scene.conn.clone());
    let (_, sync_id) =
        model_and_sync(&api, &conn, &conn, "select id, email from src", "public.dst", &["email"], "updateOrCreate")
            .await;
    let run = run_sync(&api, &sync_id, Duration::from_secs(60)).await;
    assert_eq!((run["status"].as_str(), run["counts"]["insert"].as_i64()), (Some("completed"), Some(5000)), "{run}");
    let listing = reqwest::get(format!("{}/executions?list-type=2", moto.endpoint))
        .await
        .expect("list")
        .text()
        .await
        .expect("body");
    assert!(
        listing.contains(&format!("payloads/syncs/{sync_id}/snapshots/")),
        "the diff snapshot lives in S3: {listing}"
    );
    let copied: i64 = scene.data.client().await.query_one("select count(*) from dst", &[]).await.expect("count").get(0);
    assert_eq!(copied, 5000);
    scene.finish().await;
}
