//! Event sources: a name and a write key (only its digest and hint are stored).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_all, fetch_one, fetch_opt};
use crate::access::Readable;

#[derive(Debug, Clone)]
pub struct EventSource {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    /// The write key's last characters.
    pub write_key_hint: String,
    pub policies: Vec<String>,
    /// Which log events go to which Slack channel.
    pub notifications: Json,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, organization_id, name, write_key_hint, policies, notifications, created_at, updated_at";

impl FromRow for EventSource {
    const WHAT: &'static str = "event source";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            organization_id: row.try_get("organization_id")?,
            name: row.try_get("name")?,
            write_key_hint: row.try_get("write_key_hint")?,
            policies: row.try_get("policies")?,
            notifications: row.try_get("notifications")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// Notification rules as stored: the rules without their secrets (each marks which it has,
/// `"secret": "token"` or `"webhook_url"`), and the secrets sealed, one entry per rule.
pub struct Rules {
    pub public: Json,
    pub sealed: Option<Vec<u8>>,
}

/// A write key as stored: its digest and hint.
pub struct StoredKey<'a> {
    pub hash: &'a [u8],
    pub hint: &'a str,
}

pub async fn get(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<Option<EventSource>, StoreError> {
    let sql = format!("select {COLUMNS} from event_sources where id = $1 and organization_id = $2");
    fetch_opt(client, &sql, &[&id, &org]).await
}

/// The event sources of `org` the caller may read, oldest first.
pub async fn list(client: &impl GenericClient, org: Uuid, readable: &Readable) -> Result<Vec<EventSource>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from event_sources where organization_id = $1 and ($2 or policies && $3) order by created_at"
    );
    fetch_all(client, &sql, &[&org, &readable.everywhere, &readable.policies]).await
}

/// The source whose write key has digest `hash`.
pub async fn by_key(client: &impl GenericClient, hash: &[u8]) -> Result<Option<EventSource>, StoreError> {
    fetch_opt(client, &format!("select {COLUMNS} from event_sources where write_key_hash = $1"), &[&hash]).await
}

pub async fn insert(
    client: &impl GenericClient,
    org: Uuid,
    (name, policies, rules): (&str, &[String], &Rules),
    key: StoredKey<'_>,
) -> Result<EventSource, StoreError> {
    let sql = format!(
        "insert into event_sources (id, organization_id, name, policies, notifications, notification_secrets,
                                    write_key_hash, write_key_hint)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning {COLUMNS}"
    );
    let id = Uuid::new_v4();
    fetch_one(client, &sql, &[&id, &org, &name, &policies, &rules.public, &rules.sealed, &key.hash, &key.hint]).await
}

/// Renames source `id` and sets its policies, and its notification rules when given.
pub async fn update(
    client: &impl GenericClient,
    org: Uuid,
    id: Uuid,
    (name, policies): (&str, &[String]),
    rules: Option<&Rules>,
) -> Result<Option<EventSource>, StoreError> {
    let sql = format!(
        "update event_sources set name = $3, policies = $4, updated_at = now(),
                notifications = case when $5 then $6 else notifications end,
                notification_secrets = case when $5 then $7 else notification_secrets end
          where id = $1 and organization_id = $2 returning {COLUMNS}"
    );
    let (public, sealed) = rules.map_or((None, None), |r| (Some(&r.public), r.sealed.as_ref()));
    fetch_opt(client, &sql, &[&id, &org, &name, &policies, &rules.is_some(), &public, &sealed]).await
}

/// Replaces source `id`'s write key: the old one stops working at once.
pub async fn rotate(
    client: &impl GenericClient,
    org: Uuid,
    id: Uuid,
    key: StoredKey<'_>,
) -> Result<Option<EventSource>, StoreError> {
    let sql = format!(
        "update event_sources set write_key_hash = $3, write_key_hint = $4, updated_at = now()
          where id = $1 and organization_id = $2 returning {COLUMNS}"
    );
    fetch_opt(client, &sql, &[&id, &org, &key.hash, &key.hint]).await
}

pub async fn delete(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<(), StoreError> {
    let deleted =
        client.execute("delete from event_sources where id = $1 and organization_id = $2", &[&id, &org]).await?;
    if deleted == 1 {
        client.execute("delete from event_source_counts where source_id = $1", &[&id]).await?;
    }
    Ok(())
}
