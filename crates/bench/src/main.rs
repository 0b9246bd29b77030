//! `syncline-bench model-sync`: times Syncline against physical-limit baselines measured in the
//! same run on the same machine, and prints the ratios.
//!
//! Baselines (psql processes, binary `COPY`):
//! - full: `COPY (model) TO STDOUT | COPY stage FROM STDIN`, then `INSERT … ON CONFLICT DO UPDATE`;
//! - rerun: the read-only `COPY` of the model, plus the same pipe + upsert of the changed rows.
//!
//! The bare pipe without upsert is printed for reference. Payloads go to a temporary
//! directory unless `BENCH_PAYLOAD_PATH` names another store (e.g. `s3://…`).

mod baseline;
mod harness;

use std::time::Duration;

use anyhow::{Context, bail};

use crate::{
    baseline::Baselines,
    harness::{Databases, Syncline},
};

struct Args {
    rows: i64,
    runs: usize,
    binary: String,
}

fn args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("model-sync") => {}
        other => bail!("usage: syncline-bench model-sync [--rows N] [--runs N] [--bin PATH] (got {other:?})"),
    }
    let mut parsed = Args { rows: 1_000_000, runs: 3, binary: "target/release/syncline".into() };
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => parsed.rows = value.parse()?,
            "--runs" => parsed.runs = value.parse()?,
            "--bin" => parsed.binary = value,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let changed = args.rows / 100;
    println!(
        "model-sync benchmark: {} rows × 12 columns, PostgreSQL → PostgreSQL, median of {} runs",
        args.rows, args.runs
    );
    let dbs = Databases::prepare(args.rows).await?;
    println!("table: {}", dbs.table_source);

    let baselines = Baselines { dbs: &dbs };
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

    let syncline = Syncline::start(&args.binary, &dbs).await?;
    let mut full = Vec::new();
    let mut rerun = Vec::new();
    for run in 0..args.runs {
        dbs.truncate_destination().await?;
        full.push(syncline.run(true).await?);
        let touched = dbs.change_one_percent(run as i64).await?;
        let (time, updated) = syncline.run_counted().await?;
        anyhow::ensure!(updated == touched as i64, "the rerun updated {updated} rows, {touched} changed");
        rerun.push(time);
    }
    let rss = syncline.worker_peak_rss_mb()?;
    let same = dbs.checksums_match().await?;
    drop(syncline);

    let (pipe_base, full_base, read_base, delta_base) =
        (median(pipe_base), median(full_base), median(read_base), median(delta_base));
    let (full, rerun) = (median(full), median(rerun));
    let rerun_base = read_base + delta_base;
    let full_ratio = full.as_secs_f64() / full_base.as_secs_f64();
    let rerun_ratio = rerun.as_secs_f64() / rerun_base.as_secs_f64();
    println!();
    println!("{:<52} {:>9} {:>18} {:>8}", "", "time", "throughput", "ratio");
    println!(
        "{:<52} {:>8.2}s {} {:>8}",
        "reference: bare COPY pipe, no upsert",
        pipe_base.as_secs_f64(),
        rate(args.rows, pipe_base),
        ""
    );
    println!(
        "{:<52} {:>8.2}s {} {:>8}",
        "baseline: COPY pipe + upsert (full)",
        full_base.as_secs_f64(),
        rate(args.rows, full_base),
        ""
    );
    println!(
        "{:<52} {:>8.2}s {} {:>7.2}×",
        "syncline: full run into an empty table",
        full.as_secs_f64(),
        rate(args.rows, full),
        full_ratio
    );
    println!(
        "{:<52} {:>8.2}s {} {:>8}",
        "baseline: read-only COPY of the model",
        read_base.as_secs_f64(),
        rate(args.rows, read_base),
        ""
    );
    println!(
        "{:<52} {:>8.2}s {} {:>8}",
        format!("baseline: COPY pipe + upsert of {changed} changed rows"),
        delta_base.as_secs_f64(),
        rate(changed, delta_base),
        ""
    );
    println!(
        "{:<52} {:>8.2}s {} {:>7.2}×",
        "syncline: 1% changed rerun",
        rerun.as_secs_f64(),
        rate(args.rows, rerun),
        rerun_ratio
    );
    println!();
    println!("full run:     {:.2}× baseline (target ≤ 1.5×) {}", full_ratio, verdict(full_ratio <= 1.5));
    println!("              {:.2}× the bare COPY pipe", full.as_secs_f64() / pipe_base.as_secs_f64());
    println!(
        "1% rerun:     {:.2}× read-only COPY + COPY-upsert of the changes (target ≤ 2×) {}",
        rerun_ratio,
        verdict(rerun_ratio <= 2.0)
    );
    println!("worker RSS:   {rss} MB peak (target < 300 MB) {}", verdict(rss < 300));
    println!("checksums:    source {} destination {}", if same { "=" } else { "≠" }, verdict(same));
    dbs.drop_all().await?;
    anyhow::ensure!(same, "the destination does not equal the model");
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}
