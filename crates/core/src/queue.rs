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
    /// The channel that names the kind of each job queued, so idle workers fetch it at once.
    wake_channel: String,
    conn: ConnectionManager,
    client: redis::Client,
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
    let client = redis::Client::open(redis_url)?;
    let conn = client.get_connection_manager().await?;
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
    let queues = Queues { by_kind, wake_channel: format!("{prefix}:queued"), conn: conn.clone(), client };
    Ok((queues, conn))
}

impl Queues {
    /// The queue of `kind`.
    pub fn of(&self, kind: &str) -> Result<&JobQueue, QueueError> {
        self.by_kind.get(kind).ok_or_else(|| QueueError::Push(format!("no queue for job kind {kind:?}")))
    }

    /// Enqueues the job for `execution_id` of `kind`, carrying the current trace, and wakes
    /// the idle workers of that kind.
    pub async fn enqueue(&self, kind: &str, execution_id: Uuid) -> Result<(), QueueError> {
        let mut queue = self.of(kind)?.clone();
        let job = Job { execution_id, trace: crate::telemetry::trace_carrier() };
        queue.push(job).await.map_err(|e| QueueError::Push(e.to_string()))?;
        let mut conn = self.conn.clone();
        let published = redis::cmd("PUBLISH").arg(&self.wake_channel).arg(kind).query_async::<i64>(&mut conn).await;
        if let Err(e) = published {
            // Workers find the job at their next poll.
            tracing::debug!(kind, error = %e, "could not wake the workers");
        }
        Ok(())
    }

    /// Relays the kind of each job queued (by any process) to the sender's subscribers,
    /// subscribing again a second after a lost connection. Best effort (see [`crate::relay`]):
    /// workers still poll their queues on an interval, wakes only spare them the wait.
    pub fn wakes(&self) -> tokio::sync::broadcast::Sender<String> {
        let (client, channel) = (self.client.clone(), self.wake_channel.clone());
        crate::relay::relay_forever("queued jobs", move |relay| relay_wakes(client.clone(), channel.clone(), relay))
    }
}

/// Relays the kinds published on `channel` until the connection ends.
async fn relay_wakes(
    client: redis::Client,
    channel: String,
    relay: tokio::sync::broadcast::Sender<String>,
) -> redis::RedisResult<()> {
    use futures::StreamExt;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let _ = relay.send(message.get_payload::<String>()?);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workers_hear_the_kind_of_each_job_queued() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("syncline-test-{}", Uuid::new_v4().simple());
        let (queues, _) = connect(&url, &prefix, Duration::from_secs(30), &["a", "b"]).await.expect("redis");
        let mut heard = queues.wakes().subscribe();
        // The subscription may still be starting: queue until a wake is heard.
        let kind = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                queues.enqueue("b", Uuid::new_v4()).await.expect("enqueue");
                if let Ok(Ok(kind)) = tokio::time::timeout(Duration::from_millis(200), heard.recv()).await {
                    return kind;
                }
            }
        })
        .await
        .expect("heard within 10 s");
        assert_eq!(kind, "b");
        let mut conn = queues.conn.clone();
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.expect("keys");
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("clean up");
    }
}
