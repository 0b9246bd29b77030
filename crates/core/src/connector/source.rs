//! The source side of the contract: reading models and streams as batches and checkpoints.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value as Json;

use super::{Catalog, ConnectorError};
use crate::{
    record::{Field, RecordBatch, Schema},
    sync::filter::Predicate,
};

/// What to read.
#[derive(Debug, Clone)]
pub enum Readable {
    /// A model: its configuration (e.g. `{"query": "select …"}`).
    Model(Json),
    /// A stream of the catalog, by name.
    Stream(String),
}

/// What an item of a model configuration holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelInput {
    /// Free text (a SQL query).
    Text,
    /// The name of one of the source's streams (a table).
    Stream,
}

/// An item of a model configuration (`query`, `table`): a model gives exactly one of its
/// source's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOption {
    pub name: &'static str,
    pub input: ModelInput,
}

/// Resume an incremental read after a saved position.
#[derive(Debug, Clone)]
pub struct Cursor {
    /// The cursor field (one of the stream's `cursor_fields`).
    pub field: String,
    /// The last value read, as JSON; `None` reads from the beginning.
    pub after: Option<Json>,
    /// Whether records come in cursor order, each batch followed by a checkpoint that a read can
    /// resume from; otherwise only the records after `after` come, in any order (a reader that
    /// commits all it read at once need not wait for them to be sorted).
    pub ordered: bool,
}

/// One of `count` disjoint slices of a stream; together they cover it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: u32,
    pub count: u32,
}

/// A read of a model or stream.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub readable: Readable,
    /// The fields to return, in order.
    pub fields: Vec<String>,
    /// Identity fields to sort by (see [`crate::record::key`] for the order); records with a
    /// NULL in one come last. Only asked of sources whose reads can be sorted.
    pub order_by: Vec<String>,
    /// Only records for which this holds, over the readable's field names (only asked of
    /// connectors with [`super::Capabilities::filters`]).
    pub filter: Option<Predicate>,
    pub cursor: Option<Cursor>,
    pub partition: Option<Partition>,
    /// One of the slices [`Source::slices`] cut the stream into.
    pub slice: Option<Json>,
    /// Read as of this snapshot, held by [`Source::hold_snapshot`] (on any process).
    pub snapshot: Option<String>,
    /// The state the source handed out in its last checkpoint of this read, if any.
    pub state: Option<Json>,
    /// Upper bounds of one batch.
    pub batch_rows: usize,
    pub batch_bytes: usize,
}

impl ReadRequest {
    /// A plain read of `readable`'s `fields`, unsorted, from the start.
    pub fn new(readable: Readable, fields: Vec<String>, batch_rows: usize, batch_bytes: usize) -> Self {
        Self {
            readable,
            fields,
            order_by: vec![],
            filter: None,
            cursor: None,
            partition: None,
            slice: None,
            snapshot: None,
            state: None,
            batch_rows,
            batch_bytes,
        }
    }
}

/// What a read yields, in order.
#[derive(Debug)]
pub enum ReadEvent {
    Batch(RecordBatch),
    /// Everything before this point is read; saving `state` (and resuming with it) continues
    /// after it. A checkpoint is only durable once the records before it are.
    Checkpoint(Json),
}

/// A read in progress.
pub struct Reading {
    pub schema: Arc<Schema>,
    /// Whether records come sorted by `order_by` (a source may decline to sort).
    pub sorted: bool,
    pub events: BoxStream<'static, Result<ReadEvent, ConnectorError>>,
}

/// A moment of a source that reads on other connections, of other processes, can share (see
/// [`Source::hold_snapshot`]); it lasts until this is dropped or its connection ends.
#[async_trait]
pub trait HeldSnapshot: Send + Sync {
    /// What reads name in [`ReadRequest::snapshot`] to see it.
    fn id(&self) -> &str;

    /// Shows the source the holder is still there (so no idle timeout ends it).
    async fn keep_alive(&self) -> Result<(), ConnectorError>;
}

/// Reads from a connection.
#[async_trait]
pub trait Source: Send + Sync {
    /// The streams this connection offers.
    async fn discover(&self) -> Result<Catalog, ConnectorError>;

    /// The items a model configuration of this source takes, one of which a model gives.
    fn model_options(&self) -> &'static [ModelOption];

    /// The fields a model configuration yields; a bad query fails with the system's message.
    async fn model_fields(&self, model: &Json) -> Result<Vec<Field>, ConnectorError>;

    /// The system's estimate of how many records `readable` yields, if it has one.
    async fn estimate_rows(&self, readable: &Readable) -> Result<Option<u64>, ConnectorError>;

    /// Up to `limit` records of the model as JSON objects.
    async fn sample(&self, model: &Json, limit: usize) -> Result<Vec<serde_json::Map<String, Json>>, ConnectorError>;

    /// Starts a read: batches bounded by `request.batch_rows`/`batch_bytes`, and checkpoints.
    async fn read(&self, request: ReadRequest) -> Result<Reading, ConnectorError>;

    /// Cuts stream `stream` into disjoint slices of about `rows` records each that together
    /// cover it, including records added after the cut (the last slice is open-ended); reads
    /// name one in [`ReadRequest::slice`]. A source that cannot cut returns one slice, the
    /// whole stream (`null`).
    async fn slices(&self, _stream: &str, _rows: u64) -> Result<Vec<Json>, ConnectorError> {
        Ok(vec![Json::Null])
    }

    /// Holds a moment of the source that the reads of a table's slices, on any worker, share,
    /// so a table read in slices is read as of one moment; `None` when the source cannot.
    async fn hold_snapshot(&self) -> Result<Option<Box<dyn HeldSnapshot>>, ConnectorError> {
        Ok(None)
    }

    /// How many records stream `stream` holds, exactly, when the source can count them cheaply.
    async fn count(&self, _stream: &str) -> Result<Option<u64>, ConnectorError> {
        Ok(None)
    }
}
