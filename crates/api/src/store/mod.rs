//! The state database as the API sees it: one module per aggregate, each with its typed rows
//! (read with `try_get` by column name) and the statements that read and change them. Route
//! handlers hold no SQL; they call these functions with a pooled connection or a transaction
//! (any `GenericClient`), so a caller decides what is atomic.
//!
//! A failure is a [`StoreError`]. What the database refuses because of the values it was given
//! (a duplicate name, a reference to a missing object) becomes an API answer in one place:
//! `From<DbError> for ApiError` (`crate::error`), naming the field from [`constraints`].

pub mod audit;
pub mod bulk_schema_executions;
pub mod bulk_schemas;
pub mod bulk_syncs;
pub mod capture_slots;
pub mod catalogs;
pub mod connections;
pub mod constraints;
pub mod event_dead_letters;
pub mod event_routes;
pub mod event_sources;
pub mod events;
pub mod execution_logs;
pub mod executions;
pub mod keys;
pub mod models;
pub mod organizations;
pub mod permissions;
pub mod run_after;
pub mod schema_overrides;
pub mod sessions;
pub mod syncs;
pub mod users;

use deadpool_postgres::GenericClient;
use syncline_core::db::DbError;
use tokio_postgres::{Row, types::ToSql};

/// Parameters of a statement.
pub type Params<'a> = [&'a (dyn ToSql + Sync)];

/// A failure of the state database or of what it holds.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused the statement or could not be reached.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A row lacks a column this code reads, or holds another type: code and schema disagree.
    #[error("a stored {what} cannot be read: {source}")]
    Shape { what: &'static str, source: tokio_postgres::Error },
    /// A stored value does not have the shape it must have.
    #[error("a stored {what} is malformed: {message}")]
    Malformed { what: &'static str, message: String },
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(e.into())
    }
}

/// A row type read by column name.
pub trait FromRow: Sized {
    /// What a row is, for errors ("connection").
    const WHAT: &'static str;

    /// Reads the row's columns with `try_get`.
    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error>;
}

/// Reads `row` as a `T`.
pub fn read<T: FromRow>(row: &Row) -> Result<T, StoreError> {
    T::from_row(row).map_err(|source| StoreError::Shape { what: T::WHAT, source })
}

/// The one row `sql` answers, as a `T`.
pub async fn fetch_one<T: FromRow>(
    client: &impl GenericClient,
    sql: &str,
    params: &Params<'_>,
) -> Result<T, StoreError> {
    read(&client.query_one(sql, params).await?)
}

/// The row `sql` answers, if any, as a `T`.
pub async fn fetch_opt<T: FromRow>(
    client: &impl GenericClient,
    sql: &str,
    params: &Params<'_>,
) -> Result<Option<T>, StoreError> {
    client.query_opt(sql, params).await?.as_ref().map(read).transpose()
}

/// Every row `sql` answers, as `T`s.
pub async fn fetch_all<T: FromRow>(
    client: &impl GenericClient,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<T>, StoreError> {
    client.query(sql, params).await?.iter().map(read).collect()
}

/// A count: the column `count` of the one row `sql` answers.
pub async fn count(client: &impl GenericClient, sql: &str, params: &Params<'_>) -> Result<i64, StoreError> {
    let row = client.query_one(sql, params).await?;
    row.try_get("count").map_err(|source| StoreError::Shape { what: "count", source })
}

/// Whether `sql` answers a row.
pub async fn exists(client: &impl GenericClient, sql: &str, params: &Params<'_>) -> Result<bool, StoreError> {
    Ok(client.query_opt(sql, params).await?.is_some())
}

/// The parameters of a statement on one object: `$1` its id, `$2` its organization, then
/// `values` from `$3` on.
pub fn keyed<'a, const N: usize>(
    id: &'a uuid::Uuid,
    org: &'a uuid::Uuid,
    values: [&'a (dyn ToSql + Sync); N],
) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut params: Vec<&'a (dyn ToSql + Sync)> = vec![id, org];
    params.extend(values);
    params
}

/// Rows of a single `id` column.
pub struct Id(pub uuid::Uuid);

impl FromRow for Id {
    const WHAT: &'static str = "id";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self(row.try_get("id")?))
    }
}

/// One page of a list: `limit` rows from `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub limit: i64,
    pub offset: i64,
}
