//! PostgreSQL access: the connection pool and schema migrations.

use std::time::Duration;

use deadpool_postgres::{Config as PoolConfig, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// A pooled connection handle to Syncline's state database.
pub type DbPool = Pool;

/// A transaction on a pooled connection.
pub type Transaction<'a> = deadpool_postgres::Transaction<'a>;

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {}", describe(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("database pool setup: {0}")]
    Setup(String),
    #[error("migrations: {0}")]
    Migrate(#[from] refinery::Error),
}

/// The server's message for a failed statement (tokio-postgres' own text is just "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Why the database refused a statement because of the values it was given (the caller's
/// mistake, not an outage), read from the SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 23505: a unique constraint or index already holds the value.
    Duplicate,
    /// 23503: a referenced row does not exist.
    MissingReference,
    /// 23514: a check constraint refused the value.
    Check,
    /// 23502: a required column was left empty.
    Missing,
    /// Class 22 (data exceptions) and 54 (limits, such as an index row too large).
    InvalidValue,
}

impl Refusal {
    /// The refusal a SQLSTATE code stands for; `None` for codes that are not the caller's doing.
    pub fn of_code(code: &str) -> Option<Self> {
        match code {
            "23505" => Some(Self::Duplicate),
            "23503" => Some(Self::MissingReference),
            "23514" => Some(Self::Check),
            "23502" => Some(Self::Missing),
            _ if code.starts_with("22") || code.starts_with("54") => Some(Self::InvalidValue),
            _ => None,
        }
    }
}

/// A statement the database refused, with what the server said about it.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    pub refusal: Refusal,
    /// The constraint or index that refused it, when one did.
    pub constraint: Option<&'a str>,
    pub table: Option<&'a str>,
    pub column: Option<&'a str>,
    /// `Key (…)=(…) already exists.` and the like.
    pub detail: Option<&'a str>,
    pub message: &'a str,
}

impl DbError {
    /// What the database refused, when the failure is the values' fault (see [`Refusal`]).
    pub fn refused(&self) -> Option<Refused<'_>> {
        let Self::Query(e) = self else { return None };
        let db = e.as_db_error()?;
        Some(Refused {
            refusal: Refusal::of_code(db.code().code())?,
            constraint: db.constraint(),
            table: db.table(),
            column: db.column(),
            detail: db.detail(),
            message: db.message(),
        })
    }

    /// Whether no pooled connection became free in time (the pool is busy, not broken).
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Pool(deadpool_postgres::PoolError::Timeout(_)))
    }
}

/// Opens a pool of at most `size` connections to `url`. A caller waits at most `wait` for a
/// free connection (and as long again to open one); then it gets [`DbError::Pool`] with a
/// timeout, never an endless wait.
pub fn pool(url: &str, size: usize, wait: Duration) -> Result<DbPool, DbError> {
    let mut cfg = PoolConfig::new();
    cfg.url = Some(url.to_owned());
    cfg.manager = Some(ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let timeouts = Timeouts { wait: Some(wait), create: Some(wait), recycle: Some(wait) };
    cfg.pool = Some(deadpool_postgres::PoolConfig { max_size: size, timeouts, ..Default::default() });
    cfg.create_pool(Some(Runtime::Tokio1), NoTls).map_err(|e| DbError::Setup(e.to_string()))
}

/// Advisory-lock id serialising migrators ("syncline" in ASCII).
const MIGRATION_LOCK: i64 = 0x73796e636c696e65;

/// Applies pending migrations. Concurrent callers (several replicas starting at once) queue on
/// an advisory lock, so exactly one migrates and the others find nothing left to do.
/// Returns the names of the migrations this call applied.
pub async fn migrate(pool: &DbPool) -> Result<Vec<String>, DbError> {
    let mut conn = pool.get().await?;
    conn.execute("select pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let client: &mut tokio_postgres::Client = &mut conn;
    let outcome = embedded::migrations::runner().set_grouped(true).run_async(client).await;
    conn.execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    let report = outcome?;
    Ok(report.applied_migrations().iter().map(|m| m.to_string()).collect())
}

/// Whether the database answers a trivial query.
pub async fn ping(pool: &DbPool) -> bool {
    match pool.get().await {
        Ok(conn) => conn.simple_query("select 1").await.is_ok(),
        Err(_) => false,
    }
}

/// Relays the payloads of the notifications sent on `channel` of the database at `url` to the
/// sender's subscribers, listening again a second after a lost connection (best effort, see
/// [`crate::relay`]).
pub fn listen(url: &str, channel: &'static str) -> tokio::sync::broadcast::Sender<String> {
    let url = url.to_owned();
    crate::relay::relay_forever(channel, move |relay| relay_notifications(url.clone(), channel, relay))
}

/// Listens on `channel` until the connection ends.
async fn relay_notifications(
    url: String,
    channel: &str,
    relay: tokio::sync::broadcast::Sender<String>,
) -> Result<(), tokio_postgres::Error> {
    use futures::StreamExt;
    let (client, mut connection) = tokio_postgres::connect(&url, NoTls).await?;
    let (sender, mut payloads) = tokio::sync::mpsc::unbounded_channel();
    // The connection delivers notifications only while it is polled for them.
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message? {
                let _ = sender.send(n.payload().to_owned());
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("listen {channel}")).await?;
    while let Some(payload) = payloads.recv().await {
        let _ = relay.send(payload);
    }
    driver.await.unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_name_what_the_values_did_wrong() {
        assert_eq!(Refusal::of_code("23505"), Some(Refusal::Duplicate));
        assert_eq!(Refusal::of_code("23503"), Some(Refusal::MissingReference));
        assert_eq!(Refusal::of_code("23514"), Some(Refusal::Check));
        assert_eq!(Refusal::of_code("23502"), Some(Refusal::Missing));
        assert_eq!(Refusal::of_code("22001"), Some(Refusal::InvalidValue), "string too long");
        assert_eq!(Refusal::of_code("22P02"), Some(Refusal::InvalidValue), "invalid text representation");
        assert_eq!(Refusal::of_code("54000"), Some(Refusal::InvalidValue), "index row too large");
    }

    #[test]
    fn outages_and_server_faults_are_no_refusal() {
        for code in ["08006", "57P01", "53300", "40001", "42P01", "XX000", "23000"] {
            assert_eq!(Refusal::of_code(code), None, "{code}");
        }
    }

    #[test]
    fn a_pool_timeout_is_busy_and_no_refusal() {
        let busy = DbError::Pool(deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait));
        assert!(busy.is_busy());
        assert!(busy.refused().is_none());
        assert!(!DbError::Setup("x".into()).is_busy());
    }

    #[tokio::test]
    async fn listeners_hear_what_committed_transactions_notify() {
        let url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let channel = "syncline_listen_test";
        let mut heard = listen(&url, channel).subscribe();
        let pool = pool(&url, 1, Duration::from_secs(5)).expect("pool");
        let client = pool.get().await.expect("a connection");
        let notify = |payload: &'static str| format!("select pg_notify('{channel}', '{payload}')");
        // The listener may still be connecting: notify until it hears, rolled back first.
        let first = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                client.batch_execute(&format!("begin; {}; rollback", notify("rolled back"))).await.expect("notify");
                client.batch_execute(&notify("committed")).await.expect("notify");
                if let Ok(Ok(payload)) = tokio::time::timeout(Duration::from_millis(200), heard.recv()).await {
                    return payload;
                }
            }
        })
        .await
        .expect("heard within 10 s");
        assert_eq!(first, "committed", "a rolled-back notification is never sent");
    }
}
