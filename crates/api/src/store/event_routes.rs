//! Event routes: where a source's events go (a warehouse connection, a layout, a schema), with
//! what each delivered.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::{Value as Json, json};
use tokio_postgres::{Row, types::ToSql};
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_all, fetch_opt};

/// A route and its counts.
#[derive(Debug, Clone)]
pub struct EventRoute {
    pub id: Uuid,
    pub source_id: Uuid,
    pub connection_id: Uuid,
    pub layout: String,
    pub schema: String,
    /// The traits of the event's user added to its rows.
    pub enrichment: Json,
    /// The model looked up for more fields of the event's user.
    pub lookup: Option<Json>,
    /// Which events the route takes.
    pub filters: Json,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered: i64,
    pub deduplicated: i64,
    pub filtered: i64,
    pub dead_lettered: i64,
    /// The arrival time of the newest event delivered, and when.
    pub last_received_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// What a route is configured with.
pub struct RouteSpec<'a> {
    pub connection_id: Uuid,
    pub layout: &'a str,
    pub schema: &'a str,
    pub enrichment: &'a [String],
    pub lookup: Option<&'a Json>,
    pub filters: &'a Json,
}

const SELECT: &str =
    "select r.id, r.source_id, r.connection_id, r.layout, r.schema_name, r.enrichment, r.lookup, r.filters, r.created_at, r.updated_at,
        coalesce(c.delivered, 0) as delivered, coalesce(c.deduplicated, 0) as deduplicated,
        coalesce(c.filtered, 0) as filtered, coalesce(c.dead_lettered, 0) as dead_lettered, c.last_received_at, c.delivered_at
    from event_routes r left join event_route_counts c on c.route_id = r.id";

impl FromRow for EventRoute {
    const WHAT: &'static str = "event route";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            source_id: row.try_get("source_id")?,
            connection_id: row.try_get("connection_id")?,
            layout: row.try_get("layout")?,
            schema: row.try_get("schema_name")?,
            enrichment: row.try_get("enrichment")?,
            lookup: row.try_get("lookup")?,
            filters: row.try_get("filters")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            delivered: row.try_get("delivered")?,
            deduplicated: row.try_get("deduplicated")?,
            filtered: row.try_get("filtered")?,
            dead_lettered: row.try_get("dead_lettered")?,
            last_received_at: row.try_get("last_received_at")?,
            delivered_at: row.try_get("delivered_at")?,
        })
    }
}

/// The routes of source `source_id`, oldest first.
pub async fn list(client: &impl GenericClient, source_id: Uuid) -> Result<Vec<EventRoute>, StoreError> {
    fetch_all(client, &format!("{SELECT} where r.source_id = $1 order by r.created_at"), &[&source_id]).await
}

pub async fn get(client: &impl GenericClient, source_id: Uuid, id: Uuid) -> Result<Option<EventRoute>, StoreError> {
    fetch_opt(client, &format!("{SELECT} where r.source_id = $1 and r.id = $2"), &[&source_id, &id]).await
}

/// The values of a route's statements: `$1` its source, `$2` its id, then `spec` (`$3`–`$8`).
fn values<'a>(
    (source_id, id): (&'a Uuid, &'a Uuid),
    spec: &'a RouteSpec<'a>,
    enrichment: &'a Json,
) -> Vec<&'a (dyn ToSql + Sync)> {
    vec![source_id, id, &spec.connection_id, &spec.layout, &spec.schema, enrichment, &spec.lookup, spec.filters]
}

/// Adds a route to source `source_id` of `org`; its id.
pub async fn insert(
    client: &impl GenericClient,
    (org, source_id): (Uuid, Uuid),
    spec: &RouteSpec<'_>,
) -> Result<Uuid, StoreError> {
    let (id, enrichment) = (Uuid::new_v4(), json!(spec.enrichment));
    let mut values = values((&source_id, &id), spec, &enrichment);
    values.push(&org);
    let sql =
        "insert into event_routes (source_id, id, connection_id, layout, schema_name, enrichment, lookup, filters,
                                         organization_id)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    client.execute(sql, &values).await?;
    Ok(id)
}

/// Changes route `id` of source `source_id`; whether it exists.
pub async fn update(
    client: &impl GenericClient,
    source_id: Uuid,
    id: Uuid,
    spec: &RouteSpec<'_>,
) -> Result<bool, StoreError> {
    let enrichment = json!(spec.enrichment);
    let sql = "update event_routes set connection_id = $3, layout = $4, schema_name = $5, enrichment = $6, lookup = $7,
                                       filters = $8, updated_at = now()
               where source_id = $1 and id = $2";
    Ok(client.execute(sql, &values((&source_id, &id), spec, &enrichment)).await? == 1)
}

pub async fn delete(client: &impl GenericClient, source_id: Uuid, id: Uuid) -> Result<bool, StoreError> {
    let deleted =
        client.execute("delete from event_routes where source_id = $1 and id = $2", &[&source_id, &id]).await?;
    Ok(deleted == 1)
}

/// Route `id`'s position: the last event it is done with, by partition.
pub async fn cursors(client: &impl GenericClient, id: Uuid) -> Result<HashMap<i64, i64>, StoreError> {
    let rows = client.query("select partition_id, seq from event_route_cursors where route_id = $1", &[&id]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
