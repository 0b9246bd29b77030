//! The connector contract: what a source and a destination must do.
//!
//! A [`Connector`] is a connection type (`postgresql`, …). Given a validated configuration it
//! opens a [`Source`] (runs models, yields bounded [`RecordBatch`]es in identity order) and/or a
//! [`Destination`] (lists target objects and fields, writes batches idempotently and reports
//! per-record failures). Connectors never persist state: the worker owns checkpoints and diff
//! snapshots and commits them only after the destination accepted the writes.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::{
    config::Deadlines,
    egress::{Egress, EgressError},
    record::{Field, RecordBatch, Schema},
};

/// What every connector gets from the process: where its connections may go and how long any
/// call to its system may take.
#[derive(Debug, Clone)]
pub struct Context {
    pub egress: Arc<Egress>,
    pub deadlines: Deadlines,
}

/// Where a connection goes and as whom. A stored secret is only ever sent to the endpoint it
/// was stored for; the egress policy decides whether the endpoint may be reached at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// The database, for database servers (the state database is refused by name too).
    pub database: Option<String>,
    pub user: Option<String>,
}

impl Endpoint {
    /// Whether a secret stored for `self` may be sent to `other`: the same host, port and user.
    pub fn same_recipient(&self, other: &Endpoint) -> bool {
        self.host.eq_ignore_ascii_case(&other.host) && self.port == other.port && self.user == other.user
    }

    /// Checks the endpoint against the egress policy without connecting. A host that does not
    /// resolve now is no refusal: connecting resolves and checks again.
    pub async fn check(&self, ctx: &Context) -> Result<(), ConnectorError> {
        let limit = ctx.deadlines.connect;
        match ctx.egress.resolve(&self.host, self.port, self.database.as_deref(), limit).await {
            Err(refused @ EgressError::Refused(_)) => Err(refused.into()),
            _ => Ok(()),
        }
    }
}

/// Runs `work`, failing as unavailable when it takes longer than `limit`; the error says that
/// `what` did not answer. Dropping `work` at the deadline drops whatever it was waiting on.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| Err(ConnectorError::timed_out(what, limit)))
}

/// What kind of failure a connector hit, which decides the API status and whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration or request is wrong (bad SQL, unknown field); retrying will not help.
    Invalid,
    /// The named object does not exist.
    NotFound,
    /// The upstream could not be reached or refused us for now; a retry may succeed.
    Unavailable,
    /// The egress policy forbids reaching the system (Syncline's own database, a denied network).
    Refused,
}

/// A connector failure with a message fit for the user (it names object, field and record).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ConnectorError {
    /// A permanent, user-caused failure.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Invalid, message: message.into() }
    }

    /// A missing object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::NotFound, message: message.into() }
    }

    /// A connection the egress policy does not let through.
    pub fn refused(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Refused, message: message.into() }
    }

    /// `what` did not answer within `limit` (transient).
    pub fn timed_out(what: &str, limit: Duration) -> Self {
        Self::unavailable(format!("{what} did not answer within {} s", limit.as_secs()))
    }

    /// A transient failure.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Unavailable, message: message.into() }
    }
}

impl From<EgressError> for ConnectorError {
    /// A refusal of the egress policy; a host that does not resolve is unavailable for now.
    fn from(e: EgressError) -> Self {
        match e {
            EgressError::Refused(why) => Self::refused(why),
            unresolved => Self::unavailable(unresolved.to_string()),
        }
    }
}

/// Which roles a connection type can play (the Polytomic `capabilities` object).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Capabilities {
    pub source: bool,
    pub destination: bool,
    pub enrichment: bool,
    pub logging: bool,
    pub orchestration: bool,
}

/// Static description of a connection type.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    /// Type id used in the API, e.g. `postgresql`.
    pub id: &'static str,
    pub name: &'static str,
    pub capabilities: Capabilities,
    /// JSON Schema of the configuration; secret properties carry `"writeOnly": true`.
    pub config_schema: Json,
}

impl ConnectorSpec {
    /// Names of the configuration properties that are secrets (stored encrypted, never returned).
    pub fn secret_fields(&self) -> Vec<String> {
        self.config_schema["properties"]
            .as_object()
            .map(|props| {
                props.iter().filter(|(_, p)| p["writeOnly"] == Json::Bool(true)).map(|(k, _)| k.clone()).collect()
            })
            .unwrap_or_default()
    }
}

/// Model sync modes (the Polytomic `mode` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncMode {
    Create,
    Update,
    UpdateOrCreate,
    Replace,
    Append,
}

impl SyncMode {
    /// Every supported mode.
    pub const ALL: [SyncMode; 5] = [Self::Create, Self::Update, Self::UpdateOrCreate, Self::Replace, Self::Append];

    /// The wire name (`updateOrCreate`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::UpdateOrCreate => "updateOrCreate",
            Self::Replace => "replace",
            Self::Append => "append",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether the mode matches records on an identity.
    pub fn requires_identity(self) -> bool {
        self != Self::Append
    }
}

/// A field of a destination object.
#[derive(Debug, Clone, Serialize)]
pub struct TargetField {
    pub id: String,
    pub name: String,
    /// Polytomic type name (`string`, `number`, …).
    #[serde(rename = "type")]
    pub field_type: String,
    /// The destination's own type name.
    pub source_type: String,
    pub required: bool,
    pub createable: bool,
    pub updateable: bool,
    pub supports_identity: bool,
}

/// An object a destination can write to (a table, a CRM object).
#[derive(Debug, Clone, Serialize)]
pub struct TargetObject {
    pub id: String,
    pub name: String,
}

/// What to read from a source: a model's configuration and the fields to return, in order.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// The model's `configuration` (e.g. `{"query": "select …"}`).
    pub model: Json,
    pub fields: Vec<String>,
    /// Field to sort the records by (the sync identity); records with a NULL key come last.
    pub order_by: Option<String>,
    /// Upper bounds of one batch.
    pub batch_rows: usize,
    pub batch_bytes: usize,
}

/// A stream of record batches.
pub type BatchStream = BoxStream<'static, Result<RecordBatch, ConnectorError>>;

/// Reads models from a connection.
#[async_trait]
pub trait Source: Send + Sync {
    /// The fields a model configuration yields; a bad query fails with the database's message.
    async fn model_fields(&self, model: &Json) -> Result<Vec<Field>, ConnectorError>;

    /// The planner's estimate of how many records the model yields, if it has one.
    async fn estimate_rows(&self, model: &Json) -> Result<Option<u64>, ConnectorError>;

    /// Up to `limit` records of the model as JSON objects.
    async fn sample(&self, model: &Json, limit: usize) -> Result<Vec<serde_json::Map<String, Json>>, ConnectorError>;

    /// Streams the model's records in batches bounded by `request.batch_rows`/`batch_bytes`.
    async fn read(&self, request: ReadRequest) -> Result<(Arc<Schema>, BatchStream), ConnectorError>;
}

/// How a sync writes: the object, the mode, and which target field each record field fills.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub object: String,
    pub mode: SyncMode,
    /// Schema of incoming records.
    pub schema: Arc<Schema>,
    /// Target field for each schema field, same order.
    pub targets: Vec<String>,
    /// Index of the identity in the schema, if the mode matches on one.
    pub identity: Option<usize>,
}

/// A record the destination rejected; `index` is its position in the written batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    pub index: usize,
    pub message: String,
}

/// Writes batches into one destination object.
#[async_trait]
pub trait BatchWriter: Send {
    /// Writes every record of `batch` (inserting or updating as the mode says) and returns the
    /// ones rejected. Writing the same batch twice leaves the same result (except in append mode).
    /// `new_records` says the sync has never delivered any of these records, so the destination
    /// may try a faster insert-only path; it must still handle records that turn out to exist.
    async fn write(&mut self, batch: &RecordBatch, new_records: bool) -> Result<Vec<RecordFailure>, ConnectorError>;

    /// Deletes the records whose identity is in `keys` (a one-field batch).
    async fn delete(&mut self, keys: &RecordBatch) -> Result<(), ConnectorError>;
}

/// Writes to a connection.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Objects a model sync can target.
    async fn target_objects(&self) -> Result<Vec<TargetObject>, ConnectorError>;

    /// The fields of `object`.
    async fn target_fields(&self, object: &str) -> Result<Vec<TargetField>, ConnectorError>;

    /// Modes this destination supports.
    fn modes(&self) -> &'static [SyncMode];

    /// Opens a writer, checking up front that the mapping fits the object.
    async fn writer(&self, request: WriteRequest) -> Result<Box<dyn BatchWriter>, ConnectorError>;
}

/// A connection type: its spec and how to open it.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Type id, name, capabilities and configuration schema.
    fn spec(&self) -> &ConnectorSpec;

    /// Checks that a configuration reaches its system.
    async fn check(&self, ctx: &Context, config: &Json) -> Result<(), ConnectorError>;

    /// Opens the connection as a source, if the type is one.
    fn source(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn Source>, ConnectorError>;

    /// Opens the connection as a destination, if the type is one.
    fn destination(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn Destination>, ConnectorError>;

    /// Where a configuration connects, and as whom.
    fn endpoint(&self, config: &Json) -> Result<Endpoint, ConnectorError>;
}
