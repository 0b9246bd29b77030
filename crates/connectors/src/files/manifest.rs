//! What readers read: the manifest of an execution's copy of a table (its schema, files and
//! rows) and `_latest.json`, which names the manifest of the copy to read. Paths are relative
//! to the connection's URL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use syncline_core::record::Field;
use uuid::Uuid;

/// One execution's copy of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub execution: Uuid,
    pub created_at: DateTime<Utc>,
    /// Rows in all files.
    pub rows: u64,
    pub schema: Vec<Column>,
    pub files: Vec<File>,
}

/// A column: its name and Syncline type, and the Arrow type its files hold it as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Column {
    #[serde(flatten)]
    pub field: Field,
    pub arrow: String,
}

/// One Parquet file of a copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct File {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// `_latest.json`: the copy readers read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Latest {
    pub execution: Uuid,
    pub manifest: String,
    /// The copy swapped out, kept until the next swap for readers that read before.
    pub previous: Option<Uuid>,
}
