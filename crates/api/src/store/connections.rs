//! Connections: `configuration` holds the settings clients see, `secrets` the sealed rest.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use tokio_postgres::{Row, types::ToSql};
use uuid::Uuid;

use super::{FromRow, StoreError, count, fetch_all, fetch_one, fetch_opt, keyed};
use crate::access::Readable;

#[derive(Debug, Clone)]
pub struct Connection {
    pub id: Uuid,
    pub name: String,
    pub organization_id: Uuid,
    pub type_id: String,
    pub configuration: Json,
    /// The sealed secrets; never answered.
    pub secrets: Option<Vec<u8>>,
    pub status: String,
    pub status_error: Option<String>,
    pub policies: Vec<String>,
    pub healthcheck_interval: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, organization_id, type, configuration, secrets, status, status_error, policies,
                       healthcheck_interval, created_at, updated_at";

impl FromRow for Connection {
    const WHAT: &'static str = "connection";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            organization_id: row.try_get("organization_id")?,
            type_id: row.try_get("type")?,
            configuration: row.try_get("configuration")?,
            secrets: row.try_get("secrets")?,
            status: row.try_get("status")?,
            status_error: row.try_get("status_error")?,
            policies: row.try_get("policies")?,
            healthcheck_interval: row.try_get("healthcheck_interval")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// What a create or an update stores.
pub struct Values<'a> {
    pub name: &'a str,
    pub configuration: &'a Json,
    pub sealed_secrets: &'a Option<Vec<u8>>,
    pub healthcheck_interval: Option<&'a str>,
    pub policies: &'a [String],
}

impl Values<'_> {
    /// `$3` to `$7` of [`insert`] and [`update`].
    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [&self.name, self.configuration, self.sealed_secrets, &self.healthcheck_interval, &self.policies]
    }
}

pub async fn get(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<Option<Connection>, StoreError> {
    let sql = format!("select {COLUMNS} from connections where id = $1 and organization_id = $2");
    fetch_opt(client, &sql, &[&id, &org]).await
}

/// The connections of `org` the caller may read, oldest first.
pub async fn list(client: &impl GenericClient, org: Uuid, readable: &Readable) -> Result<Vec<Connection>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from connections where organization_id = $1 and ($2 or policies && $3) order by created_at"
    );
    fetch_all(client, &sql, &[&org, &readable.everywhere, &readable.policies]).await
}

pub async fn insert(
    client: &impl GenericClient,
    org: Uuid,
    type_id: &str,
    values: &Values<'_>,
) -> Result<Connection, StoreError> {
    let sql = format!(
        "insert into connections (id, organization_id, name, configuration, secrets, healthcheck_interval, policies, type)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning {COLUMNS}"
    );
    let id = Uuid::new_v4();
    let mut params = keyed(&id, &org, values.params());
    params.push(&type_id);
    fetch_one(client, &sql, &params).await
}

/// Replaces connection `id`'s settings; it is healthy again until a check says otherwise.
pub async fn update(
    client: &impl GenericClient,
    org: Uuid,
    id: Uuid,
    values: &Values<'_>,
) -> Result<Option<Connection>, StoreError> {
    let sql = format!(
        "update connections set name = $3, configuration = $4, secrets = $5, healthcheck_interval = $6, policies = $7,
                status = 'healthy', status_error = null, updated_at = now()
          where id = $1 and organization_id = $2 returning {COLUMNS}"
    );
    fetch_opt(client, &sql, &keyed(&id, &org, values.params())).await
}

/// How many models, syncs and bulk syncs use connection `id`.
pub async fn users(client: &impl GenericClient, id: Uuid) -> Result<i64, StoreError> {
    let sql = "select (select count(*) from models where connection_id = $1)
                    + (select count(*) from model_syncs where target_connection_id = $1)
                    + (select count(*) from bulk_syncs where $1 in (source_connection_id, destination_connection_id))
                   as count";
    count(client, sql, &[&id]).await
}

/// A model sync that uses a connection, with its runs of the last 24 hours.
#[derive(Debug, Clone)]
pub struct SyncUsage {
    pub sync_id: Uuid,
    pub name: String,
    pub last_run_at: Option<DateTime<Utc>>,
    pub runs: i64,
}

impl FromRow for SyncUsage {
    const WHAT: &'static str = "connection usage";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            sync_id: row.try_get("id")?,
            name: row.try_get("name")?,
            last_run_at: row.try_get("last_run_at")?,
            runs: row.try_get("runs")?,
        })
    }
}

/// The model syncs of `org` that read from connection `id` (through their model) or write to
/// it, the busiest first.
pub async fn usage(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<Vec<SyncUsage>, StoreError> {
    let sql = "select s.id, s.name,
                      (select max(e.started_at) from executions e where e.kind = 'model_sync' and e.subject_id = s.id)
                        as last_run_at,
                      (select count(*) from executions e where e.kind = 'model_sync' and e.subject_id = s.id
                         and e.created_at > now() - interval '24 hours') as runs
               from model_syncs s join models m on m.id = s.model_id
               where s.organization_id = $2 and (s.target_connection_id = $1 or m.connection_id = $1)
               order by runs desc, s.name";
    fetch_all(client, sql, &[&id, &org]).await
}

pub async fn delete(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<(), StoreError> {
    client.execute("delete from connections where id = $1 and organization_id = $2", &[&id, &org]).await?;
    Ok(())
}
