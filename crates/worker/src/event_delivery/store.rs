//! What a route's delivery keeps in Postgres: the route, its position in each partition of the
//! event store, its counts and its dead letters. A batch's outcome is recorded in one
//! transaction, after the destination committed it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use syncline_core::{connector::ConnectorError, db::DbPool, events::layout::Layout};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::connections::state;

/// A route as its delivery reads it.
pub struct Route {
    pub id: Uuid,
    pub source_id: Uuid,
    pub source_name: String,
    pub layout: Layout,
    pub schema: String,
    /// When the route was last changed.
    pub version: DateTime<Utc>,
    /// Holds `target_type/config/secrets`.
    pub connection: Row,
}

/// Route `id`, or `None` once it was deleted.
pub async fn route(pool: &DbPool, id: Uuid) -> Result<Option<Route>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let row = client
        .query_opt(
            "select r.source_id, s.name as source_name, r.layout, r.schema_name, r.updated_at,
                    c.type as target_type, c.configuration as target_config, c.secrets as target_secrets
             from event_routes r join event_sources s on s.id = r.source_id join connections c on c.id = r.connection_id
             where r.id = $1",
            &[&id],
        )
        .await
        .map_err(state)?;
    let Some(row) = row else { return Ok(None) };
    let layout: String = row.try_get("layout").map_err(state)?;
    Ok(Some(Route {
        id,
        source_id: row.try_get("source_id").map_err(state)?,
        source_name: row.try_get("source_name").map_err(state)?,
        layout: Layout::parse(&layout).ok_or_else(|| ConnectorError::config(format!("layout {layout:?}")))?,
        schema: row.try_get("schema_name").map_err(state)?,
        version: row.try_get("updated_at").map_err(state)?,
        connection: row,
    }))
}

/// When route `id` was last changed, or `None` once it was deleted.
pub async fn version(pool: &DbPool, id: Uuid) -> Result<Option<DateTime<Utc>>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let row = client.query_opt("select updated_at from event_routes where id = $1", &[&id]).await.map_err(state)?;
    Ok(row.map(|r| r.get(0)))
}

/// The last event route `id` is done with, by partition.
pub async fn cursors(pool: &DbPool, id: Uuid) -> Result<HashMap<i64, i64>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query("select partition_id, seq from event_route_cursors where route_id = $1", &[&id])
        .await
        .map_err(state)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// An event the route could not deliver.
pub struct DeadLetter<'a> {
    pub message_id: &'a str,
    pub received_at: DateTime<Utc>,
    pub message: &'a [u8],
    pub reason: String,
    pub attempts: i32,
}

/// What one batch came to.
pub struct BatchOutcome<'a> {
    /// The last event of the batch in each partition.
    pub ends: HashMap<i64, i64>,
    pub delivered: i64,
    pub deduplicated: i64,
    pub dead: Vec<DeadLetter<'a>>,
    /// The arrival time of the batch's newest event.
    pub newest: DateTime<Utc>,
}

/// Records `outcome` of a batch of route `id`: its dead letters, the route's new position and
/// counts, in one transaction.
pub async fn record(pool: &DbPool, id: Uuid, outcome: &BatchOutcome<'_>) -> Result<(), ConnectorError> {
    let mut client = pool.get().await.map_err(state)?;
    let tx = client.transaction().await.map_err(state)?;
    for dead in &outcome.dead {
        tx.execute(
            "insert into event_dead_letters (route_id, message_id, received_at, message, reason, attempts)
             values ($1, $2, $3, $4, $5, $6)",
            &[&id, &dead.message_id, &dead.received_at, &dead.message, &dead.reason, &dead.attempts],
        )
        .await
        .map_err(state)?;
    }
    let (partitions, ends): (Vec<i64>, Vec<i64>) = outcome.ends.iter().map(|(p, s)| (*p, *s)).unzip();
    tx.execute(
        "insert into event_route_cursors (route_id, partition_id, seq) select $1, p, s from unnest($2::bigint[], $3::bigint[]) as u(p, s)
         on conflict (route_id, partition_id) do update set seq = greatest(event_route_cursors.seq, excluded.seq)",
        &[&id, &partitions, &ends],
    )
    .await
    .map_err(state)?;
    let dead = outcome.dead.len() as i64;
    tx.execute(
        "insert into event_route_counts (route_id, delivered, deduplicated, dead_lettered, last_received_at, delivered_at)
         values ($1, $2, $3, $4, $5, now())
         on conflict (route_id) do update set delivered = event_route_counts.delivered + $2,
             deduplicated = event_route_counts.deduplicated + $3, dead_lettered = event_route_counts.dead_lettered + $4,
             last_received_at = greatest(event_route_counts.last_received_at, $5), delivered_at = now()",
        &[&id, &outcome.delivered, &outcome.deduplicated, &dead, &outcome.newest],
    )
    .await
    .map_err(state)?;
    tx.commit().await.map_err(state)
}
