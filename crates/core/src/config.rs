//! Process configuration, read once from the environment and validated at start.
//!
//! Every variable is the one the Polytomic on-premises seeds use. A missing or malformed value
//! yields a [`ConfigError`] whose message is one line naming the variable and what was expected.

use std::{collections::HashMap, fmt, path::PathBuf, time::Duration};

use url::Url;

use crate::{
    crypto::SecretBox,
    egress::{Egress, Rule},
};

/// Log verbosity accepted by `LOG_LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn directive(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// A configuration problem, rendered as one line naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var} {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self { var, problem: problem.into() }
    }
}

/// The issuer sign-in uses unless `OIDC_ISSUER_URL` names another.
const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// How many state-database connections each role's pool holds, and how long a caller waits
/// for one before the answer is 503 (a busy database never hangs the API).
#[derive(Debug, Clone, Copy)]
pub struct PoolSizes {
    pub api: usize,
    pub worker: usize,
    pub scheduler: usize,
    pub wait: Duration,
}

/// Deadlines of calls to customer systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Resolving, connecting, TLS and authenticating (`CONNECTION_CONNECT_TIMEOUT_SECONDS`).
    pub connect: Duration,
    /// A call made while an API request waits: tests, samples, previews, listings
    /// (`CONNECTION_QUERY_TIMEOUT_SECONDS`); also the statement timeout of model queries.
    pub query: Duration,
    /// During a sync, the longest wait for the next answer of a customer system: the next
    /// part of a read, a batch write (`CONNECTION_IDLE_TIMEOUT_SECONDS`).
    pub idle: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self { connect: Duration::from_secs(10), query: Duration::from_secs(30), idle: Duration::from_secs(600) }
    }
}

/// The store URL of `EXECUTION_LOG_BUCKET`: a URL as given, or a bucket name in `region` (the
/// region `gcs` names a Google Cloud Storage bucket, as Polytomic's deployments spell it).
fn log_bucket_url(bucket: &str, region: Option<&str>) -> String {
    match region.filter(|r| !r.is_empty()) {
        _ if bucket.contains("://") => bucket.to_owned(),
        Some("gcs") => format!("gs://{bucket}"),
        Some(region) => format!("s3://{bucket}?region={region}"),
        None => format!("s3://{bucket}"),
    }
}

/// How event routes deliver: micro-batches of at most `batch_rows` events, sent once their
/// oldest event waited `batch_age`; a destination that keeps failing is tried for `retry_for`
/// before the batch goes to dead letters; one worker process delivers at most `routes` routes
/// at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDelivery {
    /// How long delivered events are kept for replays (`EVENTS_RETENTION_HOURS`; 0: dropped
    /// once delivered).
    pub retention: Duration,
    pub batch_rows: usize,
    pub batch_age: Duration,
    pub retry_for: Duration,
    pub routes: usize,
    /// How often a route reads its lookup model again (`EVENTS_LOOKUP_REFRESH_MINUTES`).
    pub lookup_refresh: Duration,
}

/// Where Slack messages go (see [`Settings::slack`]).
#[derive(Clone)]
pub struct SlackSettings {
    pub api_url: Url,
    pub token: Option<String>,
    pub channel: Option<String>,
}

/// Where sync error emails go out (see [`Settings::smtp`]).
#[derive(Clone)]
pub struct SmtpSettings {
    /// `smtp://` (STARTTLS when the server offers it) or `smtps://`, with credentials if any.
    pub url: Url,
    /// The sender address.
    pub from: String,
}

/// Settings shared by every role.
#[derive(Clone)]
pub struct Settings {
    pub database_url: String,
    pub redis_url: String,
    pub public_url: Url,
    pub root_user: String,
    pub deployment: String,
    pub deployment_key: String,
    /// Secret the key sealing stored secrets derives from (`ENCRYPTION_KEY`, else `DEPLOYMENT_KEY`).
    pub encryption_key: String,
    /// Earlier encryption secrets (`PREVIOUS_ENCRYPTION_KEYS`): they open values, never seal them.
    pub previous_encryption_keys: Vec<String>,
    /// The OpenID Connect issuer users sign in with (Google unless `OIDC_ISSUER_URL` names another).
    pub oidc_issuer_url: String,
    pub oidc_client_id: String,
    pub oidc_client_secret: String,
    pub port: u16,
    pub job_payload_path: String,
    /// `EXECUTION_LOG_BUCKET` (with `EXECUTION_LOG_REGION`): where executions' record logs go,
    /// as a store URL; unset, they go to the payload store under `record-logs/`.
    pub execution_log_url: Option<String>,
    pub log_level: LogLevel,
    pub valid_origins: Vec<String>,
    /// How long an execution runs before it is emailed as running long, once
    /// (`LONGSYNC_THRESHOLD`, minutes, fractions allowed); `None` when 0 or unset.
    pub longsync_threshold: Option<Duration>,
    /// Prefix of every Redis key Syncline owns (queues, locks); lets installs share a Redis.
    pub redis_key_prefix: String,
    /// Jobs one worker process runs at once.
    pub worker_concurrency: usize,
    /// Worker heartbeat; an execution whose worker missed three is handed to another.
    pub worker_heartbeat: Duration,
    /// Executions of one organization a worker process runs at once while others may wait.
    pub worker_organization_slots: usize,
    /// `MODEL_SYNC_VERIFY_RECORDS`: after its writes, a model sync reads back every record it
    /// wrote up to this many, and a random sample of this many above it, and compares them with
    /// what it sent (0: no verification).
    pub verify_records: u64,
    /// `BULK_PARTITION_ROWS`: about how many rows one partition of a bulk sync's table holds;
    /// a larger table is cut into partitions that workers load in parallel.
    pub bulk_partition_rows: u64,
    /// `CDC_MAX_RETAINED_WAL_MB`: the most WAL a bulk sync's replication slot may hold at its
    /// source before its capture is stopped and the slot dropped.
    pub cdc_max_retained_wal_mb: u64,
    /// State-database connections each role may hold, and how long a request waits for one.
    pub pools: PoolSizes,
    /// Deadlines of every call to a customer system.
    pub deadlines: Deadlines,
    /// `CONNECTION_ALLOWED_NETWORKS`: when set, the only networks and hosts connections reach.
    pub connection_allowed: Vec<Rule>,
    /// `CONNECTION_DENIED_NETWORKS`: networks and hosts connections never reach.
    pub connection_denied: Vec<Rule>,
    /// `LOCAL_FILES_ROOT`: the directory below which `file://` connections may write (none
    /// when unset).
    pub local_files_root: Option<PathBuf>,
    /// `EVENTS_MAX_BATCH_KB`, `EVENTS_MAX_MESSAGE_KB`: the largest request body (decompressed)
    /// and message the `/v1` ingestion routes accept, in bytes (Segment's 500 KB and 32 KB by
    /// default; RudderStack's clients send up to 4 MiB).
    pub events_max_batch: usize,
    pub events_max_message: usize,
    /// How routes deliver events.
    pub event_delivery: EventDelivery,
    /// Where notification rules post to Slack: the Web API (`SLACK_API_URL`, Slack's own unless
    /// set), the bot token (`SLACK_TOKEN`) and the channel of rules that name none
    /// (`SLACK_CHANNEL`), as Polku named them.
    pub slack: SlackSettings,
    /// The SMTP server sync error emails go through (`SMTP_URL`, `SMTP_FROM`); without it no
    /// email is sent and asking for one is refused.
    pub smtp: Option<SmtpSettings>,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `REFERENCE_CONNECTORS`: also offer the in-memory reference connector (`memory`), a test
    /// and documentation tool with configurable faults; off unless set to `true`.
    pub reference_connectors: bool,
    /// Deprecation notices gathered while reading, logged once telemetry is up.
    pub warnings: Vec<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("public_url", &self.public_url.as_str())
            .field("deployment", &self.deployment)
            .field("oidc_issuer_url", &self.oidc_issuer_url)
            .field("oidc_client_id", &self.oidc_client_id)
            .field("port", &self.port)
            .field("job_payload_path", &self.job_payload_path)
            .field("execution_log_url", &self.execution_log_url)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads the settings from a variable map (the environment, or a test's).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let mut warnings = Vec::new();
        let redis_url = match env.get("REDIS_URL") {
            Some(url) => url,
            None => {
                let (var, url) = ["CACHE_URL", "EXECUTOR_CACHE_URL"]
                    .into_iter()
                    .find_map(|var| env.get(var).map(|url| (var, url)))
                    .ok_or_else(|| ConfigError::new("REDIS_URL", "is required (redis://host:6379)"))?;
                warnings.push(format!("{var} is deprecated: set REDIS_URL instead"));
                url
            }
        };
        parse_url("REDIS_URL", &redis_url, &["redis", "rediss"])?;
        let database_url = env.required("DATABASE_URL", "(postgres://user:pass@host:5432/db)")?;
        parse_url("DATABASE_URL", &database_url, &["postgres", "postgresql"])?;
        let public_url = env.required("POLYTOMIC_URL", "(the public base URL, e.g. https://syncline.example.com)")?;
        let public_url = parse_url("POLYTOMIC_URL", &public_url, &["http", "https"])?;
        let job_payload_path =
            env.required("JOB_PAYLOAD_PATH", "(s3://bucket?region=…, gs://…, azblob://…, file:///…)")?;
        crate::payload::validate_url(&job_payload_path)
            .map_err(|e| ConfigError::new("JOB_PAYLOAD_PATH", e.to_string()))?;
        let execution_log_url = env
            .get("EXECUTION_LOG_BUCKET")
            .filter(|b| !b.is_empty())
            .map(|bucket| log_bucket_url(&bucket, env.get("EXECUTION_LOG_REGION").as_deref()));
        if let Some(url) = &execution_log_url {
            crate::payload::validate_url(url).map_err(|e| ConfigError::new("EXECUTION_LOG_BUCKET", e.to_string()))?;
        }
        let log_level = match env.get("LOG_LEVEL").as_deref() {
            None | Some("info") => LogLevel::Info,
            Some("debug") => LogLevel::Debug,
            Some("warn") => LogLevel::Warn,
            Some("error") => LogLevel::Error,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_LEVEL",
                    format!("must be debug, info, warn or error, not {other:?}"),
                ));
            }
        };
        let mut valid_origins: Vec<String> = env
            .get("VALID_ORIGINS")
            .map(|v| {
                v.split(',').map(|o| o.trim().trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()).collect()
            })
            .unwrap_or_default();
        valid_origins.push(public_url.origin().ascii_serialization());
        let threshold: f64 = env.number("LONGSYNC_THRESHOLD", 0.0, 0.0)?;
        let deployment_key = env.required("DEPLOYMENT_KEY", "(the deployment key)")?;
        let previous_encryption_keys: Vec<String> = env
            .get("PREVIOUS_ENCRYPTION_KEYS")
            .map(|list| list.split(',').map(|k| k.trim().to_owned()).collect())
            .unwrap_or_default();
        if previous_encryption_keys.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "PREVIOUS_ENCRYPTION_KEYS",
                "has an empty entry (expected a comma list of earlier encryption keys)",
            ));
        }
        let oidc_issuer_url = env.get("OIDC_ISSUER_URL").unwrap_or_else(|| GOOGLE_ISSUER.into());
        parse_url("OIDC_ISSUER_URL", &oidc_issuer_url, &["http", "https"])?;
        let google_client_id = env.required("GOOGLE_CLIENT_ID", "(OAuth client id for sign-in)")?;
        let google_client_secret = env.required("GOOGLE_CLIENT_SECRET", "(OAuth client secret for sign-in)")?;
        let worker_concurrency = env.number("WORKER_CONCURRENCY", 2, 1)?;
        let defaults = Deadlines::default();
        let seconds = |var, default: Duration| env.number(var, default.as_secs(), 1).map(Duration::from_secs);
        let deadlines = Deadlines {
            connect: seconds("CONNECTION_CONNECT_TIMEOUT_SECONDS", defaults.connect)?,
            query: seconds("CONNECTION_QUERY_TIMEOUT_SECONDS", defaults.query)?,
            idle: seconds("CONNECTION_IDLE_TIMEOUT_SECONDS", defaults.idle)?,
        };
        let pools = PoolSizes {
            api: env.number("API_POOL_SIZE", 16, 2)?,
            worker: env.number("WORKER_POOL_SIZE", 2 * worker_concurrency + 2, 2)?,
            scheduler: env.number("SCHEDULER_POOL_SIZE", 2, 1)?,
            wait: Duration::from_secs(env.number("DATABASE_POOL_TIMEOUT_SECONDS", 5, 1)?),
        };
        Ok(Self {
            database_url,
            redis_url,
            public_url,
            root_user: env.required("ROOT_USER", "(the first admin's email)")?,
            deployment: env.required("DEPLOYMENT", "(the deployment id)")?,
            encryption_key: env.get("ENCRYPTION_KEY").unwrap_or_else(|| deployment_key.clone()),
            previous_encryption_keys,
            deployment_key,
            oidc_issuer_url,
            oidc_client_id: env.get("OIDC_CLIENT_ID").unwrap_or(google_client_id),
            oidc_client_secret: env.get("OIDC_CLIENT_SECRET").unwrap_or(google_client_secret),
            port: env.number("PORT", 5100, 1)?,
            job_payload_path,
            execution_log_url,
            log_level,
            valid_origins,
            longsync_threshold: (threshold > 0.0).then(|| Duration::from_secs_f64(threshold * 60.0)),
            redis_key_prefix: env.get("REDIS_KEY_PREFIX").unwrap_or_else(|| "syncline".into()),
            worker_concurrency,
            worker_heartbeat: Duration::from_secs(env.number("WORKER_HEARTBEAT_SECONDS", 10, 1)?),
            worker_organization_slots: env.number("WORKER_ORGANIZATION_SLOTS", worker_concurrency.div_ceil(2), 1)?,
            verify_records: env.number("MODEL_SYNC_VERIFY_RECORDS", 1_000_000, 0)?,
            bulk_partition_rows: env.number("BULK_PARTITION_ROWS", 250_000, 1)?,
            cdc_max_retained_wal_mb: env.number("CDC_MAX_RETAINED_WAL_MB", 10_240, 1)?,
            pools,
            deadlines,
            connection_allowed: env
                .list("CONNECTION_ALLOWED_NETWORKS", "a network (10.0.0.0/8), an address or a host name")?,
            connection_denied: env
                .list("CONNECTION_DENIED_NETWORKS", "a network (10.0.0.0/8), an address or a host name")?,
            local_files_root: env.directory("LOCAL_FILES_ROOT")?,
            events_max_batch: env.number("EVENTS_MAX_BATCH_KB", 512, 1)?.min(EVENTS_MAX_BODY_KB) * 1024,
            events_max_message: env.number("EVENTS_MAX_MESSAGE_KB", 32, 1)?.min(EVENTS_MAX_BODY_KB) * 1024,
            slack: SlackSettings {
                api_url: parse_url(
                    "SLACK_API_URL",
                    &env.get("SLACK_API_URL").unwrap_or_else(|| "https://slack.com/api/".into()),
                    &["http", "https"],
                )?,
                token: env.get("SLACK_TOKEN"),
                channel: env.get("SLACK_CHANNEL"),
            },
            smtp: match env.get("SMTP_URL") {
                None => None,
                Some(url) => Some(SmtpSettings {
                    url: parse_url("SMTP_URL", &url, &["smtp", "smtps"])?,
                    from: env.required("SMTP_FROM", "(the sender of sync error emails)")?,
                }),
            },
            event_delivery: EventDelivery {
                retention: Duration::from_secs(env.number("EVENTS_RETENTION_HOURS", 168, 0)? * 3600),
                batch_rows: env.number("EVENTS_BATCH_ROWS", 10_000, 1)?,
                batch_age: Duration::from_millis(env.number("EVENTS_BATCH_AGE_MS", 500, 1)?),
                retry_for: Duration::from_secs(env.number("EVENTS_RETRY_MINUTES", 10, 1)? * 60),
                routes: env.number("EVENTS_ROUTES_PER_WORKER", 64, 1)?,
                lookup_refresh: Duration::from_secs(env.number("EVENTS_LOOKUP_REFRESH_MINUTES", 15, 1)? * 60),
            },
            trusted_proxies: env
                .list("TRUSTED_PROXIES", "a network (10.0.0.0/8) or an address")?
                .into_iter()
                .map(|net: Network| net.0)
                .collect(),
            reference_connectors: env.flag("REFERENCE_CONNECTORS")?,
            warnings,
        })
    }

    /// Where connections may go: never the state database, and as the operator's lists say.
    pub fn egress(&self) -> Egress {
        Egress::new(&self.database_url, self.connection_allowed.clone(), self.connection_denied.clone())
            .with_local_files(self.local_files_root.clone())
    }

    /// The keyring sealing secrets at rest: the current encryption key and the previous ones.
    pub fn secret_box(&self) -> SecretBox {
        SecretBox::new(&self.encryption_key, &self.previous_encryption_keys)
    }
}

/// The most `EVENTS_MAX_BATCH_KB` and `EVENTS_MAX_MESSAGE_KB` may be (8 MiB).
const EVENTS_MAX_BODY_KB: usize = 8 * 1024;

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    fn get(&self, var: &str) -> Option<String> {
        self.0.get(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn required(&self, var: &'static str, expected: &str) -> Result<String, ConfigError> {
        self.get(var).ok_or_else(|| ConfigError::new(var, format!("is required {expected}")))
    }

    /// A comma list of `T`s (empty when unset); a bad entry names the variable and `expected`.
    fn list<T: std::str::FromStr>(&self, var: &'static str, expected: &str) -> Result<Vec<T>, ConfigError> {
        let Some(raw) = self.get(var) else { return Ok(Vec::new()) };
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry.parse().map_err(|_| ConfigError::new(var, format!("has {entry:?}, which is not {expected}")))
            })
            .collect()
    }

    /// `true` or `false` (unset is `false`).
    fn flag(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self.get(var).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ConfigError::new(var, format!("must be true or false, not {other:?}"))),
        }
    }

    /// An absolute directory without `..`, or `None` when unset.
    fn directory(&self, var: &'static str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(raw) = self.get(var) else { return Ok(None) };
        let path = PathBuf::from(&raw);
        match path.is_absolute() && !path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            true => Ok(Some(path)),
            false => Err(ConfigError::new(var, format!("must be an absolute directory without .., not {raw:?}"))),
        }
    }

    /// A whole number of at least `min`, or `default` when unset.
    fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
        &self,
        var: &'static str,
        default: T,
        min: T,
    ) -> Result<T, ConfigError> {
        let Some(raw) = self.get(var) else { return Ok(default) };
        match raw.parse::<T>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(ConfigError::new(var, format!("must be a whole number of at least {min}, not {raw:?}"))),
        }
    }
}

/// A network or a single address (`10.0.0.0/8`, `10.1.2.3`).
struct Network(ipnet::IpNet);

impl std::str::FromStr for Network {
    type Err = ();

    fn from_str(raw: &str) -> Result<Self, ()> {
        match raw.parse::<ipnet::IpNet>() {
            Ok(net) => Ok(Self(net)),
            Err(_) => raw.parse::<std::net::IpAddr>().map(|ip| Self(ip.into())).map_err(drop),
        }
    }
}

fn parse_url(var: &'static str, raw: &str, schemes: &[&str]) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| ConfigError::new(var, format!("is not a valid URL ({e})")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError::new(
            var,
            format!("must use one of the schemes {}, not {:?}", schemes.join(", "), url.scheme()),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        [
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/db"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("POLYTOMIC_URL", "https://sync.example.com"),
            ("ROOT_USER", "root@example.com"),
            ("DEPLOYMENT", "test"),
            ("DEPLOYMENT_KEY", "k"),
            ("GOOGLE_CLIENT_ID", "id"),
            ("GOOGLE_CLIENT_SECRET", "secret"),
            ("JOB_PAYLOAD_PATH", "file:///tmp/payloads"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn error_for(vars: HashMap<String, String>) -> String {
        Settings::from_vars(&vars).expect_err("settings should be rejected").to_string()
    }

    #[test]
    fn reads_defaults() {
        let s = Settings::from_vars(&base()).expect("valid settings");
        assert_eq!(s.port, 5100);
        assert_eq!(s.log_level, LogLevel::Info);
        assert_eq!(s.valid_origins, vec!["https://sync.example.com"]);
        assert!(s.longsync_threshold.is_none());
        assert!(s.warnings.is_empty());
        assert!(!s.reference_connectors, "production installs never see the reference connector");
    }

    #[test]
    fn reference_connectors_take_a_boolean() {
        let mut vars = base();
        vars.insert("REFERENCE_CONNECTORS".into(), "true".into());
        assert!(Settings::from_vars(&vars).expect("valid settings").reference_connectors);
        vars.insert("REFERENCE_CONNECTORS".into(), "yes".into());
        assert_eq!(error_for(vars), "configuration error: REFERENCE_CONNECTORS must be true or false, not \"yes\"");
    }

    #[test]
    fn names_the_missing_variable() {
        let mut vars = base();
        vars.remove("DEPLOYMENT_KEY");
        assert_eq!(error_for(vars), "configuration error: DEPLOYMENT_KEY is required (the deployment key)");
    }

    #[test]
    fn rejects_malformed_values() {
        let mut vars = base();
        vars.insert("PORT".into(), "eighty".into());
        assert!(error_for(vars).starts_with("configuration error: PORT must be a whole number of at least 1"));
        let mut vars = base();
        vars.insert("LOG_LEVEL".into(), "loud".into());
        assert!(error_for(vars).contains("LOG_LEVEL must be debug, info, warn or error"));
        let mut vars = base();
        vars.insert("DATABASE_URL".into(), "mysql://x".into());
        assert!(error_for(vars).contains("DATABASE_URL must use one of the schemes postgres, postgresql"));
        let mut vars = base();
        vars.insert("JOB_PAYLOAD_PATH".into(), "ftp://x".into());
        assert!(error_for(vars).starts_with("configuration error: JOB_PAYLOAD_PATH"));
    }

    #[test]
    fn encryption_key_defaults_to_the_deployment_key() {
        let s = Settings::from_vars(&base()).expect("valid settings");
        assert_eq!((s.encryption_key.as_str(), s.previous_encryption_keys.len()), ("k", 0));
        let sealed = s.secret_box().seal(b"secret");

        let mut vars = base();
        vars.insert("ENCRYPTION_KEY".into(), "new".into());
        vars.insert("PREVIOUS_ENCRYPTION_KEYS".into(), " older , k ".into());
        let s = Settings::from_vars(&vars).expect("rotated keys");
        assert_eq!(s.encryption_key, "new");
        assert_eq!(s.previous_encryption_keys, vec!["older", "k"]);
        assert_eq!(s.secret_box().open(&sealed).expect("the deployment key is a previous key"), b"secret");
        assert!(!format!("{s:?}").contains("older"), "keys stay out of Debug");
    }

    #[test]
    fn rejects_an_empty_previous_key() {
        let mut vars = base();
        vars.insert("PREVIOUS_ENCRYPTION_KEYS".into(), "a,,b".into());
        assert_eq!(
            error_for(vars),
            "configuration error: PREVIOUS_ENCRYPTION_KEYS has an empty entry (expected a comma list of earlier encryption keys)"
        );
    }

    #[test]
    fn oidc_defaults_to_google() {
        let s = Settings::from_vars(&base()).expect("valid settings");
        assert_eq!(s.oidc_issuer_url, "https://accounts.google.com");
        assert_eq!((s.oidc_client_id.as_str(), s.oidc_client_secret.as_str()), ("id", "secret"));
        let mut vars = base();
        vars.insert("OIDC_ISSUER_URL".into(), "http://127.0.0.1:9400".into());
        vars.insert("OIDC_CLIENT_ID".into(), "oidc-id".into());
        vars.insert("OIDC_CLIENT_SECRET".into(), "oidc-secret".into());
        let s = Settings::from_vars(&vars).expect("valid settings");
        assert_eq!(s.oidc_issuer_url, "http://127.0.0.1:9400");
        assert_eq!((s.oidc_client_id.as_str(), s.oidc_client_secret.as_str()), ("oidc-id", "oidc-secret"));
    }

    #[test]
    fn oidc_issuer_must_be_a_web_url() {
        let mut vars = base();
        vars.insert("OIDC_ISSUER_URL".into(), "accounts.google.com".into());
        assert!(error_for(vars).starts_with("configuration error: OIDC_ISSUER_URL is not a valid URL"));
        let mut vars = base();
        vars.insert("OIDC_ISSUER_URL".into(), "ftp://idp.example.com".into());
        assert!(error_for(vars).contains("OIDC_ISSUER_URL must use one of the schemes http, https"));
    }

    #[test]
    fn debug_hides_secrets() {
        let mut vars = base();
        vars.insert("OIDC_CLIENT_SECRET".into(), "oidc-secret-value".into());
        vars.insert("DEPLOYMENT_KEY".into(), "deployment-key-value".into());
        let shown = format!("{:?}", Settings::from_vars(&vars).expect("valid settings"));
        assert!(shown.contains("oidc_client_id"));
        assert!(!shown.contains("oidc-secret-value") && !shown.contains("deployment-key-value"), "{shown}");
    }

    #[test]
    fn reads_how_event_routes_deliver_and_where_slack_is() {
        let mut vars = base();
        let s = Settings::from_vars(&vars).expect("defaults");
        let delivery = s.event_delivery;
        assert_eq!((delivery.batch_rows, delivery.batch_age), (10_000, Duration::from_millis(500)));
        assert_eq!(
            (delivery.retry_for, delivery.retention),
            (Duration::from_secs(600), Duration::from_secs(168 * 3600))
        );
        assert_eq!((s.slack.api_url.as_str(), s.slack.token.as_deref()), ("https://slack.com/api/", None));
        vars.insert("EVENTS_RETENTION_HOURS".into(), "0".into());
        vars.insert("SLACK_TOKEN".into(), "xoxb-secret-value".into());
        vars.insert("SLACK_API_URL".into(), "http://127.0.0.1:9/api/".into());
        let s = Settings::from_vars(&vars).expect("valid settings");
        assert_eq!(s.event_delivery.retention, Duration::ZERO, "dropped once delivered");
        assert_eq!(s.slack.api_url.as_str(), "http://127.0.0.1:9/api/");
        assert!(!format!("{s:?}").contains("xoxb-secret-value"), "the token is not shown");
        vars.insert("EVENTS_BATCH_ROWS".into(), "0".into());
        let error = Settings::from_vars(&vars).expect_err("no empty batches").to_string();
        assert!(error.contains("EVENTS_BATCH_ROWS"), "{error}");
    }

    #[test]
    fn execution_logs_go_to_a_bucket_or_a_url() {
        assert_eq!(log_bucket_url("logs", Some("eu-west-1")), "s3://logs?region=eu-west-1");
        assert_eq!(log_bucket_url("logs", Some("gcs")), "gs://logs");
        assert_eq!(log_bucket_url("logs", None), "s3://logs");
        assert_eq!(log_bucket_url("file:///var/logs", Some("eu-west-1")), "file:///var/logs");
        let mut vars = base();
        assert_eq!(Settings::from_vars(&vars).expect("valid").execution_log_url, None);
        vars.insert("EXECUTION_LOG_BUCKET".into(), "ftp://logs".into());
        let error = Settings::from_vars(&vars).expect_err("no ftp").to_string();
        assert!(error.contains("EXECUTION_LOG_BUCKET"), "{error}");
    }

    #[test]
    fn redis_falls_back_with_a_warning() {
        let mut vars = base();
        vars.remove("REDIS_URL");
        vars.insert("EXECUTOR_CACHE_URL".into(), "redis://cache:6379".into());
        let s = Settings::from_vars(&vars).expect("fallback accepted");
        assert_eq!(s.redis_url, "redis://cache:6379");
        assert_eq!(s.warnings, vec!["EXECUTOR_CACHE_URL is deprecated: set REDIS_URL instead"]);
        vars.insert("CACHE_URL".into(), "redis://newer:6379".into());
        assert_eq!(Settings::from_vars(&vars).expect("fallback").redis_url, "redis://newer:6379");
    }

    #[test]
    fn reads_connection_policy_and_deadlines() {
        let mut vars = base();
        vars.insert("CONNECTION_ALLOWED_NETWORKS".into(), "10.0.0.0/8, db.example.com".into());
        vars.insert("TRUSTED_PROXIES".into(), "10.0.0.1".into());
        vars.insert("CONNECTION_QUERY_TIMEOUT_SECONDS".into(), "3".into());
        let s = Settings::from_vars(&vars).expect("valid settings");
        assert_eq!(s.connection_allowed.len(), 2);
        assert_eq!(s.trusted_proxies, vec!["10.0.0.1/32".parse::<ipnet::IpNet>().expect("net")]);
        assert_eq!(s.deadlines.query, Duration::from_secs(3));
        assert_eq!((s.pools.api, s.pools.worker, s.worker_organization_slots), (16, 6, 1));
        assert_eq!(s.local_files_root, None);
        assert_eq!((s.events_max_batch, s.events_max_message), (512 * 1024, 32 * 1024), "Segment's limits");
        vars.insert("EVENTS_MAX_BATCH_KB".into(), "100000".into());
        let s = Settings::from_vars(&vars).expect("valid settings");
        assert_eq!(s.events_max_batch, 8 << 20, "at most 8 MiB");
        vars.remove("EVENTS_MAX_BATCH_KB");
        vars.insert("LOCAL_FILES_ROOT".into(), "/srv/lake".into());
        let s = Settings::from_vars(&vars).expect("valid settings");
        assert_eq!(s.local_files_root, Some("/srv/lake".into()));
        vars.insert("LOCAL_FILES_ROOT".into(), "/srv/../etc".into());
        assert_eq!(
            error_for(vars.clone()),
            "configuration error: LOCAL_FILES_ROOT must be an absolute directory without .., not \"/srv/../etc\""
        );
        vars.remove("LOCAL_FILES_ROOT");
        vars.insert("CONNECTION_DENIED_NETWORKS".into(), "10.0.0.0/40".into());
        assert_eq!(
            error_for(vars),
            "configuration error: CONNECTION_DENIED_NETWORKS has \"10.0.0.0/40\", which is not a network (10.0.0.0/8), an address or a host name"
        );
    }
}
