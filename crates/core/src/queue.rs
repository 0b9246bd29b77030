//! The job queues: apalis over Redis, one queue per job kind (so a backlog of one kind never
//! holds up another), wrapped so every process names queues, workers and heartbeats the same
//! way.
//!
//! Delivery is at least once. Jobs carry ids only; handlers claim their execution with a
//! conditional update in Postgres, so a duplicate delivery is a no-op.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use apalis::prelude::TaskSink;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Runs one execution (of the queue's kind).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Job {
    pub execution_id: Uuid,
    /// The trace of whoever enqueued the job (W3C Trace Context), continued by the worker.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub trace: HashMap<String, String>,
}

/// The Redis-backed storage of one kind's [`Job`]s.
pub type JobQueue = RedisStorage<Job>;

/// A queue failure.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] apalis_redis::RedisError),
    #[error("enqueue: {0}")]
    Push(String),
}

/// The queue of every job kind, by kind.
#[derive(Clone)]
pub struct Queues {
    by_kind: BTreeMap<&'static str, JobQueue>,
}

/// Connects to Redis and opens the queue of each of `kinds` under `prefix`
/// (`{prefix}:{kind}`).
///
/// `heartbeat` is how often workers report in; a worker silent for three heartbeats is
/// presumed dead and its in-flight jobs are re-enqueued by the live ones.
pub async fn connect(
    redis_url: &str,
    prefix: &str,
    heartbeat: Duration,
    kinds: &[&'static str],
) -> Result<(Queues, ConnectionManager), QueueError> {
    let conn = apalis_redis::connect(redis_url).await?;
    let by_kind = kinds
        .iter()
        .map(|kind| {
            let config = Config::default()
                .queue(format!("{prefix}:{kind}"))
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(3)
                .batch_size(1);
            (*kind, RedisStorage::new(conn.clone()).with_config(config))
        })
        .collect();
    Ok((Queues { by_kind }, conn))
}

impl Queues {
    /// The queue of `kind`.
    pub fn of(&self, kind: &str) -> Result<&JobQueue, QueueError> {
        self.by_kind.get(kind).ok_or_else(|| QueueError::Push(format!("no queue for job kind {kind:?}")))
    }

    /// Enqueues the job for `execution_id` of `kind`, carrying the current trace.
    pub async fn enqueue(&self, kind: &str, execution_id: Uuid) -> Result<(), QueueError> {
        let mut queue = self.of(kind)?.clone();
        let job = Job { execution_id, trace: crate::telemetry::trace_carrier() };
        queue.push(job).await.map_err(|e| QueueError::Push(e.to_string()))
    }
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
