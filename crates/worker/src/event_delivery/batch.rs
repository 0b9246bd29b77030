//! Micro-batches: the next events of a route's source past its position in every partition,
//! gathered until the batch is full (rows or bytes) or its oldest event has waited the batch
//! age, whichever comes first.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chrono::Utc;
use syncline_core::{
    connector::ConnectorError,
    db::DbPool,
    events::store::{self, StoredEvent},
};
use uuid::Uuid;

use crate::connections::state;

/// How often an unfinished batch looks for more events.
const POLL: Duration = Duration::from_millis(100);
/// Events one query reads at most, which bounds how far a batch overshoots its byte bound.
const CHUNK: usize = 1_000;
/// The most message bytes one batch holds.
const MAX_BYTES: usize = 16 << 20;
/// How long an empty batch waits before it is handed back (so the delivery can look around).
const IDLE: Duration = Duration::from_secs(1);

/// The bounds of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub rows: usize,
    pub age: Duration,
}

/// The next batch of source `source_id`'s events after `cursors` (partition → last number
/// done): empty after [`IDLE`] without events.
pub async fn next(
    pool: &DbPool,
    source_id: Uuid,
    cursors: &HashMap<i64, i64>,
    bounds: Bounds,
) -> Result<Vec<StoredEvent>, ConnectorError> {
    let started = Instant::now();
    let mut positions = cursors.clone();
    let mut batch: Vec<StoredEvent> = Vec::new();
    let mut bytes = 0;
    loop {
        let client = pool.get().await.map_err(state)?;
        for partition in store::partitions(&client).await.map_err(state)? {
            loop {
                let room = bounds.rows.saturating_sub(batch.len()).min(CHUNK);
                if room == 0 || bytes >= MAX_BYTES {
                    break;
                }
                let after = positions.get(&partition).copied().unwrap_or(0);
                let read = store::read_after(&client, partition, source_id, after, room as i64).await.map_err(state)?;
                let Some(last) = read.last() else { break };
                positions.insert(partition, last.seq);
                bytes += read.iter().map(|e| e.message.len()).sum::<usize>();
                let short = read.len() < room;
                batch.extend(read);
                if short {
                    break;
                }
            }
        }
        drop(client);
        if batch.len() >= bounds.rows || bytes >= MAX_BYTES {
            return Ok(batch);
        }
        let wait = match batch.iter().map(|e| e.received_at).min() {
            Some(oldest) => {
                let waited = (Utc::now() - oldest).to_std().unwrap_or_default();
                match bounds.age.checked_sub(waited) {
                    None => return Ok(batch),
                    Some(left) => left.min(POLL),
                }
            }
            None if started.elapsed() >= IDLE => return Ok(batch),
            None => POLL,
        };
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}
