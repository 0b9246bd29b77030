//! Users' API keys: only a digest of each key is stored.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_all, fetch_opt};

/// An API key as its owner sees it (never its value).
#[derive(Debug, Clone)]
pub struct Key {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl FromRow for Key {
    const WHAT: &'static str = "API key";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }
}

/// The holder of a live key.
#[derive(Debug, Clone)]
pub struct Holder {
    pub key_id: Uuid,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub email: String,
    /// The key's last use was recorded over a minute ago (or never).
    pub stale: bool,
}

impl FromRow for Holder {
    const WHAT: &'static str = "API key";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            key_id: row.try_get("key_id")?,
            user_id: row.try_get("user_id")?,
            organization_id: row.try_get("organization_id")?,
            email: row.try_get("email")?,
            stale: row.try_get("stale")?,
        })
    }
}

/// Every key of user `user_id`, oldest first.
pub async fn list(client: &impl GenericClient, user_id: Uuid) -> Result<Vec<Key>, StoreError> {
    let sql = "select id, created_at, last_used_at, revoked_at from api_keys where user_id = $1 order by created_at";
    fetch_all(client, sql, &[&user_id]).await
}

/// Stores key digest `key_hash` for `user_id` of `org`; with `replace`, the user's earlier keys
/// are revoked first. Returns the key's id.
pub async fn insert(
    client: &impl GenericClient,
    org: Uuid,
    user_id: Uuid,
    key_hash: &[u8],
    replace: bool,
) -> Result<Uuid, StoreError> {
    if replace {
        client
            .execute("update api_keys set revoked_at = now() where user_id = $1 and revoked_at is null", &[&user_id])
            .await?;
    }
    let id = Uuid::new_v4();
    client
        .execute(
            "insert into api_keys (id, user_id, organization_id, key_hash) values ($1, $2, $3, $4)",
            &[&id, &user_id, &org, &key_hash],
        )
        .await?;
    Ok(id)
}

/// Revokes key `id` of `user_id` in `org`; `false` when there is no such key.
pub async fn revoke(client: &impl GenericClient, org: Uuid, user_id: Uuid, id: Uuid) -> Result<bool, StoreError> {
    let revoked = client
        .execute(
            "update api_keys set revoked_at = coalesce(revoked_at, now()) where id = $1 and user_id = $2 and organization_id = $3",
            &[&id, &user_id, &org],
        )
        .await?;
    Ok(revoked > 0)
}

/// Who holds the live key with digest `key_hash`.
pub async fn holder(client: &impl GenericClient, key_hash: &[u8]) -> Result<Option<Holder>, StoreError> {
    let sql = "select k.id as key_id, u.id as user_id, u.organization_id, u.email,
                      k.last_used_at < now() - interval '1 minute' or k.last_used_at is null as stale
                 from api_keys k join users u on u.id = k.user_id
                where k.key_hash = $1 and k.revoked_at is null";
    fetch_opt(client, sql, &[&key_hash]).await
}

/// Records that key `id` was used now.
pub async fn touch(client: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    client.execute("update api_keys set last_used_at = now() where id = $1", &[&id]).await?;
    Ok(())
}
