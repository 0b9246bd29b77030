//! `syncline bulk run|follow`: start a bulk sync and follow its execution through the API, with
//! one progress bar per schema (rows done, total when known, rows/s and ETA).

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::api_client::Api;

#[derive(Subcommand)]
pub enum BulkCommand {
    /// Start a run of a bulk sync and follow it until it ends.
    Run {
        /// The bulk sync.
        sync_id: String,
        /// Run only these schemas (repeatable); all enabled ones when absent.
        #[arg(long = "schema")]
        schemas: Vec<String>,
        /// `refetch`, `resync` or `rebuild`.
        #[arg(long)]
        resync_mode: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Follow an execution of a bulk sync until it ends (the current one when none is named).
    Follow {
        sync_id: String,
        execution_id: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Where the API is and the key to call it with.
#[derive(Args)]
pub struct ApiArgs {
    /// Base URL of the API.
    #[arg(long = "api", env = "SYNCLINE_API_URL", default_value = "http://127.0.0.1:5100")]
    url: String,
    /// An API key of the organization that owns the sync.
    #[arg(long, env = "SYNCLINE_API_KEY", hide_env_values = true)]
    key: String,
}

pub async fn run(command: BulkCommand) -> anyhow::Result<()> {
    match command {
        BulkCommand::Run { sync_id, schemas, resync_mode, api: args } => {
            let api = Api::new(&args.url);
            let mut body = json!({});
            if !schemas.is_empty() {
                body["schemas"] = json!(schemas);
            }
            if let Some(mode) = resync_mode {
                body["resync_mode"] = json!(mode);
            }
            let started =
                api.ok(Method::POST, &format!("bulk/syncs/{sync_id}/executions"), &args.key, Some(body)).await?;
            let execution_id = started["id"].as_str().context("execution id")?.to_owned();
            println!("started execution {execution_id}");
            follow(&api, &args.key, &sync_id, &execution_id).await
        }
        BulkCommand::Follow { sync_id, execution_id, api: args } => {
            let api = Api::new(&args.url);
            let execution_id = match execution_id {
                Some(id) => id,
                None => {
                    let status = api.ok(Method::GET, &format!("bulk/syncs/{sync_id}/status"), &args.key, None).await?;
                    let execution = [&status["current_execution"], &status["last_execution"]]
                        .into_iter()
                        .find_map(|e| e["id"].as_str())
                        .context("the bulk sync has no execution to follow")?;
                    execution.to_owned()
                }
            };
            follow(&api, &args.key, &sync_id, &execution_id).await
        }
    }
}

/// Statuses an execution ends in.
const ENDED: &[&str] = &["completed", "failed", "canceled", "interrupted", "errors"];

/// Polls the execution and draws a bar per schema until it ends; fails unless it completed.
async fn follow(api: &Api, key: &str, sync_id: &str, execution_id: &str) -> anyhow::Result<()> {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:30!} {bar:30} {pos:>10}/{len:10} {msg}").expect("a template");
    let mut by_schema: HashMap<String, ProgressBar> = HashMap::new();
    loop {
        let path = format!("bulk/syncs/{sync_id}/executions/{execution_id}");
        let execution = api.ok(Method::GET, &path, key, None).await?;
        for schema in execution["schemas"].as_array().into_iter().flatten() {
            let name = schema["schema"].as_str().unwrap_or("?").to_owned();
            let bar = by_schema.entry(name.clone()).or_insert_with(|| {
                let bar = bars.add(ProgressBar::new(0).with_style(style.clone()));
                bar.set_prefix(name);
                bar
            });
            draw(bar, schema);
        }
        let status = execution["status"].as_str().unwrap_or("?");
        if ENDED.contains(&status) {
            for bar in by_schema.values() {
                bar.finish();
            }
            println!("execution {execution_id} {status}: {} records", execution["record_count"]);
            for schema in execution["schemas"].as_array().into_iter().flatten() {
                if let Some(message) = schema["status_message"].as_str() {
                    println!("  {}: {message}", schema["schema"].as_str().unwrap_or("?"));
                }
            }
            if status != "completed" {
                bail!("the execution ended {status}");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sets a schema's bar from its progress fields.
fn draw(bar: &ProgressBar, schema: &Json) {
    let done = schema["rows_read"].as_u64().or_else(|| schema["record_count"].as_u64()).unwrap_or(0);
    bar.set_length(schema["rows_total"].as_u64().unwrap_or(0).max(done));
    bar.set_position(done);
    let rate = schema["rows_per_second"].as_f64().map(|r| format!(" · {r:.0} rows/s")).unwrap_or_default();
    let eta = schema["eta_seconds"].as_u64().map(|s| format!(" · ETA {s}s")).unwrap_or_default();
    bar.set_message(format!("{}{rate}{eta}", schema["status"].as_str().unwrap_or("?")));
}
