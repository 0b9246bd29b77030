//! What a route's delivery keeps in Postgres: the route, its position in each partition of the
//! event store, its counts and its dead letters (and the replays asked of them). A batch's
//! outcome is recorded in one transaction, after the destination committed it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};
use syncline_core::{
    connector::ConnectorError,
    db::{DbPool, Transaction},
    events::{filter::Filter, layout::Layout, store::StoredEvent},
};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{deliver::Delivered, lookup::Lookup};
use crate::connections::state;

/// A route as its delivery reads it.
pub struct Route {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub source_id: Uuid,
    pub source_name: String,
    pub layout: Layout,
    pub schema: String,
    /// The traits of the event's user each row gets (`user_<trait>`).
    pub enrichment: Vec<String>,
    /// The model whose row for the event's user gives more `user_<field>` columns.
    pub lookup: Option<Lookup>,
    /// Which events it takes.
    pub filter: Filter,
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
            "select r.organization_id, r.source_id, s.name as source_name, r.layout, r.schema_name, r.enrichment, r.lookup, r.filters, r.updated_at,
                    c.type as target_type, c.configuration as target_config, c.secrets as target_secrets
             from event_routes r join event_sources s on s.id = r.source_id join connections c on c.id = r.connection_id
             where r.id = $1",
            &[&id],
        )
        .await
        .map_err(state)?;
    let Some(row) = row else { return Ok(None) };
    let layout: String = row.try_get("layout").map_err(state)?;
    let enrichment: Json = row.try_get("enrichment").map_err(state)?;
    let lookup: Option<Json> = row.try_get("lookup").map_err(state)?;
    let lookup =
        lookup.map(serde_json::from_value).transpose().map_err(|e| ConnectorError::config(format!("lookup: {e}")))?;
    let filter: Json = row.try_get("filters").map_err(state)?;
    let filter = serde_json::from_value(filter).map_err(|e| ConnectorError::config(format!("filters: {e}")))?;
    Ok(Some(Route {
        id,
        organization_id: row.try_get("organization_id").map_err(state)?,
        enrichment: serde_json::from_value(enrichment)
            .map_err(|e| ConnectorError::config(format!("enrichment: {e}")))?,
        lookup,
        filter,
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

/// Records what delivering `batch` (events read past the route's position) came to: its
/// failures as dead letters, the route's new position and its counts, in one transaction.
/// Nothing is recorded when the route changed since `route` was read (`false`): a replay may
/// have moved its position back.
pub async fn record(
    pool: &DbPool,
    route: &Route,
    batch: &[StoredEvent],
    outcome: &Delivered,
) -> Result<bool, ConnectorError> {
    let mut client = pool.get().await.map_err(state)?;
    let tx = client.transaction().await.map_err(state)?;
    if !unchanged(&tx, route).await? {
        return Ok(false);
    }
    let failed: Vec<&StoredEvent> = outcome.failed.iter().map(|f| &batch[f.index]).collect();
    let ids: Vec<&str> = failed.iter().map(|e| e.message_id.as_str()).collect();
    let received: Vec<DateTime<Utc>> = failed.iter().map(|e| e.received_at).collect();
    let messages: Vec<&[u8]> = failed.iter().map(|e| e.message.as_slice()).collect();
    let reasons: Vec<&str> = outcome.failed.iter().map(|f| f.reason.as_str()).collect();
    let attempts: Vec<i32> = outcome.failed.iter().map(|f| f.attempts).collect();
    tx.execute(
        "insert into event_dead_letters (route_id, message_id, received_at, message, reason, attempts)
         select $1, * from unnest($2::text[], $3::timestamptz[], $4::bytea[], $5::text[], $6::int[])",
        &[&route.id, &ids, &received, &messages, &reasons, &attempts],
    )
    .await
    .map_err(state)?;
    if let Some(first) = outcome.failed.first() {
        let payload = json!({
            "route_id": route.id, "schema": route.schema, "events": outcome.failed.len(), "reason": first.reason,
        });
        tx.execute(
            "insert into event_log (organization_id, source_id, kind, subject, payload)
             values ($1, $2, 'delivery.dead_lettered', $3, $4)",
            &[&route.organization_id, &route.source_id, &route.id.to_string(), &payload],
        )
        .await
        .map_err(state)?;
    }
    let (partitions, ends): (Vec<i64>, Vec<i64>) = ends(batch).into_iter().unzip();
    tx.execute(
        "insert into event_route_cursors (route_id, partition_id, seq)
         select $1, p, s from unnest($2::bigint[], $3::bigint[]) as u(p, s)
         on conflict (route_id, partition_id) do update set seq = greatest(event_route_cursors.seq, excluded.seq)",
        &[&route.id, &partitions, &ends],
    )
    .await
    .map_err(state)?;
    let newest = batch.iter().map(|e| e.received_at).max();
    count(&tx, route.id, outcome, outcome.failed.len() as i64, newest).await?;
    tx.commit().await.map_err(state)?;
    Ok(true)
}

/// The last event of `batch` in each partition: where the route is once it is recorded.
pub fn ends(batch: &[StoredEvent]) -> HashMap<i64, i64> {
    let mut ends: HashMap<i64, i64> = HashMap::new();
    for event in batch {
        let end = ends.entry(event.partition).or_insert(event.seq);
        *end = (*end).max(event.seq);
    }
    ends
}

/// Whether `route` is as it was read, holding it so until the transaction ends.
async fn unchanged(tx: &Transaction<'_>, route: &Route) -> Result<bool, ConnectorError> {
    let sql = "select 1 from event_routes where id = $1 and updated_at = $2 for share";
    Ok(tx.query_opt(sql, &[&route.id, &route.version]).await.map_err(state)?.is_some())
}

/// Adds `outcome`'s delivered, deduplicated and filtered events and `dead` new dead letters to
/// route `id`'s counts.
async fn count(
    tx: &Transaction<'_>,
    id: Uuid,
    outcome: &Delivered,
    dead: i64,
    newest: Option<DateTime<Utc>>,
) -> Result<(), ConnectorError> {
    tx.execute(
        "insert into event_route_counts (route_id, delivered, deduplicated, filtered, dead_lettered, last_received_at,
                                         delivered_at)
         values ($1, $2, $3, $4, $5, $6, now())
         on conflict (route_id) do update set delivered = event_route_counts.delivered + $2,
             deduplicated = event_route_counts.deduplicated + $3, filtered = event_route_counts.filtered + $4,
             dead_lettered = event_route_counts.dead_lettered + $5,
             last_received_at = greatest(event_route_counts.last_received_at, $6), delivered_at = now()",
        &[&id, &outcome.delivered, &outcome.deduplicated, &outcome.filtered, &dead, &newest],
    )
    .await
    .map_err(state)?;
    Ok(())
}

/// Dead letters of route `id` whose replay was asked for, oldest first, at most `limit`: their
/// ids and events.
pub async fn replays(pool: &DbPool, id: Uuid, limit: i64) -> Result<(Vec<i64>, Vec<StoredEvent>), ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select id, message_id, received_at, message from event_dead_letters
             where route_id = $1 and replay_requested_at is not null order by id limit $2",
            &[&id, &limit],
        )
        .await
        .map_err(state)?;
    let ids = rows.iter().map(|r| r.get(0)).collect();
    let events = rows
        .iter()
        .map(|r| StoredEvent { partition: 0, seq: 0, message_id: r.get(1), received_at: r.get(2), message: r.get(3) })
        .collect();
    Ok((ids, events))
}

/// Records what replaying dead letters `ids` came to: those delivered are marked so, those
/// that failed again keep their letter with the new reason and attempts added.
pub async fn record_replay(pool: &DbPool, id: Uuid, ids: &[i64], outcome: &Delivered) -> Result<(), ConnectorError> {
    let mut client = pool.get().await.map_err(state)?;
    let tx = client.transaction().await.map_err(state)?;
    for failure in &outcome.failed {
        tx.execute(
            "update event_dead_letters set reason = $2, attempts = attempts + $3, replay_requested_at = null where id = $1",
            &[&ids[failure.index], &failure.reason, &failure.attempts],
        )
        .await
        .map_err(state)?;
    }
    let failed: Vec<i64> = outcome.failed.iter().map(|f| ids[f.index]).collect();
    tx.execute(
        "update event_dead_letters set replayed_at = now(), replay_requested_at = null
         where id = any($1) and not (id = any($2))",
        &[&ids, &failed],
    )
    .await
    .map_err(state)?;
    count(&tx, id, outcome, 0, None).await?;
    tx.commit().await.map_err(state)
}
