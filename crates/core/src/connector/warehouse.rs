//! The destination side of event streams: rows laid out from events ([`crate::events::layout`])
//! loaded into a schema of a warehouse, which grows to fit them (the schema, its tables and
//! their columns are created as rows need them; nothing is ever dropped or altered).
//!
//! Loads are idempotent: a table keyed by `messageId` skips rows it has, so a batch loaded
//! again after a crash or a replay adds nothing, and [`EventWarehouse::load`] says how many of
//! each table's rows were new.

use async_trait::async_trait;
use serde_json::{Map, Value as Json};

use super::ConnectorError;
use crate::events::layout::Merge;

/// The rows of one table, in one load.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRows {
    pub table: String,
    pub merge: Merge,
    /// Each row's columns and non-null values (`id` always among them). A table with
    /// [`Merge::Latest`] holds each `id` once.
    pub rows: Vec<Map<String, Json>>,
}

/// A warehouse that takes events.
#[async_trait]
pub trait EventWarehouse: Send + Sync {
    /// Loads `tables` into `schema` in one transaction, creating what is missing; a new column
    /// gets the type of its first non-null value ([`crate::events::layout::ColumnType`]).
    /// Returns how many rows of each table were new. A value the column's type cannot take
    /// fails the whole load with a [`Permanent`](super::ErrorClass::Permanent) error.
    async fn load(&self, schema: &str, tables: &[TableRows]) -> Result<Vec<u64>, ConnectorError>;
}
