//! The delivery part of `syncline-bench events`: events sent at a steady rate (5,000 a second
//! by default, in requests of 50 every 10 ms) through a route into a PostgreSQL warehouse, and
//! for each the time from its acceptance (the 200) to its row being queryable there, found by
//! polling the warehouse every 10 ms for rows loaded since the last seen. Target: p99 under 2 s.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, ensure};
use reqwest::Method;
use serde_json::json;

use crate::harness::{Databases, Syncline, connect};

/// Events per request, and how often one is sent.
const PER_REQUEST: usize = 50;
const EVERY: Duration = Duration::from_millis(10);
/// How often the warehouse is asked for new rows.
const POLL: Duration = Duration::from_millis(10);

/// Acceptance → queryable times, sorted.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// The `q` quantile (0.5 for the median).
    pub fn quantile(&self, q: f64) -> Duration {
        let at = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[at]
    }
}

/// Sends `seconds` of events at a steady `PER_REQUEST / EVERY` rate to a fresh source routed to
/// the destination database, and measures each event's time to the warehouse.
pub async fn measure(syncline: &Syncline, dbs: &Databases, seconds: u64) -> anyhow::Result<Latencies> {
    let warehouse = connect(&dbs.destination_url).await?;
    // The table the route fills, made beforehand only to index the load time the poller reads.
    warehouse
        .batch_execute(
            "drop schema if exists steady cascade; create schema steady;
             create table steady.steady (id text primary key, uuid_ts timestamptz);
             create index on steady.steady (uuid_ts)",
        )
        .await?;
    let connection = syncline.postgres_connection("warehouse", &dbs.destination_url, false).await?;
    let source = syncline.call(Method::POST, "event_sources", json!({"name": "steady"})).await?;
    let source_id = source["id"].as_str().context("source")?;
    syncline
        .call(Method::POST, &format!("event_sources/{source_id}/routes"), json!({"connection_id": connection}))
        .await?;
    let key = source["write_key"].as_str().context("write key")?.to_owned();
    let accepted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let requests = (seconds * 1000 / EVERY.as_millis() as u64) as usize;
    let sender = {
        let (url, accepted) = (format!("{}/v1/batch", syncline.base()), accepted.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(EVERY);
            let mut sends = tokio::task::JoinSet::new();
            for request in 0..requests {
                tick.tick().await;
                let (http, url, key, accepted) = (http.clone(), url.clone(), key.clone(), accepted.clone());
                sends.spawn(async move {
                    let ids: Vec<String> = (0..PER_REQUEST).map(|n| format!("s{request}-{n}")).collect();
                    let batch: Vec<_> = ids
                        .iter()
                        .map(|id| {
                            json!({"type": "track", "event": "Tick", "userId": "u", "messageId": id,
                                         "properties": {"n": request}})
                        })
                        .collect();
                    let response =
                        http.post(&url).basic_auth(&key, Some("")).json(&json!({"batch": batch})).send().await?;
                    let at = Instant::now();
                    ensure!(response.status() == 200, "{}", response.text().await.unwrap_or_default());
                    accepted.lock().expect("accepted").extend(ids.into_iter().map(|id| (id, at)));
                    anyhow::Ok(())
                });
            }
            while let Some(sent) = sends.join_next().await {
                sent??;
            }
            anyhow::Ok(())
        })
    };
    let expected = requests * PER_REQUEST;
    let mut seen: HashMap<String, Instant> = HashMap::with_capacity(expected);
    let mut loaded_after: Option<SystemTime> = None;
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    while seen.len() < expected {
        ensure!(Instant::now() < deadline, "only {} of {expected} events reached the warehouse", seen.len());
        tokio::time::sleep(POLL).await;
        let rows = match loaded_after {
            Some(after) => {
                warehouse.query("select id, uuid_ts from steady.steady where uuid_ts > $1", &[&after]).await?
            }
            None => warehouse.query("select id, uuid_ts from steady.steady where uuid_ts is not null", &[]).await?,
        };
        let now = Instant::now();
        for row in rows {
            let loaded: SystemTime = row.get(1);
            loaded_after = loaded_after.max(Some(loaded));
            seen.entry(row.get(0)).or_insert(now);
        }
    }
    sender.await??;
    let accepted = std::mem::take(&mut *accepted.lock().expect("accepted"));
    let mut latencies: Vec<Duration> = seen
        .iter()
        .map(|(id, at)| accepted.get(id).map_or(Duration::ZERO, |sent| at.saturating_duration_since(*sent)))
        .collect();
    latencies.sort_unstable();
    Ok(Latencies(latencies))
}
