//! Event streams under faults: a load generator's events survive a `kill -9` of the api and of
//! the worker (every event answered 200 is in the warehouse exactly once, none answered 503 is),
//! and a destination that is down delays only its own route.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_json::{Value as Json, json};

use crate::{
    event_delivery::{route, rows, send},
    ingest::source,
    support::{Install, Scene, pg_config, server_address},
};

/// Events the load test sends (`SYNCLINE_EVENTS_LOAD`, 200,000 by default), in batches of 100.
fn load_size() -> usize {
    std::env::var("SYNCLINE_EVENTS_LOAD").ok().and_then(|n| n.parse().ok()).unwrap_or(200_000)
}

/// What the generator heard of each event.
#[derive(Default)]
struct Heard {
    acknowledged: HashSet<String>,
    refused: HashSet<String>,
}

/// Sends batch `n` (100 tracks) to whichever api `base` names until one answers 200. A 503's
/// events were refused: the batch is sent again under new ids. A request that got no answer
/// (the api was killed) may or may not have been stored: it is sent again as it was, as a
/// producer would, and the warehouse keeps each id once.
async fn send_batch(http: &reqwest::Client, base: &Mutex<String>, key: &str, n: usize, heard: &Mutex<Heard>) {
    for attempt in 0.. {
        let ids: Vec<String> = (0..100).map(|i| format!("b{n}-{i}-try{attempt}")).collect();
        let batch: Vec<Json> = ids
            .iter()
            .map(|id| json!({"type": "track", "event": "Load", "userId": format!("u{}", n % 50), "messageId": id}))
            .collect();
        loop {
            let url = format!("{}/v1/batch", base.lock().expect("base").clone());
            let sent = http.post(url).basic_auth(key, Some("")).json(&json!({"batch": batch})).send().await;
            match sent.map(|r| r.status().as_u16()) {
                Ok(200) => {
                    heard.lock().expect("heard").acknowledged.extend(ids);
                    return;
                }
                Ok(503) => {
                    heard.lock().expect("heard").refused.extend(ids);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    break;
                }
                Ok(status) => panic!("batch {n} answered {status}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

#[tokio::test]
async fn every_event_answered_200_is_delivered_once_through_a_killed_api_and_worker() {
    let install = Install::new().await;
    let mut scene = Scene::with(install, "api,scheduler", "eventload", "select 1").await;
    let mut worker = scene.install.spawn("worker").await;
    let (server, key) = source(&scene, "server").await;
    let loaded = route(&scene, &server, json!({"connection_id": scene.conn, "layout": "segment"})).await;
    let batches = load_size() / 100;
    let base = Arc::new(Mutex::new(scene.process.base()));
    let heard = Arc::new(Mutex::new(Heard::default()));
    let generator = {
        let (base, heard, key) = (base.clone(), heard.clone(), key.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let sends = (0..batches).map(|n| {
                let (http, base, heard, key) = (&http, &base, &heard, &key);
                async move { send_batch(http, base, key, n, heard).await }
            });
            futures::stream::iter(sends).buffer_unordered(8).collect::<Vec<()>>().await;
        })
    };
    let acknowledged = || heard.lock().expect("heard").acknowledged.len();
    let wait_until = async |events: usize| {
        while acknowledged() < events {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_until(load_size() / 3).await;
    scene.process.kill();
    scene.process = scene.install.spawn("api,scheduler").await;
    *base.lock().expect("base") = scene.process.base();
    scene.api = scene.api.at(&scene.process);
    wait_until(2 * load_size() / 3).await;
    worker.kill();
    worker = scene.install.spawn("worker").await;
    generator.await.expect("the generator ran");

    let heard = std::mem::take(&mut *heard.lock().expect("heard"));
    assert_eq!(heard.acknowledged.len(), load_size(), "every batch was answered 200 at last");
    let warehouse = scene.data.client().await;
    let started = Instant::now();
    loop {
        let sql = "select count(*), count(distinct id) from server.tracks";
        let counted = warehouse.query_one(sql, &[]).await.map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
        if let Ok((rows, distinct)) = counted {
            assert_eq!(rows, distinct, "no event twice");
            if rows as usize >= heard.acknowledged.len() {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(240), "delivery did not catch up: {counted:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ids: HashSet<String> =
        warehouse.query("select id from server.tracks", &[]).await.expect("ids").iter().map(|r| r.get(0)).collect();
    let missing = heard.acknowledged.difference(&ids).count();
    assert_eq!(missing, 0, "every event answered 200 is delivered");
    assert_eq!(ids.len(), heard.acknowledged.len(), "and nothing else: a request without an answer was sent again");
    assert!(heard.refused.is_disjoint(&ids), "no event answered 503 was stored");
    let counts = scene
        .api
        .ok("GET", &format!("/api/event_sources/{server}/routes/{}", loaded["id"].as_str().expect("id")), None)
        .await["counts"]
        .clone();
    assert_eq!(counts["delivered"], ids.len(), "{counts}");
    assert_eq!(counts["dead_lettered"], 0, "{counts}");
    drop(worker);
    scene.finish().await;
}

/// How long the destination of the outage test is down (`SYNCLINE_EVENTS_OUTAGE_SECONDS`, 60 by
/// default).
fn outage() -> Duration {
    let seconds = std::env::var("SYNCLINE_EVENTS_OUTAGE_SECONDS").ok().and_then(|n| n.parse().ok()).unwrap_or(60);
    Duration::from_secs(seconds)
}

/// The lag of each route of `source` (by route id).
async fn lags(scene: &Scene, source: &str) -> Vec<(String, f64)> {
    let activity = scene.api.ok("GET", &format!("/api/event_sources/{source}/activity?sample=0"), None).await;
    let routes = activity["routes"].as_array().expect("routes").iter();
    routes.map(|r| (r["id"].as_str().expect("id").to_owned(), r["lag_seconds"].as_f64().expect("lag"))).collect()
}

#[tokio::test]
async fn a_destination_that_is_down_delays_only_its_own_route() {
    let scene = Scene::new("api,worker,scheduler", "outage", "select 1").await;
    let (server, key) = source(&scene, "server").await;
    let healthy = route(&scene, &server, json!({"connection_id": scene.conn, "schema": "up"})).await;
    // A warehouse whose database does not exist yet: every connection fails until it is made.
    let later = format!("{}_later", scene.data.name);
    let (host, port) = server_address();
    let config = pg_config(&host, port, &later, "later");
    let body = json!({"name": "later", "type": "postgresql", "configuration": config, "validate": false});
    let down = scene.api.ok("POST", "/api/connections", Some(body)).await;
    let stalled = route(&scene, &server, json!({"connection_id": down["id"], "schema": "down"})).await;
    let (healthy_id, stalled_id) = (healthy["id"].as_str().expect("id"), stalled["id"].as_str().expect("id"));

    let started = Instant::now();
    let (mut sent, mut worst_healthy, mut stalled_lag) = (0, 0.0_f64, 0.0_f64);
    while started.elapsed() < outage() {
        let batch: Vec<Json> = (0..20)
            .map(|i| json!({"type": "track", "event": "Tick", "userId": "u", "messageId": format!("t{sent}-{i}")}))
            .collect();
        send(&scene, &key, json!(batch)).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
        for (id, lag) in lags(&scene, &server).await {
            match id == healthy_id {
                true => worst_healthy = worst_healthy.max(lag),
                false => stalled_lag = lag,
            }
        }
    }
    assert!(worst_healthy < 3.0, "the healthy route kept up: its lag reached {worst_healthy} s");
    let down_for = outage().as_secs_f64();
    assert!(stalled_lag > down_for * 0.8, "the stalled route waited: {stalled_lag} s of {down_for} s");

    let admin = crate::support::connect(&crate::support::server_url()).await;
    admin.batch_execute(&format!("create database {later}")).await.expect("the destination comes back");
    let events = 20 * sent;
    let recovered = Instant::now();
    loop {
        let lag = lags(&scene, &server).await.into_iter().find(|(id, _)| id == stalled_id).map(|(_, lag)| lag);
        if lag == Some(0.0) {
            break;
        }
        assert!(recovered.elapsed() < Duration::from_secs(90), "the route did not catch up: lag {lag:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let warehouse = crate::support::connect(&crate::support::database_url(&later)).await;
    let counted: (i64, i64) = warehouse
        .query_one("select count(*), count(distinct id) from down.server", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("the stalled route's table");
    assert_eq!(counted, (events as i64, events as i64), "every event once, after the outage");
    assert_eq!(rows(&scene, "select count(*) as n from up.server").await[0]["n"], events);
    drop(warehouse);
    crate::support::drop_database(&admin, &later).await;
    scene.finish().await;
}

#[tokio::test]
async fn delivered_partitions_past_the_retention_are_dropped_whole() {
    let mut install = Install::new().await;
    install.extra_env.push(("EVENTS_RETENTION_HOURS".into(), "0".into()));
    let mut scene = Scene::with(install, "api,worker,scheduler", "retention", "select 1").await;
    let (server, key) = source(&scene, "server").await;
    let kept = route(&scene, &server, json!({"connection_id": scene.conn})).await;
    let track = |id: &str| json!({"type": "track", "event": "E", "userId": "u", "messageId": id});
    send(&scene, &key, json!([track("old-1"), track("old-2")])).await;
    crate::event_delivery::settled(&scene, &server, &kept, 2).await;
    // A new api process writes a partition of its own: the first is closed.
    scene.process.kill();
    scene.process = scene.install.spawn("api,worker,scheduler").await;
    scene.api = scene.api.at(&scene.process);
    send(&scene, &key, json!([track("new-1")])).await;
    crate::event_delivery::settled(&scene, &server, &kept, 3).await;
    let state = scene.install.db.client().await;
    let started = Instant::now();
    loop {
        let partitions: Vec<i64> = state
            .query("select id from event_partitions", &[])
            .await
            .expect("partitions")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if partitions.len() == 1 {
            let tables: i64 = state
                .query_one("select count(*) from pg_tables where tablename like 'events\\_%'", &[])
                .await
                .expect("tables")
                .get(0);
            assert_eq!(tables, 1, "the delivered partition's table is gone, the open one kept");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "partitions still {partitions:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let activity = scene.api.ok("GET", &format!("/api/event_sources/{server}/activity"), None).await;
    assert_eq!(activity["accepted"], 3, "a dropped partition's events stay counted, those its killed writer had not");
    let path = format!("/api/event_sources/{server}/routes/{}", kept["id"].as_str().expect("id"));
    scene.api.ok("POST", &format!("{path}/replay"), Some(json!({"from": "2000-01-01T00:00:00Z"}))).await;
    let counts = crate::event_delivery::settled(&scene, &server, &kept, 4).await["counts"].clone();
    assert_eq!(counts["deduplicated"], 1, "a replay has only what the store kept: {counts}");
    assert_eq!(rows(&scene, "select count(*) as n from server.server").await[0]["n"], 3, "delivered rows stay");
    scene.finish().await;
}
