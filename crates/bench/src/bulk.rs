//! `syncline-bench bulk-sync`: a bulk sync of the reference table, PostgreSQL → PostgreSQL, timed
//! beside the physical limits measured in the same run:
//! - full run: `COPY … TO STDOUT (FORMAT binary) | COPY … FROM STDIN (FORMAT binary)` into an
//!   empty table (the pipe); the target is at least 0.9× its throughput;
//! - 1%-changed incremental run: the same pipe of the changed rows into a staging table plus
//!   `INSERT … ON CONFLICT`; the target is within 1.2× of it.
//!
//! `--workers N` loads with N worker processes (the table cut into partitions), each loading
//! `--slots N` partitions at a time (default 2: `WORKER_CONCURRENCY`'s default, every slot the
//! organization's).

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::{
    baseline::Baselines,
    harness::{Databases, Syncline},
    median, rate,
    source::Source,
    verdict,
};

/// A bulk sync of `users` with `updated_at` as its tracking field.
pub(crate) struct BulkSync<'a> {
    pub(crate) syncline: &'a Syncline,
    pub(crate) id: String,
}

impl<'a> BulkSync<'a> {
    /// Creates a replicate bulk sync of `public.users` with `updated_at` as its tracking field.
    pub(crate) async fn create(syncline: &'a Syncline, source: &str, destination: &str) -> anyhow::Result<Self> {
        let created = syncline
            .call(
                Method::POST,
                "bulk/syncs",
                json!({
                    "name": "bench", "source_connection_id": source, "destination_connection_id": destination,
                    "destination_configuration": {"schema": "public"}, "mode": "replicate", "active": true,
                    "default_schedule": {"frequency": "manual"},
                    "schemas": [{"id": "public.users", "tracking_field": "updated_at"}],
                }),
            )
            .await?;
        Ok(Self { syncline, id: created["id"].as_str().context("bulk sync")?.to_owned() })
    }

    /// Starts a run with `options` and waits for it; returns its time and the execution. The
    /// time is the start call's round trip plus the run's own, from its creation to its
    /// completion as Syncline recorded them: polling for the end adds no delay, and polls
    /// seldom enough not to slow the run.
    pub(crate) async fn run(&self, dbs: &Databases, options: Json) -> anyhow::Result<(Duration, Json)> {
        let started = Instant::now();
        let path = format!("bulk/syncs/{}/executions", self.id);
        let execution = self.syncline.call(Method::POST, &path, options).await?;
        let answered = started.elapsed();
        let id = execution["id"].as_str().context("execution")?.to_owned();
        loop {
            let e = self.syncline.call(Method::GET, &format!("{path}/{id}"), Json::Null).await?;
            match e["status"].as_str() {
                Some("completed") => {
                    let ran: f64 = dbs
                        .state()
                        .await?
                        .query_one(
                            "select extract(epoch from completed_at - created_at)::float8 from executions where id = $1",
                            &[&id.parse::<uuid::Uuid>()?],
                        )
                        .await?
                        .get(0);
                    return Ok((answered + Duration::from_secs_f64(ran), e));
                }
                Some("errors" | "failed" | "canceled" | "interrupted") => bail!("execution ended badly: {e}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// Where an execution's time went, from the timestamps Syncline recorded: waiting for a
/// worker, planning, loading the partitions, settling the schema, and finishing.
async fn phases(dbs: &Databases, execution: &Json) -> anyhow::Result<String> {
    let id: uuid::Uuid = execution["id"].as_str().context("execution id")?.parse()?;
    let row = dbs
        .state()
        .await?
        .query_one(
            "select (extract(epoch from s.started_at - e.created_at) * 1000)::float8,
                    (extract(epoch from min(p.started_at) - s.started_at) * 1000)::float8,
                    (extract(epoch from max(p.completed_at) - min(p.started_at)) * 1000)::float8,
                    (extract(epoch from s.completed_at - max(p.completed_at)) * 1000)::float8,
                    (extract(epoch from e.completed_at - s.completed_at) * 1000)::float8
             from executions e join bulk_schema_executions s on s.execution_id = e.id
             join bulk_partitions bp on bp.execution_id = e.id
             join executions p on p.kind = 'bulk_partition' and p.subject_id = bp.id
             where e.id = $1 group by e.id, s.started_at, s.completed_at",
            &[&id],
        )
        .await?;
    let ms = |i: usize| row.get::<_, Option<f64>>(i).unwrap_or(f64::NAN);
    Ok(format!(
        "queued + planned {:.0} ms, partitions picked up {:.0} ms, loaded {:.0} ms, settled {:.0} ms, finished {:.0} ms",
        ms(0),
        ms(1),
        ms(2),
        ms(3),
        ms(4)
    ))
}

/// Changes 1% of the rows, moving their tracking field an hour past the last run's (further
/// than the incremental lookback); returns how many.
async fn change_one_percent(dbs: &Databases, run: i64) -> anyhow::Result<u64> {
    let sql = format!(
        "update users set score = score + 1, updated_at = timestamptz '2030-01-01' + {run} * interval '1 hour'
         where id % 100 = {}",
        Databases::changed_remainder(run)
    );
    dbs.execute(&dbs.source_url, &sql).await
}

pub async fn run(rows: i64, runs: usize, binary: &str, (workers, slots): (usize, usize)) -> anyhow::Result<()> {
    println!(
        "bulk-sync benchmark: {rows} rows × 12 columns, PostgreSQL → PostgreSQL, {workers} worker process(es) \
         loading {slots} partition(s) at a time each, median of {runs} runs"
    );
    let dbs = Databases::prepare(rows).await?;
    println!("table: {}", dbs.table_source);
    let postgres = Source::parse("postgres")?;
    let baselines = Baselines { dbs: &dbs, source: &postgres };
    let (mut pipe, mut delta) = (Vec::new(), Vec::new());
    let syncline = Syncline::launch(binary, &dbs, (workers, slots)).await?;
    let source = syncline.postgres_connection("source", &dbs.source_url, false).await?;
    let destination = syncline.postgres_connection("destination", &dbs.destination_url, false).await?;
    let sync = BulkSync::create(&syncline, &source, &destination).await?;
    let (mut full, mut resync, mut incremental, mut partitions) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let mut full_cpu = Vec::new();
    let mut breakdown = [String::new(), String::new(), String::new()];
    // Each timing starts after a checkpoint, so no run pays for the writes of the one before;
    // baselines and Syncline take turns on the same changes.
    let checkpoint = || dbs.psql(&dbs.server_url, "checkpoint");
    for run in 0..runs {
        checkpoint().await?;
        pipe.push(baselines.copy_only().await?);
        // The full run loads an empty destination, as the pipe does.
        dbs.psql(&dbs.destination_url, "drop table if exists users").await?;
        checkpoint().await?;
        let cpu = syncline.worker_cpu_seconds()?;
        let (time, execution) = sync.run(&dbs, json!({"resync_mode": "resync"})).await?;
        full_cpu.push(syncline.worker_cpu_seconds()? - cpu);
        partitions = execution["schemas"][0]["partitions"].as_i64().unwrap_or(0);
        breakdown[0] = phases(&dbs, &execution).await?;
        full.push(time);
        // A resync of the loaded table also compares the new copy with the old one to count
        // the rows the source deleted.
        checkpoint().await?;
        let (time, execution) = sync.run(&dbs, json!({"resync_mode": "resync"})).await?;
        breakdown[1] = phases(&dbs, &execution).await?;
        resync.push(time);
        let changed = change_one_percent(&dbs, run as i64).await?;
        checkpoint().await?;
        delta.push(baselines.copy_upsert(Some(run as i64)).await?);
        checkpoint().await?;
        let (time, execution) = sync.run(&dbs, json!({})).await?;
        let written = execution["schemas"][0]["rows_written"].as_u64().unwrap_or(0);
        ensure!(written >= changed, "the incremental run wrote {written} rows, {changed} changed");
        breakdown[2] = phases(&dbs, &execution).await?;
        incremental.push(time);
    }
    let rss = syncline.worker_peak_rss_mb()?;
    let same = dbs.checksum(&dbs.source_url).await? == dbs.checksum(&dbs.destination_url).await?;
    drop(syncline);

    let (pipe, delta, full, resync, incremental) =
        (median(pipe), median(delta), median(full), median(resync), median(incremental));
    let throughput = pipe.as_secs_f64() / full.as_secs_f64();
    let ratio = incremental.as_secs_f64() / delta.as_secs_f64();
    let changed = rows / 100;
    println!();
    println!("{:<56} {:>9} {:>18}", "", "time", "throughput");
    let line = |what: &str, time: Duration, rows: i64| {
        println!("{what:<56} {:>8.2}s {}", time.as_secs_f64(), rate(rows, time))
    };
    line("pipe: COPY TO STDOUT | COPY FROM STDIN (binary)", pipe, rows);
    line(&format!("syncline: full run into an empty table ({partitions} partitions)"), full, rows);
    line("syncline: resync of the loaded table (deletes counted)", resync, rows);
    line(&format!("baseline: COPY {changed} changed rows + INSERT … ON CONFLICT"), delta, changed);
    line("syncline: 1%-changed incremental run", incremental, changed);
    println!();
    println!("where the last runs' time went:");
    for (what, phases) in ["full run", "resync", "incremental"].iter().zip(&breakdown) {
        println!("  {what:<12} {phases}");
    }
    println!();
    println!("full run:     {throughput:.2}× the pipe's throughput (target ≥ 0.9×) {}", verdict(throughput >= 0.9));
    println!("incremental:  {ratio:.2}× its baseline (target ≤ 1.2×) {}", verdict(ratio <= 1.2));
    println!("worker RSS:   {rss} MB peak (target < 128 MB) {}", verdict(rss < 128));
    full_cpu.sort_by(f64::total_cmp);
    println!("worker CPU:   {:.2} s in a full run (median)", full_cpu[full_cpu.len() / 2]);
    println!("checksums:    source {} destination {}", if same { "=" } else { "≠" }, verdict(same));
    dbs.drop_all().await?;
    ensure!(same, "the destination does not equal the source");
    Ok(())
}
