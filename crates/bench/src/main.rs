//! `syncline-bench model-sync`: times Syncline against physical-limit baselines measured in the
//! same run on the same machine, and prints the ratios.
//!
//! Baselines (plain client processes; `--source postgres`: binary `COPY`, `--source mariadb`:
//! `mariadb --quick --batch` into a text `COPY`):
//! - full: `COPY (model) TO STDOUT | COPY stage FROM STDIN`, then `INSERT … ON CONFLICT DO UPDATE`;
//! - rerun: the read-only `COPY` of the model, plus the same pipe + upsert of the changed rows.
//!
//! The bare pipe without upsert is printed for reference. Payloads go to a temporary
//! directory unless `BENCH_PAYLOAD_PATH` names another store (e.g. `s3://…`).

mod baseline;
mod bulk;
mod cdc;
mod delivery;
mod events;
mod harness;
mod source;

use std::time::Duration;

use anyhow::{Context, bail};

use crate::{
    baseline::Baselines,
    harness::{Databases, Syncline},
    source::Source,
};

/// Peak resident memory the worker may reach, in MB.
const RSS_TARGET_MB: u64 = 128;

/// How much longer a first run that reads every row back may take than one that does not.
const VERIFY_TARGET: f64 = 1.3;

/// Model filters of the benchmark table that select every row, with a logic expression.
fn every_row_filters(model_id: &str) -> serde_json::Value {
    let condition = |field: &str, function: &str, value: serde_json::Value| serde_json::json!({"source": {"model_id": model_id, "field": field}, "function": function, "value": value});
    serde_json::json!({"model_filters": {
        "conditions": [
            condition("id", "IsNotNull", serde_json::Value::Null),
            condition("email", "StringContains", "@".into()),
            condition("created_at", "OnOrBefore", "2100-01-01".into()),
        ],
        "logic": "1 AND (2 OR 3)",
    }})
}

struct Args {
    /// `model-sync`, `bulk-sync`, `cdc` or `events`.
    name: String,
    /// Rows of the reference table (default 1,000,000; 100,000 for `cdc`); events for `events`
    /// (default 200,000).
    rows: Option<i64>,
    runs: usize,
    binary: String,
    source: String,
    workers: usize,
    /// Partitions one worker loads at once (bulk-sync).
    slots: usize,
    /// Changes a second the `cdc` writer makes, one run each, and for how long.
    rates: Vec<u64>,
    seconds: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let name = match args.next() {
        Some(name) if ["model-sync", "bulk-sync", "cdc", "events"].contains(&name.as_str()) => name,
        other => bail!(
            "usage: syncline-bench model-sync [--source postgres|mariadb] [--rows N] [--runs N] [--bin PATH]\n       \
             syncline-bench bulk-sync [--workers N] [--slots N] [--rows N] [--runs N] [--bin PATH]\n       \
             syncline-bench cdc [--rates 1000,10000] [--seconds N] [--rows N] [--bin PATH]\n       \
             syncline-bench events [--rows N] [--bin PATH] (got {other:?})"
        ),
    };
    let mut parsed = Args {
        name,
        rows: None,
        runs: 3,
        binary: "target/release/syncline".into(),
        source: "postgres".into(),
        workers: 1,
        slots: 2,
        rates: vec![1_000, 10_000],
        seconds: 20,
    };
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => parsed.rows = Some(value.parse()?),
            "--rates" => parsed.rates = value.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--seconds" => parsed.seconds = value.parse()?,
            "--runs" => parsed.runs = value.parse()?,
            "--bin" => parsed.binary = value,
            "--source" => parsed.source = value,
            "--workers" => parsed.workers = value.parse()?,
            "--slots" => parsed.slots = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(parsed)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn rate(rows: i64, time: Duration) -> String {
    let per_second = rows as f64 / time.as_secs_f64();
    format!("{:>10.0} rows/s", per_second)
}

/// `ratio` to `what`, with its target and verdict when it has one.
fn against(ratio: f64, what: &str, target: Option<f64>) -> String {
    match target {
        Some(target) => format!("{ratio:.2}× {what} (target ≤ {target}×) {}", verdict(ratio <= target)),
        None => format!("{ratio:.2}× {what}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    match args.name.as_str() {
        "bulk-sync" => {
            bulk::run(args.rows.unwrap_or(1_000_000), args.runs, &args.binary, (args.workers, args.slots)).await
        }
        "cdc" => cdc::run(args.rows.unwrap_or(100_000), &args.rates, args.seconds, &args.binary).await,
        "events" => events::run(args.rows.unwrap_or(200_000) as usize, &args.binary).await,
        _ => model_sync(args).await,
    }
}

async fn model_sync(args: Args) -> anyhow::Result<()> {
    let rows = args.rows.unwrap_or(1_000_000);
    let (total, changed) = (rows, rows / 100);
    let source = Source::parse(&args.source)?;
    println!(
        "model-sync benchmark: {} rows × 12 columns, {} → PostgreSQL, median of {} runs",
        rows,
        source.name(),
        args.runs
    );
    let dbs = Databases::prepare(rows).await?;
    source.load(&dbs)?;
    println!("table: {}", dbs.table_source);

    let baselines = Baselines { dbs: &dbs, source: &source };
    let mut pipe_base = Vec::new();
    let mut full_base = Vec::new();
    let mut read_base = Vec::new();
    let mut delta_base = Vec::new();
    for run in 0..args.runs {
        pipe_base.push(baselines.copy_only().await?);
        full_base.push(baselines.copy_upsert(None).await?);
        read_base.push(baselines.read_only().await?);
        delta_base.push(baselines.copy_upsert(Some(run as i64)).await?);
    }

    // The write path against its baselines, without reading back; then the same full run with
    // model filters that select every row, and with verification.
    let syncline = Syncline::start(&args.binary, &dbs, &source, &[("MODEL_SYNC_VERIFY_RECORDS", "0")]).await?;
    let mut full = Vec::new();
    let mut rerun = Vec::new();
    for run in 0..args.runs {
        dbs.truncate_destination().await?;
        full.push(syncline.run(true).await?);
        let touched = source.change_one_percent(&dbs, run as i64).await?;
        let (time, updated) = syncline.run_counted().await?;
        anyhow::ensure!(updated == touched as i64, "the rerun updated {updated} rows, {touched} changed");
        rerun.push(time);
    }
    let filtered_sync = syncline.add_sync(every_row_filters(syncline.model_id())).await?;
    let mut filtered = Vec::new();
    for _ in 0..args.runs {
        dbs.truncate_destination().await?;
        let (time, execution) = syncline.execute_sync(&filtered_sync, true).await?;
        let written = execution["counts"]["insert"].as_i64().unwrap_or(-1);
        anyhow::ensure!(written == rows, "the filtered run wrote {written} rows, the filters select all {rows}");
        filtered.push(time);
    }
    let rss = syncline.worker_peak_rss_mb()?;
    drop(syncline);
    let verifying = Syncline::start(&args.binary, &dbs, &source, &[]).await?;
    let mut verified = Vec::new();
    let mut reading_back = Vec::new();
    let mut waited = Vec::new();
    for _ in 0..args.runs {
        dbs.truncate_destination().await?;
        let (time, execution) = verifying.execute_sync(verifying.sync_id(), true).await?;
        let checked = execution["verification"]["checked"].as_i64().unwrap_or(-1);
        anyhow::ensure!(checked == rows, "the verified run read back {checked} of {rows} rows: {execution}");
        verified.push(time);
        let seconds = |field: &str| Duration::from_secs_f64(execution["verification"][field].as_f64().unwrap_or(0.0));
        reading_back.push(seconds("seconds"));
        waited.push(seconds("waited_seconds"));
    }
    let rss = rss.max(verifying.worker_peak_rss_mb()?);
    let same = source.checksum(&dbs).await? == dbs.checksum(&dbs.destination_url).await?;
    drop(verifying);

    let (pipe_base, full_base, read_base, delta_base) =
        (median(pipe_base), median(full_base), median(read_base), median(delta_base));
    let (full, rerun) = (median(full), median(rerun));
    let rerun_base = read_base + delta_base;
    let full_ratio = full.as_secs_f64() / full_base.as_secs_f64();
    let rerun_ratio = rerun.as_secs_f64() / rerun_base.as_secs_f64();
    let (pipe, read) = source.pipe();
    let rows: [(String, Duration, i64, Option<f64>); 6] = [
        (format!("reference: bare {pipe} pipe, no upsert"), pipe_base, rows, None),
        (format!("baseline: {pipe} pipe + upsert (full)"), full_base, rows, None),
        ("syncline: full run into an empty table".into(), full, rows, Some(full_ratio)),
        (format!("baseline: read-only {read} of the model"), read_base, rows, None),
        (format!("baseline: {pipe} pipe + upsert of {changed} changed rows"), delta_base, changed, None),
        ("syncline: 1% changed rerun".into(), rerun, rows, Some(rerun_ratio)),
    ];
    let width = rows.iter().map(|(label, ..)| label.chars().count()).max().unwrap_or(0).max(52);
    println!();
    println!("{:<width$} {:>9} {:>18} {:>8}", "", "time", "throughput", "ratio");
    for (label, time, count, ratio) in rows {
        let ratio = ratio.map(|r| format!("{r:>7.2}×")).unwrap_or_else(|| format!("{:>8}", ""));
        println!("{label:<width$} {:>8.2}s {} {ratio}", time.as_secs_f64(), rate(count, time));
    }
    let targets = source.targets();
    println!();
    let pipe_ratio = full.as_secs_f64() / pipe_base.as_secs_f64();
    println!("full run:     {}", against(full_ratio, "baseline", Some(targets.full)));
    println!("              {}", against(pipe_ratio, &format!("the bare {pipe} pipe"), targets.pipe));
    let rerun_what = format!("read-only {read} + {pipe}-upsert of the changes");
    println!("1% rerun:     {}", against(rerun_ratio, &rerun_what, targets.rerun));
    let (filtered, verified) = (median(filtered), median(verified));
    let (reading_back, waited) = (median(reading_back), median(waited));
    let filter_ratio = filtered.as_secs_f64() / full.as_secs_f64();
    let verify_ratio = verified.as_secs_f64() / full.as_secs_f64();
    println!(
        "filters:      {:.2}s full run with model filters `1 AND (2 OR 3)` selecting every row: {}",
        filtered.as_secs_f64(),
        against(filter_ratio, "the same run without them", None)
    );
    println!(
        "verification: {:.2}s full run reading all {total} rows back ({:.2}s reading, alongside the writes; \
         {:.2}s after the last): {}",
        verified.as_secs_f64(),
        reading_back.as_secs_f64(),
        waited.as_secs_f64(),
        against(verify_ratio, "the same run without it", Some(VERIFY_TARGET))
    );
    println!("worker RSS:   {rss} MB peak (target < {RSS_TARGET_MB} MB) {}", verdict(rss < RSS_TARGET_MB));
    println!("checksums:    source {} destination {}", if same { "=" } else { "≠" }, verdict(same));
    source.drop_all()?;
    dbs.drop_all().await?;
    anyhow::ensure!(same, "the destination does not equal the model");
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}
