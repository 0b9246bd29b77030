//! `s3://` payload paths against a real S3-compatible server (moto, from PyPI).

use std::time::Duration;

use bytes::Bytes;
use syncline_connectors::moto::Moto;
use syncline_core::payload::PayloadStore;

use crate::support::{Install, Scene, model_and_sync, run_sync};

/// A payload URL on `moto`, with its credentials in the query as the payload store takes them.
fn s3_url(moto: &Moto, bucket: &str) -> String {
    format!("{}&access_key_id=test&secret_access_key=test", moto.url(bucket, "payloads"))
}

#[tokio::test]
async fn s3_payloads_round_trip() {
    let Some(moto) = Moto::start().await else { return };
    moto.create_bucket("roundtrip").await;
    let store = PayloadStore::open(&s3_url(&moto, "roundtrip")).expect("open s3 store");
    store.put("a/1.bin", Bytes::from_static(b"first")).await.expect("put");
    store.put("a/2.bin", Bytes::from_static(b"second")).await.expect("put");
    assert_eq!(store.get("a/2.bin").await.expect("get"), Bytes::from_static(b"second"));
    store.delete_prefix("a").await.expect("delete");
    assert_eq!(store.get_optional("a/1.bin").await.expect("get"), None);
    let listing = moto.listing("roundtrip").await;
    assert!(!listing.contains("payloads/a/"), "deleted: {listing}");
}

#[tokio::test]
async fn a_sync_runs_with_payloads_on_s3() {
    let Some(moto) = Moto::start().await else { return };
    moto.create_bucket("executions").await;
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
    let listing = moto.listing("executions").await;
    assert!(
        listing.contains(&format!("payloads/syncs/{sync_id}/snapshots/")),
        "the diff snapshot lives in S3: {listing}"
    );
    let copied: i64 = scene.data.client().await.query_one("select count(*) from dst", &[]).await.expect("count").get(0);
    assert_eq!(copied, 5000);
    scene.finish().await;
}
