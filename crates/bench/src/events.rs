//! `syncline-bench events`: how many events Syncline's `/v1` tracking API accepts durably (each
//! answered 200 only once committed), in batches of 100 (`/v1/batch`) and one per request
//! (`/v1/track`), beside the same rows `COPY`ed into PostgreSQL by a plain client in one binary
//! `COPY` (the physical limit here); then how long events sent at a steady 5,000 a second take
//! from acceptance to being queryable in a route's warehouse ([`delivery`]). Targets: 25,000
//! events/s in batches, 5,000 requests/s single and a p99 under 2 s, on this 2-core machine.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, ensure};
use reqwest::Method;
use serde_json::{Value as Json, json};
use tokio_postgres::{NoTls, binary_copy::BinaryCopyInWriter, types::Type};

use crate::{
    delivery,
    harness::{Databases, Syncline},
    verdict,
};

/// Events per `/v1/batch` request, as the Python clients send them.
const BATCH: usize = 100;
/// Requests in flight at once.
const CONCURRENCY: usize = 32;
/// How long events are sent at a steady rate to measure delivery.
const STEADY_SECONDS: u64 = 20;

/// Event `n` of request `request`, shaped like a server library's track.
fn event(request: usize, n: usize) -> Json {
    json!({
        "type": "track", "event": "Order Completed", "userId": format!("user-{}", n % 1000),
        "messageId": format!("r{request}-{n}"), "timestamp": "2026-11-22T05:48:04.542Z",
        "properties": {"revenue": 12.5, "plan": "pro", "items": n % 7},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "10.0.0.1"},
    })
}

/// Sends `requests` bodies made by `body` to `url`, `CONCURRENCY` at a time; returns the time.
async fn send(
    url: String,
    key: String,
    requests: usize,
    body: impl Fn(usize) -> Json + Send + Sync + 'static,
) -> anyhow::Result<Duration> {
    let (http, next, body) = (reqwest::Client::new(), Arc::new(AtomicUsize::new(0)), Arc::new(body));
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (http, next, body, url, key) = (http.clone(), next.clone(), body.clone(), url.clone(), key.clone());
        senders.spawn(async move {
            loop {
                let request = next.fetch_add(1, Ordering::Relaxed);
                if request >= requests {
                    return anyhow::Ok(());
                }
                let response = http.post(&url).basic_auth(&key, Some("")).json(&body(request)).send().await?;
                ensure!(response.status() == 200, "{url}: {}", response.text().await.unwrap_or_default());
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// The same events `COPY`ed by a plain client into a table shaped like the event store's.
async fn copy_baseline(dbs: &Databases, events: usize) -> anyhow::Result<Duration> {
    let (client, connection) = tokio_postgres::connect(&dbs.baseline_url, NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "drop table if exists events; create table events (seq bigint not null, source_id uuid not null,
                message_id text not null, received_at timestamptz not null, message bytea not null);
             create index on events using brin (seq)",
        )
        .await?;
    let source = uuid::Uuid::new_v4();
    let started = Instant::now();
    let sink = client.copy_in("copy events from stdin (format binary)").await?;
    let types = [Type::INT8, Type::UUID, Type::TEXT, Type::TIMESTAMPTZ, Type::BYTEA];
    let mut copy = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for n in 0..events {
        let body = event(n / BATCH, n);
        let message = serde_json::to_vec(&body)?;
        let id = body["messageId"].as_str().context("messageId")?.to_owned();
        copy.as_mut().write(&[&(n as i64), &source, &id, &SystemTime::now(), &message]).await?;
    }
    copy.finish().await?;
    Ok(started.elapsed())
}

pub async fn run(events: usize, binary: &str) -> anyhow::Result<()> {
    println!("events benchmark: {events} events, /v1/batch of {BATCH} and single /v1/track, {CONCURRENCY} in flight");
    let dbs = Databases::prepare(1_000).await?;
    let syncline = Syncline::launch(binary, &dbs, (1, 2)).await?;
    let source = syncline.call(Method::POST, "event_sources", json!({"name": "bench"})).await?;
    let key = source["write_key"].as_str().context("write key")?.to_owned();
    let base = syncline.base().to_owned();

    let batches = events / BATCH;
    let batched = send(format!("{base}/v1/batch"), key.clone(), batches, |request| {
        json!({"batch": (0..BATCH).map(|n| event(request, request * BATCH + n)).collect::<Vec<_>>(),
               "sentAt": "2026-11-22T05:48:05.042Z"})
    })
    .await?;
    let singles = events / 10;
    let single =
        send(format!("{base}/v1/track"), key, singles, move |request| event(batches + request, request)).await?;
    let stored: i64 = {
        let state = dbs.state().await?;
        let partitions = state.query("select id from event_partitions", &[]).await?;
        let mut total = 0;
        for partition in partitions {
            let table = format!("events_{}", partition.get::<_, i64>(0));
            total += state.query_one(&format!("select count(*) from {table}"), &[]).await?.get::<_, i64>(0);
        }
        total
    };
    let latencies = delivery::measure(&syncline, &dbs, STEADY_SECONDS).await?;
    let rss = syncline.api_peak_rss_mb()?;
    let worker_rss = syncline.worker_peak_rss_mb()?;
    drop(syncline);
    let copied = copy_baseline(&dbs, events).await?;
    dbs.drop_all().await?;

    let per_second = |n: usize, time: Duration| n as f64 / time.as_secs_f64();
    let (batched_rate, single_rate, copy_rate) =
        (per_second(batches * BATCH, batched), per_second(singles, single), per_second(events, copied));
    println!();
    println!("{:<60} {:>9} {:>16}", "", "time", "throughput");
    println!(
        "{:<60} {:>8.2}s {:>10.0} rows/s",
        "baseline: one binary COPY of the events",
        copied.as_secs_f64(),
        copy_rate
    );
    println!(
        "{:<60} {:>8.2}s {:>9.0} events/s",
        "syncline: /v1/batch, 100 events a request",
        batched.as_secs_f64(),
        batched_rate
    );
    println!(
        "{:<60} {:>8.2}s {:>7.0} requests/s",
        "syncline: /v1/track, one event a request",
        single.as_secs_f64(),
        single_rate
    );
    println!();
    println!(
        "batched:  {batched_rate:.0} events/s, {:.2}× the COPY's rate (target ≥ 25,000 events/s) {}",
        batched_rate / copy_rate,
        verdict(batched_rate >= 25_000.0)
    );
    println!("single:   {single_rate:.0} requests/s (target ≥ 5,000) {}", verdict(single_rate >= 5_000.0));
    let (p50, p99) = (latencies.quantile(0.5), latencies.quantile(0.99));
    println!(
        "delivery: at a steady 5,000 events/s for {STEADY_SECONDS} s, acceptance → queryable p50 {} ms, p99 {} ms (target p99 < 2 s) {}",
        p50.as_millis(),
        p99.as_millis(),
        verdict(p99 < Duration::from_secs(2))
    );
    println!("api RSS:  {rss} MB peak (target < 256 MB) {}", verdict(rss < 256));
    println!("worker RSS: {worker_rss} MB peak (target < 256 MB) {}", verdict(worker_rss < 256));
    let sent = (batches * BATCH + singles) as i64;
    println!("stored:   {stored} of {sent} acknowledged events {}", verdict(stored == sent));
    ensure!(stored == sent, "{sent} events were acknowledged but {stored} are stored");
    Ok(())
}
