//! Bulk syncs. `spec` is the top-level configuration as the API echoes it (its schedules carry
//! the ids they were given); the columns beside it are what the engine and the scheduler read.
//! The policies a bulk sync carries are `spec.policies`. When an active bulk sync runs next is
//! its rows of the `schedules` table (a default one and additional ones), written in the same
//! transaction as the sync.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use syncline_core::{
    executions::BULK_SYNC,
    schedule::{self, Entry, ReplaceError},
};
use tokio_postgres::{Row, types::ToSql};
use uuid::Uuid;

use super::{FromRow, Params, StoreError, Window, exists, fetch_all, fetch_one, fetch_opt, keyed};
use crate::access::Readable;

#[derive(Debug, Clone)]
pub struct BulkSync {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub source_connection_id: Uuid,
    pub destination_connection_id: Uuid,
    pub mode: String,
    pub active: bool,
    pub spec: Json,
    pub policies: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The policies of a bulk sync, as a `text[]`.
const POLICIES: &str = "array(select jsonb_array_elements_text(
    case jsonb_typeof(spec -> 'policies') when 'array' then spec -> 'policies' else '[]' end))";

const COLUMNS: &str = "id, organization_id, name, source_connection_id, destination_connection_id, mode, active, spec,
    created_at, updated_at";

impl FromRow for BulkSync {
    const WHAT: &'static str = "bulk sync";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            organization_id: row.try_get("organization_id")?,
            name: row.try_get("name")?,
            source_connection_id: row.try_get("source_connection_id")?,
            destination_connection_id: row.try_get("destination_connection_id")?,
            mode: row.try_get("mode")?,
            active: row.try_get("active")?,
            spec: row.try_get("spec")?,
            policies: row.try_get("policies")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// `select` of every column of [`BulkSync`] from `bulk_syncs`.
fn select() -> String {
    format!("select {COLUMNS}, {POLICIES} as policies from bulk_syncs")
}

/// `returning` every column of [`BulkSync`].
fn returning() -> String {
    format!("returning {COLUMNS}, {POLICIES} as policies")
}

/// What a create or an update stores.
pub struct Values<'a> {
    pub name: &'a str,
    pub source_connection_id: Uuid,
    pub destination_connection_id: Uuid,
    pub mode: &'a str,
    pub active: bool,
    pub spec: &'a Json,
    /// Every schedule of the sync, which runs on them while it is active.
    pub schedules: &'a [Entry],
}

impl Values<'_> {
    /// `$3` to `$8` of [`insert`] and [`update`].
    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [&self.name, &self.source_connection_id, &self.destination_connection_id, &self.mode, &self.active, self.spec]
    }
}

pub async fn get(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<Option<BulkSync>, StoreError> {
    let sql = format!("{} where id = $1 and organization_id = $2", select());
    fetch_opt(client, &sql, &[&id, &org]).await
}

/// Which bulk syncs of an organization to list.
pub struct Filter<'a> {
    pub active: Option<bool>,
    /// Only these (`None`: every one).
    pub ids: Option<&'a [Uuid]>,
}

/// The bulk syncs of `org` matching `filter` that the caller may read, last changed first.
pub async fn list(
    client: &impl GenericClient,
    org: Uuid,
    filter: &Filter<'_>,
    readable: &Readable,
    window: Window,
) -> Result<Vec<BulkSync>, StoreError> {
    let sql = format!(
        "{} where organization_id = $1 and ($2::bool is null or active = $2) and ($3::uuid[] is null or id = any($3))
               and ($4 or {POLICIES} && $5) order by updated_at desc, id limit $6 offset $7",
        select()
    );
    let params: &Params<'_> =
        &[&org, &filter.active, &filter.ids, &readable.everywhere, &readable.policies, &window.limit, &window.offset];
    fetch_all(client, &sql, params).await
}

/// Stores new bulk sync `id` of `org` and its schedules (pass a transaction: both or neither).
pub async fn insert(tx: &impl GenericClient, org: Uuid, id: Uuid, values: &Values<'_>) -> Result<BulkSync, StoreError> {
    let sql = format!(
        "insert into bulk_syncs (id, organization_id, name, source_connection_id, destination_connection_id, mode,
            active, spec) values ($1, $2, $3, $4, $5, $6, $7, $8) {}",
        returning()
    );
    let sync = fetch_one(tx, &sql, &keyed(&id, &org, values.params())).await?;
    schedule(tx, (org, id), values.active, values.schedules).await?;
    Ok(sync)
}

/// Replaces bulk sync `id` and its schedules (pass a transaction: both or neither).
pub async fn update(
    tx: &impl GenericClient,
    org: Uuid,
    id: Uuid,
    values: &Values<'_>,
) -> Result<Option<BulkSync>, StoreError> {
    let sql = format!(
        "update bulk_syncs set name = $3, source_connection_id = $4, destination_connection_id = $5, mode = $6,
                active = $7, spec = $8, updated_at = now()
          where id = $1 and organization_id = $2 {}",
        returning()
    );
    let Some(sync) = fetch_opt(tx, &sql, &keyed(&id, &org, values.params())).await? else { return Ok(None) };
    schedule(tx, (org, id), values.active, values.schedules).await?;
    Ok(Some(sync))
}

/// Replaces the spec of bulk sync `id` (its `active` flag follows `spec.active`) and, when
/// given, its schedules (pass a transaction: both or neither).
pub async fn set_spec(
    tx: &impl GenericClient,
    (org, id): (Uuid, Uuid),
    spec: &Json,
    schedules: Option<&[Entry]>,
) -> Result<Option<BulkSync>, StoreError> {
    let sql = format!(
        "update bulk_syncs set spec = $3, active = coalesce(($3::jsonb ->> 'active')::boolean, active), updated_at = now()
          where id = $1 and organization_id = $2 {}",
        returning()
    );
    let Some(sync): Option<BulkSync> = fetch_opt(tx, &sql, &[&id, &org, spec]).await? else { return Ok(None) };
    if let Some(schedules) = schedules {
        schedule(tx, (org, id), sync.active, schedules).await?;
    }
    Ok(Some(sync))
}

/// Touches bulk sync `id`: its configuration (a schema of it) changed now.
pub async fn touch(client: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    client.execute("update bulk_syncs set updated_at = now() where id = $1", &[&id]).await?;
    Ok(())
}

/// Writes when bulk sync `id` runs next: on each of `schedules` while `active`, else never.
async fn schedule(
    tx: &impl GenericClient,
    (org, id): (Uuid, Uuid),
    active: bool,
    schedules: &[Entry],
) -> Result<(), StoreError> {
    let schedules = if active { schedules } else { &[] };
    schedule::replace(tx, (BULK_SYNC, id, org), schedules, Utc::now()).await.map_err(|e| match e {
        ReplaceError::Db(e) => StoreError::Db(e),
        // The API checked every schedule before storing it.
        ReplaceError::Invalid(..) => StoreError::Malformed { what: "schedule", message: e.to_string() },
    })
}

/// Deletes bulk sync `id` (its schemas, schedules and executions go with it); `false` when
/// there was none.
pub async fn delete(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<bool, StoreError> {
    exists(client, "delete from bulk_syncs where id = $1 and organization_id = $2 returning id", &[&id, &org]).await
}
