//! Test support: a fresh database and Redis prefix per test, `syncline` processes started with
//! the real binary, and a small API client.

use std::{
    path::PathBuf,
    process::{Child, Command},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use mysql_async::prelude::Queryable;
use serde_json::{Value as Json, json};
use tokio_postgres::NoTls;

/// The PostgreSQL server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `url` with its database replaced by `name`.
pub fn database_url(name: &str) -> String {
    let server = server_url();
    let base =
        server.split('?').next().unwrap_or(&server).rsplit_once('/').map_or(server.clone(), |(b, _)| b.to_owned());
    format!("{base}/{name}")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database of this test's own; dropped by [`TestDb::drop_now`] or swept by a later run.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let admin = connect(&server_url()).await;
        sweep(&admin).await;
        let name = format!("sl_t_{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst), rand_suffix());
        admin.batch_execute(&format!("create database {name}")).await.expect("create test database");
        Self { url: database_url(&name), name }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    pub async fn drop_now(self) {
        drop_database(&connect(&server_url()).await, &self.name).await;
    }
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// Drops databases left behind by test processes that are no longer running.
async fn sweep(admin: &tokio_postgres::Client) {
    let Ok(rows) = admin.query("select datname from pg_database where datname like 'sl\\_t\\_%'", &[]).await else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        if left_behind(&name) {
            drop_database(admin, &name).await;
        }
    }
}

/// Whether test database `name` (`sl_t_<pid>_…`) belongs to a test process no longer running.
fn left_behind(name: &str) -> bool {
    let pid: Option<u32> = name.split('_').nth(2).and_then(|p| p.parse().ok());
    pid.is_some_and(|pid| !PathBuf::from(format!("/proc/{pid}")).exists())
}

/// Drops test database `name` with its replication slots (which would keep it).
pub async fn drop_database(admin: &tokio_postgres::Client, name: &str) {
    let slots = "select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = $1";
    let _ = admin.query(slots, &[&name]).await;
    let _ = admin.batch_execute(&format!("drop database if exists {name} with (force)")).await;
}

/// One Syncline installation: state database, Redis prefix, payload directory, deployment key.
pub struct Install {
    pub db: TestDb,
    pub prefix: String,
    pub payloads: PathBuf,
    /// `JOB_PAYLOAD_PATH`: the `payloads` directory unless a test points it elsewhere.
    pub payload_url: String,
    pub redis_url: String,
    pub key: String,
    /// More variables for `syncline serve`.
    pub extra_env: Vec<(String, String)>,
}

/// The directory below which `file://` connections of the tests' installs may write.
pub fn local_files_root() -> PathBuf {
    std::env::temp_dir().join("syncline-lake")
}

impl Install {
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let prefix = format!("test-{}", rand_suffix());
        let payloads = std::env::temp_dir().join(format!("syncline-test-{}", &prefix));
        let payload_url = format!("file://{}", payloads.display());
        Self {
            db,
            prefix,
            payloads,
            payload_url,
            redis_url: redis_url(),
            key: format!("deploy-{}", rand_suffix()),
            extra_env: vec![],
        }
    }

    /// The environment `syncline serve` runs with.
    pub fn env(&self, port: u16) -> Vec<(String, String)> {
        [
            ("DATABASE_URL", self.db.url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("REDIS_KEY_PREFIX", self.prefix.clone()),
            ("POLYTOMIC_URL", format!("http://127.0.0.1:{port}")),
            ("PORT", port.to_string()),
            ("ROOT_USER", "root@example.com".into()),
            ("DEPLOYMENT", "test".into()),
            ("DEPLOYMENT_KEY", self.key.clone()),
            ("GOOGLE_CLIENT_ID", "test".into()),
            ("GOOGLE_CLIENT_SECRET", "test".into()),
            ("JOB_PAYLOAD_PATH", self.payload_url.clone()),
            ("LOCAL_FILES_ROOT", local_files_root().display().to_string()),
            ("WORKER_HEARTBEAT_SECONDS", "1".into()),
            ("LOG_LEVEL", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(self.extra_env.iter().cloned())
        .collect()
    }

    /// Starts `syncline serve` with `roles`; waits for the API when it is one of them.
    pub async fn spawn(&self, roles: &str) -> Process {
        self.spawn_as(roles, "local").await
    }

    /// [`Install::spawn`] on a host called `host` (worker names carry it).
    pub async fn spawn_as(&self, roles: &str, host: &str) -> Process {
        let port = free_port();
        let log = self.payloads.with_extension(format!("{}-{port}.log", roles.replace(',', "-")));
        std::fs::create_dir_all(log.parent().expect("log dir")).expect("log dir");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_syncline"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env(port))
            .env("ROLE", roles)
            .env("HOSTNAME", host)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn syncline");
        let process = Process { child, port, log };
        if roles.contains("api") {
            process.wait_ready().await;
        }
        process
    }

    /// Runs the admin command `syncline args` with this installation's environment; returns
    /// whether it succeeded, its stdout and its stderr.
    pub fn command(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_syncline"))
            .args(args)
            .env_clear()
            .envs(self.env(5100))
            .output()
            .expect("run syncline");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8");
        (output.status.success(), text(output.stdout), text(output.stderr))
    }

    /// Runs `syncline args` like [`Install::command`] and expects it to succeed; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.command(args);
        assert!(ok, "syncline {args:?} failed: {stderr}");
        stdout
    }

    /// The API of a process, acting with the deployment key.
    pub fn partner(&self, process: &Process) -> Api {
        Api::new(process.base(), &self.key)
    }

    pub async fn finish(self) {
        let _ = std::fs::remove_dir_all(&self.payloads);
        self.db.drop_now().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running `syncline serve`.
pub struct Process {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Process {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/status.txt", self.base())).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("syncline did not become ready:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then waits for the exit; returns how long the process took to stop.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("kill -TERM");
        self.child.wait().expect("wait");
        started.elapsed()
    }
}

/// Whether `text` holds a password made by [`password`].
pub fn holds_a_password(text: &str) -> bool {
    text.match_indices("pw-").any(|(at, _)| text[at..].chars().take(64).collect::<String>().contains("-secret"))
}

impl Drop for Process {
    /// Stops the process, and checks that no connection password reached its log.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            assert!(!holds_a_password(&self.log_text()), "a connection password was logged: {}", self.log.display());
        }
    }
}

/// A JSON API client with one credential.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Api {
    pub fn new(base: String, token: &str) -> Self {
        Self { http: reqwest::Client::new(), base, auth: format!("Bearer {token}") }
    }

    /// The same credential against another process (e.g. one restarted with other settings).
    pub fn at(&self, process: &Process) -> Self {
        Self { http: self.http.clone(), base: process.base(), auth: self.auth.clone() }
    }

    /// The bearer token this client sends.
    pub fn token(&self) -> &str {
        self.auth.strip_prefix("Bearer ").unwrap_or_default()
    }

    pub fn with_auth(&self, auth: &str) -> Self {
        Self { http: self.http.clone(), base: self.base.clone(), auth: auth.to_owned() }
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Json>) -> (u16, Json) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !self.auth.is_empty() {
            request = request.header("Authorization", &self.auth);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    /// Sends a POST with an `Idempotency-Key`.
    pub async fn send_with_key(&self, method: &str, path: &str, body: Json, key: &str) -> (u16, Json) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    /// Sends and expects a 2xx; returns `data`.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Json>) -> Json {
        let (status, body) = self.send(method, path, body).await;
        assert!((200..300).contains(&status), "{method} {path} answered {status}: {body}");
        body["data"].clone()
    }
}

/// An organization with a user and that user's API client.
pub async fn organization(install: &Install, process: &Process, name: &str) -> (String, Api) {
    let partner = install.partner(process);
    let org = partner.ok("POST", "/api/organizations", Some(json!({"name": name}))).await;
    let org_id = org["id"].as_str().expect("org id").to_owned();
    let user = partner
        .ok("POST", &format!("/api/organizations/{org_id}/users"), Some(json!({"email": format!("admin@{name}.test")})))
        .await;
    let key = partner
        .ok("POST", &format!("/api/organizations/{org_id}/users/{}/keys", user["id"].as_str().expect("user id")), None)
        .await;
    (org_id, Api::new(process.base(), key["value"].as_str().expect("key")))
}

/// A second user of organization `org_id` (a Member, as only the first user is an Admin).
pub async fn member(install: &Install, process: &Process, org_id: &str, email: &str) -> (String, Api) {
    let partner = install.partner(process);
    let user = partner.ok("POST", &format!("/api/organizations/{org_id}/users"), Some(json!({"email": email}))).await;
    assert_eq!(user["role"], "member", "later users are Members: {user}");
    let user_id = user["id"].as_str().expect("user id").to_owned();
    let key = partner.ok("POST", &format!("/api/organizations/{org_id}/users/{user_id}/keys"), None).await;
    (user_id, Api::new(process.base(), key["value"].as_str().expect("key")))
}

/// The usual setup: an installation running `roles`, one organization and its API client, and
/// a data database created with `ddl` behind a PostgreSQL connection of that organization.
pub struct Scene {
    pub install: Install,
    pub process: Process,
    pub org_id: String,
    pub api: Api,
    pub data: TestDb,
    pub conn: String,
}

impl Scene {
    pub async fn new(roles: &str, name: &str, ddl: &str) -> Self {
        Self::with(Install::new().await, roles, name, ddl).await
    }

    /// The setup on an installation a test has configured.
    pub async fn with(install: Install, roles: &str, name: &str, ddl: &str) -> Self {
        let process = install.spawn(roles).await;
        let (org_id, api) = organization(&install, &process, name).await;
        let data = TestDb::new().await;
        data.client().await.batch_execute(ddl).await.expect("create the test data");
        let conn = pg_connection(&api, "db", &data.name).await;
        Self { install, process, org_id, api, data, conn }
    }

    pub async fn finish(self) {
        drop(self.process);
        self.data.drop_now().await;
        self.install.finish().await;
    }
}

/// The password [`pg_connection`] configures for `label` (trust auth ignores it; tests look
/// for it in responses, storage and logs).
pub fn password(label: &str) -> String {
    format!("pw-{label}-secret")
}

/// A server that accepts connections and never answers; it keeps them open while it lives.
pub async fn tarpit() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    (port, held)
}

/// The configuration of a PostgreSQL connection to `database` at `host:port` (the test server's
/// user), with the password [`password`] makes for `label`.
pub fn pg_config(host: &str, port: u16, database: &str, label: &str) -> Json {
    let url = reqwest::Url::parse(&server_url()).expect("server url");
    let user = if url.username().is_empty() { "postgres" } else { url.username() };
    json!({"hostname": host, "port": port, "database": database, "username": user, "password": password(label), "ssl": false})
}

/// The test server's host and port.
pub fn server_address() -> (String, u16) {
    let url = reqwest::Url::parse(&server_url()).expect("server url");
    (url.host_str().unwrap_or("127.0.0.1").to_owned(), url.port().unwrap_or(5432))
}

/// A PostgreSQL connection to database `name` on the test server.
pub async fn pg_connection(api: &Api, label: &str, database: &str) -> String {
    let (host, port) = server_address();
    let config = pg_config(&host, port, database, label);
    let c = api
        .ok("POST", "/api/connections", Some(json!({"name": label, "type": "postgresql", "configuration": config})))
        .await;
    c["id"].as_str().expect("connection id").to_owned()
}

/// The MariaDB server tests create their databases on.
fn mariadb_opts() -> mysql_async::Opts {
    let url = std::env::var("MARIADB_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    mysql_async::Opts::from_url(&url).unwrap_or_else(|e| panic!("MARIADB_URL {url:?}: {e}"))
}

/// A database of this test's own on the MariaDB server; dropped by [`MariaDb::drop_now`] or
/// swept by a later run.
pub struct MariaDb {
    pub name: String,
}

impl MariaDb {
    pub async fn new() -> Self {
        let mut admin = mysql_async::Conn::new(mariadb_opts()).await.expect("the MariaDB of MARIADB_URL");
        let existing: Vec<String> = admin.query("show databases like 'sl\\_t\\_%'").await.expect("databases");
        for name in existing.iter().filter(|name| left_behind(name)) {
            let _ = admin.query_drop(format!("drop database if exists {name}")).await;
        }
        let name = format!("sl_t_{}_{}", std::process::id(), rand_suffix());
        admin.query_drop(format!("create database {name} character set utf8mb4")).await.expect("create test database");
        Self { name }
    }

    /// A connection to the database, in UTC.
    pub async fn conn(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::from_opts(mariadb_opts())
            .db_name(Some(self.name.clone()))
            .init(vec!["set time_zone = '+00:00'"]);
        mysql_async::Conn::new(opts).await.expect("connect to MariaDB")
    }

    pub async fn drop_now(self) {
        let mut conn = self.conn().await;
        conn.query_drop(format!("drop database {}", self.name)).await.expect("drop test database");
    }

    /// A MySQL / MariaDB connection to the database through `api`.
    pub async fn connection(&self, api: &Api, label: &str) -> String {
        let opts = mariadb_opts();
        let mut config = json!({
            "hostname": opts.ip_or_hostname(), "port": opts.tcp_port(), "database": self.name,
            "username": opts.user().unwrap_or("root"), "ssl": false,
        });
        if let Some(password) = opts.pass() {
            config["password"] = json!(password);
        }
        let body = json!({"name": label, "type": "mysql", "configuration": config});
        api.ok("POST", "/api/connections", Some(body)).await["id"].as_str().expect("connection id").to_owned()
    }
}

/// A model over `query` and a sync of its `fields` into `object`, identity `id`.
pub async fn model_and_sync(
    api: &Api,
    source: &str,
    target: &str,
    query: &str,
    object: &str,
    fields: &[&str],
    mode: &str,
) -> (String, String) {
    let model = api
        .ok(
            "POST",
            "/api/models",
            Some(json!({"name": "m", "connection_id": source, "configuration": {"query": query}})),
        )
        .await;
    let model_id = model["id"].as_str().expect("model id").to_owned();
    let mappings: Vec<Json> =
        fields.iter().map(|f| json!({"source": {"model_id": model_id, "field": f}, "target": f})).collect();
    let sync = api
        .ok(
            "POST",
            "/api/syncs",
            Some(json!({
                "name": "s", "mode": mode, "schedule": {"frequency": "manual"},
                "target": {"connection_id": target, "object": object},
                "identity": {"source": {"model_id": model_id, "field": "id"}, "target": "id", "function": "Equality"},
                "fields": mappings,
            })),
        )
        .await;
    (model_id, sync["id"].as_str().expect("sync id").to_owned())
}

/// A model of `select id, email from users` on `source`, synced into `public.users` of
/// `target` (identity `id`, mode updateOrCreate).
pub async fn users_sync(api: &Api, source: &str, target: &str) -> (String, String) {
    model_and_sync(api, source, target, "select id, email from users", "public.users", &["email"], "updateOrCreate")
        .await
}

/// Checks an error answer: its status, the JSON error object's shape, and part of its message.
pub fn assert_error(status: u16, body: &Json, expected: u16, message_part: &str) {
    assert_eq!(status, expected, "status for {body}");
    assert_eq!(body["status"], expected, "the body repeats the status: {body}");
    assert!(body["key"].is_string() && body["metadata"].is_object(), "error object shape: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(message_part), "message {message:?} should contain {message_part:?}");
}

/// Asserts that no execution of the installation is left running (or stuck canceling).
pub async fn assert_none_running(install: &Install) {
    let state = install.db.client().await;
    let running: i64 = state
        .query_one("select count(*) from executions where status in ('running', 'canceling')", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(running, 0, "no execution is left running");
}

/// Starts the sync and waits (up to `timeout`) for the execution to end; returns it.
pub async fn run_sync(api: &Api, sync_id: &str, timeout: Duration) -> Json {
    let execution = api.ok("POST", &format!("/api/syncs/{sync_id}/executions"), Some(json!({}))).await;
    wait_for_end(api, sync_id, execution["id"].as_str().expect("execution id"), timeout).await
}

pub async fn wait_for_end(api: &Api, sync_id: &str, execution_id: &str, timeout: Duration) -> Json {
    let deadline = Instant::now() + timeout;
    loop {
        let e = api.ok("GET", &format!("/api/syncs/{sync_id}/executions/{execution_id}"), None).await;
        if matches!(e["status"].as_str(), Some("completed" | "completed_with_errors" | "failed" | "canceled")) {
            return e;
        }
        assert!(Instant::now() < deadline, "execution did not finish in {timeout:?}: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the 12-column sample `users` table with `rows` rows (and an empty copy in `target`).
pub async fn users_table(source: &tokio_postgres::Client, target: &tokio_postgres::Client, rows: i64) {
    source.batch_execute(USERS_TABLE).await.expect("create source table");
    source.batch_execute(&USERS_FILL.replace("{rows}", &rows.to_string())).await.expect("fill source table");
    target.batch_execute(USERS_TABLE).await.expect("create target table");
}

const USERS_TABLE: &str = include_str!("../../../../testdata/sample_users_table.sql");
const USERS_FILL: &str = include_str!("../../../../testdata/sample_users_fill.sql");

/// Every `users` column, for mappings.
pub const USERS_FIELDS: &[&str] = &[
    "email",
    "first_name",
    "last_name",
    "company",
    "score",
    "revenue",
    "active",
    "created_at",
    "updated_at",
    "attributes",
    "country",
];

/// Row count and a digest of every column of `users`, ordered by id.
pub async fn checksum(client: &tokio_postgres::Client) -> String {
    client.query_one(include_str!("../../../../testdata/checksum_users.sql"), &[]).await.expect("checksum").get(0)
}
