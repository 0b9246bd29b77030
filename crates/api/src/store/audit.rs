//! The audit log: who did what to which object, and when.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, Window, fetch_all};

/// One recorded event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub organization_id: Option<Uuid>,
    /// `partner`, `organization` or `user`.
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    pub actor_email: Option<String>,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl FromRow for Event {
    const WHAT: &'static str = "audit event";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            organization_id: row.try_get("organization_id")?,
            actor_type: row.try_get("actor_type")?,
            actor_id: row.try_get("actor_id")?,
            actor_email: row.try_get("actor_email")?,
            action: row.try_get("action")?,
            object_type: row.try_get("object_type")?,
            object_id: row.try_get("object_id")?,
            ip: row.try_get("ip")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// An event to record.
pub struct NewEvent<'a> {
    pub organization_id: Option<Uuid>,
    pub actor_type: &'a str,
    pub actor_id: Option<Uuid>,
    pub actor_email: Option<&'a str>,
    pub action: &'a str,
    pub object_type: Option<&'a str>,
    pub object_id: Option<&'a str>,
    pub ip: &'a str,
}

/// Writes `event`, now.
pub async fn insert(client: &impl GenericClient, event: &NewEvent<'_>) -> Result<(), StoreError> {
    client
        .execute(
            "insert into audit_events (id, organization_id, actor_type, actor_id, actor_email, action, object_type, object_id, ip)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &Uuid::new_v4(),
                &event.organization_id,
                &event.actor_type,
                &event.actor_id,
                &event.actor_email,
                &event.action,
                &event.object_type,
                &event.object_id,
                &event.ip,
            ],
        )
        .await?;
    Ok(())
}

/// Which events of an organization to list.
pub struct Filter<'a> {
    pub action: Option<&'a str>,
    pub object_id: Option<&'a str>,
    pub actor_id: Option<Uuid>,
}

/// `org`'s events matching `filter`, newest first.
pub async fn list(
    client: &impl GenericClient,
    org: Uuid,
    filter: &Filter<'_>,
    window: Window,
) -> Result<Vec<Event>, StoreError> {
    let sql =
        "select id, organization_id, actor_type, actor_id, actor_email, action, object_type, object_id, ip, created_at
                 from audit_events where organization_id = $1 and ($2::text is null or action = $2)
                  and ($3::text is null or object_id = $3) and ($4::uuid is null or actor_id = $4)
                order by created_at desc, id limit $5 offset $6";
    let params: &super::Params<'_> =
        &[&org, &filter.action, &filter.object_id, &filter.actor_id, &window.limit, &window.offset];
    fetch_all(client, sql, params).await
}
