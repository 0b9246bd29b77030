//! `syncline demo`: drives a running API end to end, as a new user would.
//!
//! Creates sample data in a source database, provisions an organization, a user and an API key
//! with the deployment key, creates two PostgreSQL connections, a model and a model sync, runs
//! it with a progress bar, changes 1% of the source and runs it again to show the diff.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value as Json, json};
use tokio_postgres::NoTls;

use crate::api_client::Api;

#[derive(Args)]
pub struct DemoArgs {
    /// Base URL of the running API.
    #[arg(long, default_value = "http://127.0.0.1:5100")]
    api: String,
    /// The deployment key the API was started with.
    #[arg(long, env = "DEPLOYMENT_KEY")]
    key: String,
    /// PostgreSQL server for the demo's source and destination databases.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Rows in the sample table.
    #[arg(long, default_value_t = 200_000)]
    rows: i64,
}

const SOURCE_DB: &str = "syncline_demo_source";
const TARGET_DB: &str = "syncline_demo_destination";

const TABLE: &str = include_str!("../../../testdata/sample_users_table.sql");
const FILL: &str = include_str!("../../../testdata/sample_users_fill.sql");

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.with_context(|| format!("cannot connect to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

fn database_url(server: &str, database: &str) -> String {
    match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => format!("{server}/{database}"),
    }
}

/// (Re)creates the demo databases: a filled source table and an empty destination table.
async fn prepare_data(args: &DemoArgs) -> anyhow::Result<()> {
    let admin = connect(&args.postgres).await?;
    for db in [SOURCE_DB, TARGET_DB] {
        let exists = admin.query_opt("select 1 from pg_database where datname = $1", &[&db]).await?;
        if exists.is_none() {
            admin.batch_execute(&format!("create database {db}")).await?;
        }
    }
    let source = connect(&database_url(&args.postgres, SOURCE_DB)).await?;
    source.batch_execute(&format!("drop table if exists users; {TABLE}")).await?;
    source.batch_execute(&FILL.replace("{rows}", &args.rows.to_string())).await?;
    let target = connect(&database_url(&args.postgres, TARGET_DB)).await?;
    target.batch_execute(&format!("drop table if exists users; {TABLE}")).await?;
    Ok(())
}

/// The organization, user and API key of the demo (reused when they already exist).
async fn provision(api: &Api, key: &str) -> anyhow::Result<String> {
    let orgs = api.ok(Method::GET, "organizations", key, None).await?;
    let org = match orgs.as_array().into_iter().flatten().find(|o| o["name"] == "Syncline Demo") {
        Some(org) => org.clone(),
        None => api.ok(Method::POST, "organizations", key, Some(json!({"name": "Syncline Demo"}))).await?,
    };
    let org_id = org["id"].as_str().context("organization id")?.to_owned();
    let users = api.ok(Method::GET, &format!("organizations/{org_id}/users"), key, None).await?;
    let user = match users.as_array().into_iter().flatten().find(|u| u["email"] == "demo@example.com") {
        Some(user) => user.clone(),
        None => {
            api.ok(
                Method::POST,
                &format!("organizations/{org_id}/users"),
                key,
                Some(json!({"email": "demo@example.com"})),
            )
            .await?
        }
    };
    let user_id = user["id"].as_str().context("user id")?;
    let minted =
        api.ok(Method::POST, &format!("organizations/{org_id}/users/{user_id}/keys?force=true"), key, None).await?;
    Ok(minted["value"].as_str().context("api key")?.to_owned())
}

async fn run_sync(api: &Api, token: &str, sync_id: &str, label: &str) -> anyhow::Result<Json> {
    let started = Instant::now();
    let execution = api.ok(Method::POST, &format!("syncs/{sync_id}/executions"), token, Some(json!({}))).await?;
    let execution_id = execution["id"].as_str().context("execution id")?.to_owned();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:.bold} [{elapsed}] {bar:30} {pos}/{len} read · {msg}")
            .expect("a valid template"),
    );
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    loop {
        let e = api.ok(Method::GET, &format!("syncs/{sync_id}/executions/{execution_id}"), token, None).await?;
        let p = &e["progress"];
        let read = p["records_read"].as_u64().unwrap_or(0);
        bar.set_length(p["records_estimated"].as_u64().unwrap_or(0).max(read));
        bar.set_position(read);
        let eta = p["eta_seconds"].as_u64().map(|s| format!(" · ETA {s}s")).unwrap_or_default();
        bar.set_message(format!(
            "{} · changed {} · written {}{eta}",
            e["status"].as_str().unwrap_or("?"),
            p["records_changed"],
            p["records_written"]
        ));
        if matches!(e["status"].as_str(), Some("completed" | "completed_with_errors" | "failed" | "canceled")) {
            bar.finish();
            let c = &e["counts"];
            println!(
                "  {} in {:.2}s: insert {} · update {} · delete {} · error {} · total {}",
                e["status"].as_str().unwrap_or("?"),
                started.elapsed().as_secs_f64(),
                c["insert"],
                c["update"],
                c["delete"],
                c["error"],
                c["total"]
            );
            if e["status"] == "failed" {
                bail!("the execution failed: {}", e["errors"]);
            }
            return Ok(e);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.api);
    println!("1/5 creating {} sample rows in {SOURCE_DB}.users and an empty {TARGET_DB}.users", args.rows);
    prepare_data(&args).await?;
    println!("2/5 provisioning organization \"Syncline Demo\", user demo@example.com and an API key");
    let token = provision(&api, &args.key).await?;
    println!("3/5 creating connections, a model and a sync through the API");
    let pg = url_parts(&args.postgres)?;
    let mut ids = Vec::new();
    for (name, db) in [("demo source", SOURCE_DB), ("demo destination", TARGET_DB)] {
        let config =
            json!({"hostname": pg.0, "port": pg.1, "database": db, "username": pg.2, "password": pg.3, "ssl": false});
        let c = api
            .ok(
                Method::POST,
                "connections",
                &token,
                Some(json!({"name": name, "type": "postgresql", "configuration": config})),
            )
            .await?;
        ids.push(c["id"].as_str().context("connection id")?.to_owned());
    }
    let model = api
        .ok(
            Method::POST,
            "models",
            &token,
            Some(json!({
                "name": "users", "connection_id": ids[0], "identifier": "id",
                "configuration": {"query": "select * from users"},
            })),
        )
        .await?;
    let model_id = model["id"].as_str().context("model id")?;
    let fields: Vec<Json> = model["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] != "id")
        .map(|f| json!({"source": {"model_id": model_id, "field": f["name"]}, "target": f["name"]}))
        .collect();
    let sync = api
        .ok(
            Method::POST,
            "syncs",
            &token,
            Some(json!({
                "name": "users → destination", "mode": "updateOrCreate", "active": true,
                "schedule": {"frequency": "manual"},
                "target": {"connection_id": ids[1], "object": "public.users"},
                "identity": {"source": {"model_id": model_id, "field": "id"}, "target": "id", "function": "Equality"},
                "fields": fields,
            })),
        )
        .await?;
    let sync_id = sync["id"].as_str().context("sync id")?.to_owned();
    println!("4/5 first run: every row is new");
    run_sync(&api, &token, &sync_id, "full run").await?;
    let source = connect(&database_url(&args.postgres, SOURCE_DB)).await?;
    let changed =
        source.execute("update users set score = score + 1, updated_at = now() where id % 100 = 0", &[]).await?;
    println!("5/5 changed {changed} source rows (1%); the second run sends only those");
    run_sync(&api, &token, &sync_id, "diff run").await?;
    println!(
        "\nThe API keeps running at {} — try:\n  curl -H 'Authorization: Bearer {token}' {}/api/syncs/{sync_id}/executions",
        args.api, args.api
    );
    Ok(())
}

/// Host, port, user and password of a postgres URL.
fn url_parts(url: &str) -> anyhow::Result<(String, u16, String, String)> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
    Ok((
        parsed.host_str().unwrap_or("127.0.0.1").to_owned(),
        parsed.port().unwrap_or(5432),
        if parsed.username().is_empty() { "postgres".into() } else { parsed.username().to_owned() },
        parsed.password().unwrap_or("").to_owned(),
    ))
}
