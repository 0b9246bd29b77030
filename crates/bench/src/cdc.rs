//! `syncline-bench cdc`: change data capture, PostgreSQL → PostgreSQL. After the initial load,
//! a writer changes rows of the reference table at a steady rate (1,000 and 10,000 changes/s by
//! default) for a while; meanwhile the end-to-end lag (how far the destination's newest change is
//! behind the clock) is sampled. Printed per rate: the rate written, the rate applied, the lag's
//! median, 95th percentile and maximum, and how long after the writer stopped the destination
//! equalled the source (checksums compared).

use std::time::{Duration, Instant};

use crate::{
    bulk::BulkSync,
    harness::{Databases, Syncline, connect},
    verdict,
};
use anyhow::{bail, ensure};
use reqwest::Method;
use serde_json::json;

/// How often the writer commits a group of changes, and the lag is sampled.
const TICK: Duration = Duration::from_millis(100);
/// The longest wait for the destination to catch up once the writer stopped.
const CONVERGE_WITHIN: Duration = Duration::from_secs(120);

/// When the newest change a side holds was made.
const NEWEST_CHANGE: &str = "select extract(epoch from max(updated_at))::float8 from users";

/// What one rate's run measured.
struct Measured {
    written: u64,
    write_time: Duration,
    lags: Vec<Duration>,
    converged: Duration,
}

pub async fn run(rows: i64, rates: &[u64], seconds: u64, binary: &str) -> anyhow::Result<()> {
    println!("cdc benchmark: {rows}-row reference table, PostgreSQL → PostgreSQL, {seconds} s per rate, 1 worker");
    let dbs = Databases::prepare(rows).await?;
    let syncline = Syncline::launch(binary, &dbs, (1, 2)).await?;
    let source = syncline.postgres_connection("source", &dbs.source_url, true).await?;
    let destination = syncline.postgres_connection("destination", &dbs.destination_url, false).await?;
    let sync = BulkSync::create(&syncline, &source, &destination).await?;
    sync.run(&dbs, json!({})).await?;
    wait_for_capture(&syncline, &sync.id).await?;

    let mut results = Vec::new();
    for &rate in rates {
        let measured = measure(&dbs, rows, rate, Duration::from_secs(seconds)).await?;
        results.push((rate, measured));
    }
    let same = dbs.checksum(&dbs.source_url).await? == dbs.checksum(&dbs.destination_url).await?;
    let rss = syncline.worker_peak_rss_mb()?;
    drop(syncline);

    println!();
    println!(
        "{:>14} {:>14} {:>14} {:>10} {:>10} {:>10} {:>22}",
        "target/s", "written/s", "applied/s", "lag p50", "lag p95", "lag max", "converged after stop"
    );
    for (rate, m) in &results {
        let mut lags = m.lags.clone();
        lags.sort();
        let at = |q: f64| lags.get(((lags.len() as f64 - 1.0) * q) as usize).copied().unwrap_or_default();
        let written = m.written as f64 / m.write_time.as_secs_f64();
        let applied = m.written as f64 / (m.write_time + m.converged).as_secs_f64();
        println!(
            "{rate:>14} {written:>14.0} {applied:>14.0} {:>8.0}ms {:>8.0}ms {:>8.0}ms {:>20.0}ms",
            at(0.5).as_secs_f64() * 1000.0,
            at(0.95).as_secs_f64() * 1000.0,
            at(1.0).as_secs_f64() * 1000.0,
            m.converged.as_secs_f64() * 1000.0
        );
    }
    println!();
    println!("worker RSS:   {rss} MB peak");
    println!("checksums:    source {} destination {}", if same { "=" } else { "≠" }, verdict(same));
    dbs.drop_all().await?;
    ensure!(same, "the destination does not equal the source");
    Ok(())
}

/// Waits until the sync's change capture runs.
async fn wait_for_capture(syncline: &Syncline, sync_id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = syncline.call(Method::GET, &format!("bulk/syncs/{sync_id}/status"), json!(null)).await?;
        if status["ingestion_status"]["is_running"] == json!(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the capture did not start: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Changes `rate` rows a second for `duration`, sampling the lag, then waits for the
/// destination to catch up.
async fn measure(dbs: &Databases, rows: i64, rate: u64, duration: Duration) -> anyhow::Result<Measured> {
    let (writer, probe, source) =
        (connect(&dbs.source_url).await?, connect(&dbs.destination_url).await?, connect(&dbs.source_url).await?);
    let per_tick = (rate as f64 * TICK.as_secs_f64()).round().max(1.0) as i64;
    let update = writer
        .prepare(
            "update users set score = score + 1, updated_at = clock_timestamp()
             where id > $1 and id <= $2",
        )
        .await?;
    // Lag: the clock minus the newest change the destination holds (or the start, before any).
    let begun: f64 = probe.query_one("select extract(epoch from clock_timestamp())::float8", &[]).await?.get(0);
    let newest = "select extract(epoch from clock_timestamp())::float8
                    - greatest(extract(epoch from max(updated_at))::float8, $1)
                  from users";
    let started = Instant::now();
    let sampling = async {
        let mut lags = Vec::new();
        while started.elapsed() < duration {
            let lag: f64 = probe.query_one(newest, &[&begun]).await?.get(0);
            lags.push(Duration::from_secs_f64(lag.max(0.0)));
            tokio::time::sleep(TICK).await;
        }
        anyhow::Ok(lags)
    };
    let writing = async {
        let (mut written, mut next) = (0u64, 0i64);
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while started.elapsed() < duration {
            ticks.tick().await;
            let from = next % rows;
            written += writer.execute(&update, &[&from, &(from + per_tick).min(rows)]).await?;
            next += per_tick;
        }
        anyhow::Ok(written)
    };
    let (lags, written) = tokio::try_join!(sampling, writing)?;
    let write_time = started.elapsed();
    let stopped = Instant::now();
    let target: f64 = source.query_one(NEWEST_CHANGE, &[]).await?.get(0);
    loop {
        let applied: f64 = probe.query_one(NEWEST_CHANGE, &[]).await?.get(0);
        if applied >= target {
            break;
        }
        ensure!(stopped.elapsed() < CONVERGE_WITHIN, "the destination did not catch up in {CONVERGE_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Measured { written, write_time, lags, converged: stopped.elapsed() })
}
