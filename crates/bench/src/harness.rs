//! The benchmark's databases and the Syncline processes under test.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use serde_json::{Value as Json, json};
use tokio_postgres::NoTls;

use crate::source::Source;

const DATABASES: [&str; 4] =
    ["syncline_bench_source", "syncline_bench_destination", "syncline_bench_baseline", "syncline_bench_state"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The reference benchmark table from the shared folder beside the repository, if present.
fn reference(file: &str) -> Option<PathBuf> {
    let path = std::env::var("BENCH_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("../shared/bench"))
        .join(file);
    path.exists().then_some(path)
}

pub(crate) async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.with_context(|| format!("connect {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

pub struct Databases {
    pub server_url: String,
    pub source_url: String,
    pub destination_url: String,
    pub baseline_url: String,
    pub state_url: String,
    pub columns: Vec<String>,
    /// Where the benchmark table came from.
    pub table_source: String,
}

impl Databases {
    fn url(server: &str, db: &str) -> String {
        format!("{}/{db}", server.rsplit_once('/').map_or(server, |(base, _)| base))
    }

    pub async fn prepare(rows: i64) -> anyhow::Result<Self> {
        let server_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let admin = connect(&server_url).await?;
        for db in DATABASES {
            admin.batch_execute(&format!("drop database if exists {db} with (force)")).await?;
            admin.batch_execute(&format!("create database {db}")).await?;
        }
        let [source_url, destination_url, baseline_url, state_url] = DATABASES.map(|db| Self::url(&server_url, db));
        let table_source = match reference("users.sql") {
            Some(sql) => {
                let status = Command::new("psql")
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "tbl=users", "-v", &format!("rows={rows}"), "-f"])
                    .arg(&sql)
                    .arg(&source_url)
                    .stdout(Stdio::null())
                    .status()?;
                ensure!(status.success(), "loading {} failed", sql.display());
                format!("reference {}", sql.display())
            }
            None => {
                let source = connect(&source_url).await?;
                source.batch_execute(include_str!("../../../testdata/sample_users_table.sql")).await?;
                source
                    .batch_execute(
                        &include_str!("../../../testdata/sample_users_fill.sql").replace("{rows}", &rows.to_string()),
                    )
                    .await?;
                "testdata/sample_users_*.sql (the reference users.sql was not found)".into()
            }
        };
        for target in [&destination_url, &baseline_url] {
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!("pg_dump --schema-only -t users '{source_url}' | psql -X -q '{target}' > /dev/null"))
                .status()?;
            ensure!(status.success(), "copying the table definition failed");
        }
        connect(&baseline_url).await?.batch_execute("create unlogged table stage (like users)").await?;
        let columns = connect(&source_url)
            .await?
            .query("select column_name::text from information_schema.columns where table_name = 'users' order by ordinal_position", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(Self { server_url, source_url, destination_url, baseline_url, state_url, columns, table_source })
    }

    pub async fn psql(&self, url: &str, sql: &str) -> anyhow::Result<()> {
        connect(url).await?.batch_execute(sql).await?;
        Ok(())
    }

    /// A connection to Syncline's state database.
    pub async fn state(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.state_url).await
    }

    /// Runs one statement; returns how many rows it touched.
    pub async fn execute(&self, url: &str, sql: &str) -> anyhow::Result<u64> {
        Ok(connect(url).await?.execute(sql, &[]).await?)
    }

    pub async fn truncate_destination(&self) -> anyhow::Result<()> {
        self.psql(&self.destination_url, "truncate users").await
    }

    /// Which `id % 100` class run `run` changes.
    pub fn changed_remainder(run: i64) -> i64 {
        (run * 37 + 11) % 100
    }

    /// Row count and digest of `users` in database `url`, by the reference checksum when
    /// present (both render every column alike).
    pub async fn checksum(&self, url: &str) -> anyhow::Result<String> {
        let client = connect(url).await?;
        Ok(match reference("checksum.sql") {
            Some(path) => {
                client.batch_execute(&std::fs::read_to_string(path)?).await?;
                client.query_one("select bench_checksum('users')", &[]).await?.get(0)
            }
            None => client.query_one(include_str!("../../../testdata/checksum_users.sql"), &[]).await?.get(0),
        })
    }

    /// Drops the benchmark's databases, with the replication slots change capture left in them
    /// (a slot still streaming to a stopped worker is ended first).
    pub async fn drop_all(&self) -> anyhow::Result<()> {
        let admin = connect(&self.server_url).await?;
        for db in DATABASES {
            admin
                .execute(
                    "select pg_terminate_backend(active_pid) from pg_replication_slots where database = $1 and active",
                    &[&db],
                )
                .await?;
            let slots = admin.query("select slot_name from pg_replication_slots where database = $1", &[&db]).await?;
            for slot in slots {
                let name: String = slot.get(0);
                // The ended backend lets go of its slot a moment later.
                let mut tries = 0;
                while let Err(e) = admin.execute("select pg_drop_replication_slot($1)", &[&name]).await {
                    tries += 1;
                    anyhow::ensure!(tries < 50, "cannot drop replication slot {name}: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            admin.batch_execute(&format!("drop database if exists {db} with (force)")).await?;
        }
        Ok(())
    }
}

/// The api and worker processes, and a sync of the whole table.
pub struct Syncline {
    api: Child,
    workers: Vec<Child>,
    http: reqwest::Client,
    base: String,
    token: String,
    sync_id: String,
    /// The body the model sync of the whole table was created with.
    sync_body: Json,
}

impl Drop for Syncline {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.api).chain(&mut self.workers) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The configuration of a Syncline connection to database `url` (`user` and `port` when it
/// names none).
pub fn connection_config(url: &reqwest::Url, user: &str, port: u16) -> Json {
    json!({
        "hostname": url.host_str().unwrap_or("127.0.0.1"), "port": url.port().unwrap_or(port),
        "database": url.path().trim_start_matches('/'),
        "username": if url.username().is_empty() { user } else { url.username() },
        "password": url.password().unwrap_or(""), "ssl": false,
    })
}

impl Syncline {
    /// Starts the api and one worker process, with the settings `env` adds, and a model sync
    /// of the whole table.
    pub async fn start(binary: &str, dbs: &Databases, source: &Source, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut syncline = Self::launch_with(binary, dbs, (1, 1), env).await?;
        syncline.configure(dbs, source).await?;
        Ok(syncline)
    }

    /// Starts the api (with the scheduler) and `workers` worker processes, each running `slots`
    /// jobs of a kind at a time (all of them the organization's), and provisions an organization
    /// whose API key later calls use.
    pub async fn launch(binary: &str, dbs: &Databases, workers: (usize, usize)) -> anyhow::Result<Self> {
        Self::launch_with(binary, dbs, workers, &[]).await
    }

    /// [`Self::launch`] with the settings `env` adds.
    async fn launch_with(
        binary: &str,
        dbs: &Databases,
        (workers, slots): (usize, usize),
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let payloads = std::env::temp_dir().join("syncline-bench-payloads");
        let _ = std::fs::remove_dir_all(&payloads);
        let key = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let spawn = |role: &str| {
            Command::new(binary)
                .arg("serve")
                .env("ROLE", role)
                .env("DATABASE_URL", &dbs.state_url)
                .env("REDIS_URL", std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
                .env("REDIS_KEY_PREFIX", format!("bench-{port}"))
                .env("POLYTOMIC_URL", format!("http://127.0.0.1:{port}"))
                .env("PORT", port.to_string())
                .env("ROOT_USER", "bench@example.com")
                .env("DEPLOYMENT", "bench")
                .env("DEPLOYMENT_KEY", &key)
                .env("GOOGLE_CLIENT_ID", "bench")
                .env("GOOGLE_CLIENT_SECRET", "bench")
                .env("JOB_PAYLOAD_PATH", std::env::var("BENCH_PAYLOAD_PATH").unwrap_or(format!("file://{}", payloads.display())))
                .env("WORKER_CONCURRENCY", slots.to_string())
                .env("WORKER_ORGANIZATION_SLOTS", slots.to_string())
                .env("LOG_LEVEL", "warn")
                .envs(env.iter().copied())
                .spawn()
                .with_context(|| format!("start {binary} (build it with `cargo build --profile bench -p syncline`; it lands in target/release)"))
        };
        let api = spawn("api,scheduler")?;
        let workers = (0..workers).map(|_| spawn("worker")).collect::<anyhow::Result<_>>()?;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http.get(format!("{base}/status.txt")).send().await.is_ok_and(|r| r.status().is_success()) {
            ensure!(Instant::now() < deadline, "syncline did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut syncline = Self { api, workers, http, base, token: key, sync_id: String::new(), sync_body: Json::Null };
        syncline.provision().await?;
        Ok(syncline)
    }

    /// Calls the API with the organization's key; returns the answer's `data`.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Json) -> anyhow::Result<Json> {
        let response = self
            .http
            .request(method.clone(), format!("{}/api/{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Json = response.json().await.unwrap_or(Json::Null);
        if !status.is_success() {
            bail!("{method} {path}: {status} {body}");
        }
        Ok(body["data"].clone())
    }

    /// An organization, a user and its API key, which later calls use.
    async fn provision(&mut self) -> anyhow::Result<()> {
        use reqwest::Method;
        // Each start is an organization of its own: several may share the state database.
        let name = format!("bench {}", uuid::Uuid::new_v4().simple());
        let org = self.call(Method::POST, "organizations", json!({"name": name})).await?;
        let org_id = org["id"].as_str().context("org")?.to_owned();
        let user = self
            .call(Method::POST, &format!("organizations/{org_id}/users"), json!({"email": "bench@example.com"}))
            .await?;
        let key = self
            .call(
                Method::POST,
                &format!("organizations/{org_id}/users/{}/keys", user["id"].as_str().context("user")?),
                json!({}),
            )
            .await?;
        self.token = key["value"].as_str().context("key")?.to_owned();
        Ok(())
    }

    /// Creates a PostgreSQL connection to `url`, capturing its changes when `change_detection`.
    pub async fn postgres_connection(&self, name: &str, url: &str, change_detection: bool) -> anyhow::Result<String> {
        let mut config = connection_config(&reqwest::Url::parse(url)?, "postgres", 5432);
        config["change_detection"] = json!(change_detection);
        let c = self
            .call(
                reqwest::Method::POST,
                "connections",
                json!({"name": name, "type": "postgresql", "configuration": config}),
            )
            .await?;
        Ok(c["id"].as_str().context("connection")?.to_owned())
    }

    async fn configure(&mut self, dbs: &Databases, source: &Source) -> anyhow::Result<()> {
        use reqwest::Method;
        let destination = connection_config(&reqwest::Url::parse(&dbs.destination_url)?, "postgres", 5432);
        let mut connections = Vec::new();
        for (name, (kind, config)) in
            [("source", source.connection(dbs)?), ("destination", ("postgresql", destination))]
        {
            let c = self
                .call(Method::POST, "connections", json!({"name": name, "type": kind, "configuration": config}))
                .await?;
            connections.push(c["id"].as_str().context("connection")?.to_owned());
        }
        let model = self.call(Method::POST, "models", json!({"name": "users", "connection_id": connections[0], "configuration": {"query": "select * from users"}})).await?;
        let model_id = model["id"].as_str().context("model")?;
        let fields: Vec<Json> = dbs
            .columns
            .iter()
            .filter(|c| *c != "id")
            .map(|c| json!({"source": {"model_id": model_id, "field": c}, "target": c}))
            .collect();
        self.sync_body = json!({
            "name": "bench", "mode": "updateOrCreate", "schedule": {"frequency": "manual"},
            "target": {"connection_id": connections[1], "object": "public.users"},
            "identity": {"source": {"model_id": model_id, "field": "id"}, "target": "id", "function": "Equality"},
            "fields": fields,
        });
        self.sync_id = self.add_sync(json!({})).await?;
        Ok(())
    }

    /// The sync of the whole table.
    pub fn sync_id(&self) -> &str {
        &self.sync_id
    }

    /// The model the syncs read.
    pub fn model_id(&self) -> &str {
        self.sync_body["identity"]["source"]["model_id"].as_str().unwrap_or_default()
    }

    /// Creates another sync like the one of the whole table, with `extra` fields of its body
    /// (e.g. model filters); returns its id.
    pub async fn add_sync(&self, extra: Json) -> anyhow::Result<String> {
        let mut body = self.sync_body.clone();
        for (key, value) in extra.as_object().into_iter().flatten() {
            body[key] = value.clone();
        }
        let sync = self.call(reqwest::Method::POST, "syncs", body).await?;
        Ok(sync["id"].as_str().context("sync")?.to_owned())
    }

    /// Starts an execution of the sync of the whole table and waits for it; returns the wall
    /// time and the finished execution.
    async fn execute(&self, resync: bool) -> anyhow::Result<(Duration, Json)> {
        self.execute_sync(&self.sync_id, resync).await
    }

    /// Starts an execution of sync `sync_id` and waits for it; returns the wall time and the
    /// finished execution.
    pub async fn execute_sync(&self, sync_id: &str, resync: bool) -> anyhow::Result<(Duration, Json)> {
        let started = Instant::now();
        let execution =
            self.call(reqwest::Method::POST, &format!("syncs/{sync_id}/executions"), json!({"resync": resync})).await?;
        let id = execution["id"].as_str().context("execution")?.to_owned();
        loop {
            let e = self.call(reqwest::Method::GET, &format!("syncs/{sync_id}/executions/{id}"), Json::Null).await?;
            match e["status"].as_str() {
                Some("completed") => return Ok((started.elapsed(), e)),
                Some("completed_with_errors" | "failed" | "canceled") => bail!("execution ended badly: {e}"),
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// A run; `resync` sends every row (the full-run case).
    pub async fn run(&self, resync: bool) -> anyhow::Result<Duration> {
        Ok(self.execute(resync).await?.0)
    }

    /// A diff run; returns its time and how many rows it updated.
    pub async fn run_counted(&self) -> anyhow::Result<(Duration, i64)> {
        let (time, execution) = self.execute(false).await?;
        Ok((time, execution["counts"]["update"].as_i64().unwrap_or(-1)))
    }

    /// The highest peak resident memory of the worker processes, in MB.
    pub fn worker_peak_rss_mb(&self) -> anyhow::Result<u64> {
        self.workers.iter().try_fold(0, |peak, worker| Ok(peak.max(peak_rss_mb(worker)?)))
    }

    /// The api process's peak resident memory, in MB.
    pub fn api_peak_rss_mb(&self) -> anyhow::Result<u64> {
        peak_rss_mb(&self.api)
    }

    /// Where the api answers (`http://127.0.0.1:<port>`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The CPU time the worker processes have used so far (user and system), in seconds.
    pub fn worker_cpu_seconds(&self) -> anyhow::Result<f64> {
        let mut ticks = 0;
        for worker in &self.workers {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", worker.id()))?;
            // The fields after the command name (which may hold spaces) start with the state.
            let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
            ticks += fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        }
        // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
        Ok(ticks as f64 / 100.0)
    }
}

/// The peak resident memory of `process`, in MB.
fn peak_rss_mb(process: &Child) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.id()))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmHWM")?;
    Ok(kb / 1024)
}
