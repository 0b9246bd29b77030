//! The catalog discovery found on a connection (`connection_catalogs`), kept until a refresh
//! replaces it, with the state of its last refresh: `refreshing`, `fresh`, or `failed` with the
//! error (a failed refresh keeps the catalog found before).

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use syncline_core::connector::Catalog;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_opt};

/// A connection's cached catalog and the state of its refresh.
#[derive(Debug, Clone)]
pub struct CachedCatalog {
    pub status: String,
    catalog: Option<Json>,
    pub error: Option<String>,
    pub refresh_started_at: Option<DateTime<Utc>>,
    pub refresh_finished_at: Option<DateTime<Utc>>,
}

impl FromRow for CachedCatalog {
    const WHAT: &'static str = "catalog";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            status: row.try_get("status")?,
            catalog: row.try_get("catalog")?,
            error: row.try_get("error")?,
            refresh_started_at: row.try_get("refresh_started_at")?,
            refresh_finished_at: row.try_get("refresh_finished_at")?,
        })
    }
}

impl CachedCatalog {
    /// The catalog, if a discovery ever succeeded.
    pub fn catalog(&self) -> Result<Option<Catalog>, StoreError> {
        self.catalog
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Malformed { what: "catalog", message: e.to_string() })
    }
}

/// The cached catalog of connection `connection_id`, if it was ever discovered.
pub async fn get(client: &impl GenericClient, connection_id: Uuid) -> Result<Option<CachedCatalog>, StoreError> {
    let sql = "select status, catalog, error, refresh_started_at, refresh_finished_at
               from connection_catalogs where connection_id = $1";
    fetch_opt(client, sql, &[&connection_id]).await
}

/// Marks a refresh of `connection_id`'s catalog as started, unless one started less than
/// `stale` ago is still running; returns when it started if this caller should run it.
pub async fn begin_refresh(
    client: &impl GenericClient,
    connection_id: Uuid,
    stale: Duration,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let sql =
        "insert into connection_catalogs (connection_id, status, refresh_started_at) values ($1, 'refreshing', now())
               on conflict (connection_id) do update set status = 'refreshing', error = null, refresh_started_at = now()
                where connection_catalogs.status <> 'refreshing'
                   or connection_catalogs.refresh_started_at < now() - make_interval(secs => $2)
               returning refresh_started_at";
    let row = client.query_opt(sql, &[&connection_id, &stale.as_secs_f64()]).await?;
    row.map(|row| row.try_get("refresh_started_at"))
        .transpose()
        .map_err(|source| StoreError::Shape { what: "catalog", source })
}

/// Stores the catalog a discovery that started at `started` found.
pub async fn store(
    client: &impl GenericClient,
    connection_id: Uuid,
    started: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<(), StoreError> {
    let catalog = serde_json::to_value(catalog).expect("a catalog serializes");
    client
        .execute(
            "insert into connection_catalogs (connection_id, status, catalog, refresh_started_at, refresh_finished_at)
             values ($1, 'fresh', $2, $3, now())
             on conflict (connection_id) do update set status = 'fresh', catalog = $2, error = null,
                refresh_started_at = $3, refresh_finished_at = now()",
            &[&connection_id, &catalog, &started],
        )
        .await?;
    Ok(())
}

/// Records that a discovery that started at `started` failed with `error`; the catalog found
/// before, if any, stays.
pub async fn fail(
    client: &impl GenericClient,
    connection_id: Uuid,
    started: DateTime<Utc>,
    error: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "insert into connection_catalogs (connection_id, status, error, refresh_started_at, refresh_finished_at)
             values ($1, 'failed', $2, $3, now())
             on conflict (connection_id) do update set status = 'failed', error = $2, refresh_started_at = $3,
                refresh_finished_at = now()",
            &[&connection_id, &error, &started],
        )
        .await?;
    Ok(())
}
