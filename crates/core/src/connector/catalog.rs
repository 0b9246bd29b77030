//! What a connection holds: the streams (tables, API objects) discovery finds, with their
//! fields, keys and what each can do. A catalog is kept as JSON (`connection_catalogs`) until
//! a refresh replaces it.

use serde::{Deserialize, Serialize};

use crate::record::Field;

/// Everything a connection offers, as discovery found it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub streams: Vec<Stream>,
}

impl Catalog {
    /// The stream called `name`.
    pub fn stream(&self, name: &str) -> Option<&Stream> {
        self.streams.iter().find(|s| s.name == name)
    }
}

/// One readable or writable object: a table, a view, an API object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stream {
    /// The id reads and writes name it by (`public.users`, `Contact`).
    pub name: String,
    pub fields: Vec<Field>,
    /// The fields that identify a record (a primary key), if any.
    pub key: Vec<String>,
    pub capabilities: StreamCapabilities,
}

/// What a stream's reads can do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCapabilities {
    /// Reads can come back sorted by any identity (see [`crate::record::key`]); otherwise the
    /// worker sorts them itself.
    pub sorted_reads: bool,
    /// Fields an incremental read can resume after (an `updated_at`, an increasing id).
    pub cursor_fields: Vec<String>,
    /// Reads can be split into partitions that run on different workers.
    pub partitionable: bool,
    /// The stream's changes can be captured as they happen (logical replication, binlog).
    pub change_capture: bool,
}
