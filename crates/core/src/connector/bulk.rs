//! The destination side of bulk syncs: whole tables loaded partition by partition, each
//! partition in one destination transaction that also records its marker, so a partition
//! loaded before (its worker died after the destination committed) is never loaded twice.

use std::sync::Arc;

use async_trait::async_trait;
use futures::{future::BoxFuture, stream::BoxStream};
use uuid::Uuid;

use super::ConnectorError;
use crate::{
    bulk::BulkMode,
    record::{Field, RecordBatch, Schema},
};

/// Batches of key columns.
pub type KeyStream = BoxStream<'static, Result<RecordBatch, ConnectorError>>;

/// A row count under way (see [`BulkDestination::count_from_now`]).
pub type PendingCount = BoxFuture<'static, Result<u64, ConnectorError>>;

/// Which rows [`BulkDestination::delete_keys`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Those whose key is listed (the deletes change capture streams).
    Listed,
    /// Those whose key is not (a sweep: the source no longer has them).
    Unlisted,
}

/// A table as a bulk sync wants it: its columns, and its key (empty when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The destination's name for it (`schema.table`).
    pub table: String,
    pub fields: Vec<Field>,
    pub key: Vec<String>,
}

/// How a partition's rows meet the rows already in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Added as they are (an empty table being filled, or `append` mode).
    Append,
    /// Rows with the key of an existing row replace it.
    Upsert,
    /// Rows change the existing row of their key in the schema's columns only, leaving its
    /// other columns alone; a row whose key has none changes nothing. The load's count is of
    /// the rows changed. (Change capture's updates that left large values out.)
    Update,
}

/// One partition's load.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    pub table: String,
    /// Schema of the incoming records; their fields fill the columns of the same names.
    pub schema: Arc<Schema>,
    /// The key columns ([`LoadMode::Upsert`] and [`LoadMode::Update`] only).
    pub key: Vec<String>,
    pub mode: LoadMode,
    /// Recorded with the rows in the same transaction; see [`BulkDestination::loaded`].
    pub marker: Uuid,
    /// The soft-delete timestamp column, cleared on the rows this load writes (a row back at
    /// the source is not deleted any more).
    pub soft_delete: Option<String>,
}

/// Rows of one partition on their way into the destination, invisible until committed.
#[async_trait]
pub trait Loader: Send {
    /// Adds `batch`'s records.
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError>;

    /// Commits every record written, with the marker, in one transaction. Nothing is written
    /// when this fails or is never called.
    async fn commit(self: Box<Self>) -> Result<Committed, ConnectorError>;
}

/// What a committed load wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The rows written, as the destination counted them ([`LoadMode::Update`]: changed).
    pub rows: u64,
    /// How many of them the table did not hold before (inserted, not updated), when the
    /// destination tells.
    pub added: Option<u64>,
}

/// Loads whole tables: what a bulk sync writes to.
#[async_trait]
pub trait BulkDestination: Send + Sync {
    /// The modes it supports, snapshot always among them; a run of another mode runs as a
    /// snapshot. One that supports only snapshots keeps whole copies: every run, test runs too,
    /// appends into a new copy ([`shadow`](Self::shadow)) swapped in at the end, and
    /// [`delete_keys`](Self::delete_keys) and [`retire`](Self::retire) are never called.
    fn modes(&self) -> &'static [BulkMode] {
        &BulkMode::ALL
    }

    /// The schema tables go into when the bulk sync names none.
    fn default_schema(&self) -> &str {
        "public"
    }

    /// The name of the copy of `table` that execution `execution` fills, to be swapped in at
    /// the end. By default the table's name marked with the execution, within PostgreSQL's
    /// 63-byte identifiers (and MySQL's 64-character ones).
    fn shadow(&self, table: &str, execution: Uuid) -> String {
        marked(table, execution)
    }

    /// Whether a fresh copy (a shadow table) loads faster without its key, which
    /// [`add_key`](Self::add_key) then builds once all of it is loaded (as `pg_restore` does);
    /// otherwise the copy is created with its key.
    fn defers_keys(&self) -> bool {
        false
    }

    /// Adds primary key `key` to `table`; fails when its rows repeat a key. Only called on
    /// destinations that [defer keys](Self::defers_keys).
    async fn add_key(&self, table: &str, _key: &[String]) -> Result<(), ConnectorError> {
        Err(ConnectorError::permanent(format!("cannot add a key to {table}: this destination does not defer keys")))
    }

    /// The columns `table` has, or `None` when it does not exist.
    async fn columns(&self, table: &str) -> Result<Option<Vec<Field>>, ConnectorError>;

    /// Creates `spec`'s table, or adds the columns it lacks (columns it has and the spec does
    /// not are left alone).
    async fn shape(&self, spec: &TableSpec) -> Result<(), ConnectorError>;

    /// Drops `table` if it exists.
    async fn drop_table(&self, table: &str) -> Result<(), ConnectorError>;

    /// The rows the load of `table` with `marker` committed, if it did.
    async fn loaded(&self, table: &str, marker: Uuid) -> Result<Option<u64>, ConnectorError>;

    /// Starts a partition's load.
    async fn load(&self, request: LoadRequest) -> Result<Box<dyn Loader>, ConnectorError>;

    /// Puts `shadow` in `table`'s place in one transaction (readers see the old table or the
    /// new one, never neither), dropping the old one.
    async fn swap(&self, shadow: &str, table: &str) -> Result<(), ConnectorError>;

    /// Whether `shadow`, whose swap started, was swapped in already: by default, whether it is
    /// gone. A destination whose swap can simply run again says no.
    async fn swapped(&self, shadow: &str) -> Result<bool, ConnectorError> {
        Ok(self.columns(shadow).await?.is_none())
    }

    /// Deletes the rows of `table` whose key is (or, for a sweep, is not) among `keys` (batches
    /// holding the key columns, named as in the table) — or, with `soft_delete`, sets that
    /// timestamp column on them instead. Returns how many rows it deleted or marked.
    async fn delete_keys(
        &self,
        table: &str,
        (keys, key_schema, which): (KeyStream, Arc<Schema>, Keys),
        soft_delete: Option<&str>,
    ) -> Result<u64, ConnectorError>;

    /// Counts the rows of `table` that `shadow` (its full reload) lacks by key: the rows deleted
    /// at the source. With `soft_delete`, also copies them into `shadow` with that timestamp
    /// column set, so the reload keeps them marked; the count is then of the newly marked.
    async fn retire(
        &self,
        table: &str,
        shadow: &str,
        key: &[String],
        soft_delete: Option<&str>,
    ) -> Result<u64, ConnectorError>;

    /// How many rows `table` holds.
    async fn count(&self, table: &str) -> Result<u64, ConnectorError>;

    /// Starts counting the rows `table` holds when this returns, whatever commits while the
    /// count runs, so it can run while partitions load; `None` from a destination whose loads
    /// do not tell how many rows they added (see [`Committed::added`]), which is counted once
    /// loaded instead.
    async fn count_from_now(&self, _table: &str) -> Result<Option<PendingCount>, ConnectorError> {
        Ok(None)
    }
}

/// `schema.table` with the table's name marked with `execution`, within 63 bytes.
fn marked(table: &str, execution: Uuid) -> String {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let mark = format!("__syncline_{}", &execution.simple().to_string()[..12]);
    let base: String = name.chars().take(63 - mark.len()).collect();
    format!("{schema}.{base}{mark}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_names_fit() {
        let name = marked(&format!("public.{}", "x".repeat(80)), Uuid::new_v4());
        assert_eq!(name.len(), "public.".len() + 63);
    }
}
