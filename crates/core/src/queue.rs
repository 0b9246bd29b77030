//! The job queue: apalis over Redis, wrapped so every process names queues, workers and
//! heartbeats the same way.
//!
//! Delivery is at least once. Jobs carry ids only; handlers claim their execution with a
//! conditional update in Postgres, so a duplicate delivery is a no-op.

use std::time::Duration;

use apalis::prelude::TaskSink;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Runs one model sync execution.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncJob {
    pub execution_id: Uuid,
}

/// The Redis-backed storage for [`SyncJob`]s.
pub type SyncQueue = RedisStorage<SyncJob>;

/// A queue failure.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] apalis_redis::RedisError),
    #[error("enqueue: {0}")]
    Push(String),
}

/// Connects to Redis and opens the model-sync queue under `prefix`.
///
/// `heartbeat` is how often workers report in; a worker silent for three heartbeats is
/// presumed dead and its in-flight jobs are re-enqueued by the live ones.
pub async fn connect(
    redis_url: &str,
    prefix: &str,
    heartbeat: Duration,
) -> Result<(SyncQueue, ConnectionManager), QueueError> {
    let conn = apalis_redis::connect(redis_url).await?;
    let config = Config::default()
        .queue(format!("{prefix}:model_sync"))
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(3)
        .batch_size(1);
    Ok((RedisStorage::new(conn.clone()).with_config(config), conn))
}

/// Enqueues the job for `execution_id`.
pub async fn enqueue(queue: &SyncQueue, execution_id: Uuid) -> Result<(), QueueError> {
    let mut queue = queue.clone();
    queue.push(SyncJob { execution_id }).await.map_err(|e| QueueError::Push(e.to_string()))
}

/// Whether Redis answers `PING`.
pub async fn ping(conn: &ConnectionManager) -> bool {
    let mut conn = conn.clone();
    redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
}

/// A worker name unique to this process, as apalis-redis requires.
pub fn worker_name(role: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{role}-{host}-{}", Uuid::new_v4().simple())
}
