//! Dead letters of event routes, replays of them, and replays of a route from a point in time.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use syncline_core::events::store as events;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, Window, fetch_all};

/// An event a route could not deliver.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub message_id: String,
    pub received_at: DateTime<Utc>,
    pub message: Json,
    pub reason: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub replay_requested_at: Option<DateTime<Utc>>,
    pub replayed_at: Option<DateTime<Utc>>,
}

impl FromRow for DeadLetter {
    const WHAT: &'static str = "dead letter";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            message_id: row.try_get("message_id")?,
            received_at: row.try_get("received_at")?,
            message: row.try_get("message")?,
            reason: row.try_get("reason")?,
            attempts: row.try_get("attempts")?,
            created_at: row.try_get("created_at")?,
            replay_requested_at: row.try_get("replay_requested_at")?,
            replayed_at: row.try_get("replayed_at")?,
        })
    }
}

/// The dead letters of route `route_id`, oldest first.
pub async fn list(client: &impl GenericClient, route_id: Uuid, window: Window) -> Result<Vec<DeadLetter>, StoreError> {
    let sql = "select id, message_id, received_at, convert_from(message, 'UTF8')::jsonb as message, reason, attempts,
                      created_at, replay_requested_at, replayed_at
               from event_dead_letters where route_id = $1 order by id limit $2 offset $3";
    fetch_all(client, sql, &[&route_id, &window.limit, &window.offset]).await
}

/// Which dead letters a replay takes.
pub enum Selection<'a> {
    /// These.
    Ids(&'a [i64]),
    /// Those of events received in `[from, to)` (unbounded where `None`).
    Received { from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>> },
}

/// Asks route `route_id`'s delivery to try the selected dead letters not yet delivered again;
/// how many.
pub async fn request_replay(
    client: &impl GenericClient,
    route_id: Uuid,
    selection: &Selection<'_>,
) -> Result<u64, StoreError> {
    let pending = "update event_dead_letters set replay_requested_at = now()
                   where route_id = $1 and replayed_at is null";
    let requested = match selection {
        Selection::Ids(ids) => client.execute(&format!("{pending} and id = any($2)"), &[&route_id, ids]).await?,
        Selection::Received { from, to } => {
            let sql = format!(
                "{pending} and ($2::timestamptz is null or received_at >= $2) and ($3::timestamptz is null or received_at < $3)"
            );
            client.execute(&sql, &[&route_id, from, to]).await?
        }
    };
    Ok(requested)
}

/// Moves route `route_id` (of source `source_id`) back, in every partition it has read, to just
/// before the first event received at or after `since`, and marks the route changed so its
/// delivery starts over from there (a batch it was delivering is not recorded, and is delivered
/// again). Events already in the warehouse are counted as duplicates.
pub async fn rewind(
    client: &mut deadpool_postgres::Client,
    (source_id, route_id): (Uuid, Uuid),
    since: DateTime<Utc>,
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("update event_routes set updated_at = clock_timestamp() where id = $1", &[&route_id]).await?;
    for partition in events::partitions(&tx).await? {
        if let Some(first) = events::first_since(&tx, partition, source_id, since).await? {
            tx.execute(
                "update event_route_cursors set seq = least(seq, $3) where route_id = $1 and partition_id = $2",
                &[&route_id, &partition, &(first - 1)],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
