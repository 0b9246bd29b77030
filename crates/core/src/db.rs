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
