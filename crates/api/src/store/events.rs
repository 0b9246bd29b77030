//! The events of an organization's executions (`events.list`), which the database writes as
//! executions change status (migration V23).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_all};

/// Every event type, as `events.get_types` lists them.
pub const TYPES: &[&str] = &[
    "sync.running",
    "sync.completed",
    "sync.completed_with_errors",
    "sync.failed",
    "sync.canceled",
    "bulk_sync.running",
    "bulk_sync.completed",
    "bulk_sync.completed_with_error",
    "bulk_sync.failed",
    "bulk_sync.canceled",
];

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub event_type: String,
    pub payload: Json,
    pub created_at: DateTime<Utc>,
}

impl FromRow for Event {
    const WHAT: &'static str = "event";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            organization_id: row.try_get("organization_id")?,
            event_type: row.try_get("type")?,
            payload: row.try_get("payload")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Which events to list: of one type, created strictly after and before these times.
pub struct Filter<'a> {
    pub event_type: Option<&'a str>,
    pub after: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// The first `filter.limit` events of `organization_id` that `filter` selects, oldest first.
pub async fn list(
    client: &impl GenericClient,
    organization_id: Uuid,
    filter: &Filter<'_>,
) -> Result<Vec<Event>, StoreError> {
    fetch_all(
        client,
        "select id, organization_id, type, payload, created_at from events
         where organization_id = $1 and alert is distinct from 'long_running' and ($2::text is null or type = $2)
           and ($3::timestamptz is null or created_at > $3) and ($4::timestamptz is null or created_at < $4)
         order by created_at, id limit $5",
        &[&organization_id, &filter.event_type, &filter.after, &filter.before, &filter.limit],
    )
    .await
}
