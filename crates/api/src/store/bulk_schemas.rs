//! The schemas a bulk sync replicates (`bulk_sync_schemas`): whether each is enabled and its
//! configuration (`core::bulk::SchemaConfig`). What the engine keeps between runs (`state`) is
//! never touched here, so changing a schema's configuration keeps its cursor.

use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use syncline_core::bulk::SchemaConfig;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_all, fetch_opt};

/// One schema of a bulk sync.
#[derive(Debug, Clone)]
pub struct BulkSchema {
    pub schema_id: String,
    pub enabled: bool,
    pub config: SchemaConfig,
}

/// A stored row before its configuration is read.
struct Stored {
    schema_id: String,
    enabled: bool,
    config: Json,
}

impl FromRow for Stored {
    const WHAT: &'static str = "bulk sync schema";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            schema_id: row.try_get("schema_id")?,
            enabled: row.try_get("enabled")?,
            config: row.try_get("config")?,
        })
    }
}

impl TryFrom<Stored> for BulkSchema {
    type Error = StoreError;

    fn try_from(stored: Stored) -> Result<Self, StoreError> {
        let config = serde_json::from_value(stored.config).map_err(|e| StoreError::Malformed {
            what: "bulk sync schema",
            message: format!("{}: {e}", stored.schema_id),
        })?;
        Ok(Self { schema_id: stored.schema_id, enabled: stored.enabled, config })
    }
}

/// The schemas of bulk sync `sync_id` (only the enabled or disabled ones when `enabled` says),
/// by id.
pub async fn list(
    client: &impl GenericClient,
    sync_id: Uuid,
    enabled: Option<bool>,
) -> Result<Vec<BulkSchema>, StoreError> {
    let sql = "select schema_id, enabled, config from bulk_sync_schemas
               where bulk_sync_id = $1 and ($2::bool is null or enabled = $2) order by schema_id";
    let stored: Vec<Stored> = fetch_all(client, sql, &[&sync_id, &enabled]).await?;
    stored.into_iter().map(BulkSchema::try_from).collect()
}

/// Schema `schema_id` of bulk sync `sync_id`.
pub async fn get(
    client: &impl GenericClient,
    sync_id: Uuid,
    schema_id: &str,
) -> Result<Option<BulkSchema>, StoreError> {
    let sql = "select schema_id, enabled, config from bulk_sync_schemas where bulk_sync_id = $1 and schema_id = $2";
    let stored: Option<Stored> = fetch_opt(client, sql, &[&sync_id, &schema_id]).await?;
    stored.map(BulkSchema::try_from).transpose()
}

/// Stores the configuration of each of `schemas` (added when new).
pub async fn put(client: &impl GenericClient, sync_id: Uuid, schemas: &[BulkSchema]) -> Result<(), StoreError> {
    for schema in schemas {
        let config = serde_json::to_value(&schema.config).expect("a schema configuration serializes");
        client
            .execute(
                "insert into bulk_sync_schemas (bulk_sync_id, schema_id, enabled, config) values ($1, $2, $3, $4)
                 on conflict (bulk_sync_id, schema_id) do update set enabled = $3, config = $4",
                &[&sync_id, &schema.schema_id, &schema.enabled, &config],
            )
            .await?;
    }
    Ok(())
}

/// Makes `schemas` the selection of bulk sync `sync_id`: the others are removed (pass a
/// transaction: all or nothing).
pub async fn replace(tx: &impl GenericClient, sync_id: Uuid, schemas: &[BulkSchema]) -> Result<(), StoreError> {
    let ids: Vec<&str> = schemas.iter().map(|s| s.schema_id.as_str()).collect();
    tx.execute("delete from bulk_sync_schemas where bulk_sync_id = $1 and not schema_id = any($2)", &[&sync_id, &ids])
        .await?;
    put(tx, sync_id, schemas).await
}
