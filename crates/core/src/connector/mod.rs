//! The connector contract: what every connection type does, whatever the workload.
//!
//! The lifecycle follows the data: a [`Connector`] declares its configuration type (its JSON
//! Schema is the spec), `check`s a configuration, and opens a [`Source`] (`discover` a
//! [`Catalog`] of streams, `read` a model or stream as batches and checkpoints) or a
//! [`Destination`] (`describe` and `apply` target objects, `write` batches whose records carry
//! their [`Operation`], per-record failures back). Every call gets the process's [`Context`].
//! Failures carry an [`ErrorClass`] that decides whether the worker retries. Connectors never
//! persist state: the worker owns checkpoints and diff snapshots and commits them only after
//! the destination accepted the writes.

use std::{sync::Arc, time::Duration};

use crate::{
    config::Deadlines,
    egress::{Egress, EgressError},
};

mod budget;
mod bulk;
mod catalog;
mod destination;
mod error;
mod http;
mod source;
mod spec;
mod warehouse;

pub use budget::{Budget, Budgets};
pub use bulk::{BulkDestination, Committed, KeyStream, Keys, LoadMode, LoadRequest, Loader, PendingCount, TableSpec};
pub use catalog::{Catalog, Stream, StreamCapabilities};
pub use destination::{
    Action, BatchWriter, CreateProperty, Destination, IdentityFunction, InvalidProperty, Matching, Mismatch,
    MismatchKind, ObjectSpec, Operation, Operations, RecordFailure, Replacement, Shaping, SyncMode, TargetCreation,
    TargetField, TargetObject, Verifier, WriteBatch, WriteRequest,
};
pub use error::{ConnectorError, ErrorClass};
pub use source::{
    Cursor, HeldSnapshot, ModelInput, ModelOption, Partition, ReadEvent, ReadRequest, Readable, Reading, Source,
};
pub use spec::{Capabilities, Connector, ConnectorSpec, DynConnector, ParameterValue, Secret, config_schema, register};
pub use warehouse::{EventWarehouse, TableRows};

/// What every connector call gets from the process: where connections may go, how long a call
/// may take, when to give up, the rate budgets shared by everything using one credential, an
/// HTTP client that obeys the egress policy, and counters of what went through.
#[derive(Debug, Clone)]
pub struct Context {
    pub egress: Arc<Egress>,
    pub deadlines: Deadlines,
    /// Cancelled when the work the call belongs to is abandoned (a run canceled or lost).
    pub cancel: tokio_util::sync::CancellationToken,
    pub budgets: Arc<Budgets>,
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// A context for a process with this egress policy and these deadlines.
    pub fn new(egress: Arc<Egress>, deadlines: Deadlines) -> Self {
        let http = http::client(egress.clone(), &deadlines);
        Self {
            egress,
            deadlines,
            cancel: tokio_util::sync::CancellationToken::new(),
            budgets: Arc::new(Budgets::default()),
            http,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// The same context for one piece of work: cancelling it cancels only that work, and its
    /// metrics count only that work.
    pub fn child(&self) -> Self {
        Self { cancel: self.cancel.child_token(), metrics: Arc::new(Metrics::default()), ..self.clone() }
    }
}

impl Context {
    /// Checks an HTTP URL's host against the egress policy. Host names are checked again when
    /// [`Context::http`] resolves them; a URL with an IP address is only checked here, so
    /// connectors call this before every request to a URL they did not build themselves.
    pub async fn allow_url(&self, url: &reqwest::Url) -> Result<(), ConnectorError> {
        let host = url.host_str().ok_or_else(|| ConnectorError::config(format!("{url} has no host")))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let endpoint = Endpoint { host: host.to_owned(), port, database: None, user: None, directory: None };
        endpoint.check(self).await
    }
}

/// Counters of what connectors did with one context: the calls they made to their system
/// (statements, API requests), which the worker reports with each run.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: std::sync::atomic::AtomicU64,
}

impl Metrics {
    /// Counts one call to the system.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Calls made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
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
    /// A directory of the worker's own file system (`file://`), which the egress policy checks
    /// instead of the host.
    pub directory: Option<std::path::PathBuf>,
}

impl Endpoint {
    /// Whether a secret stored for `self` may be sent to `other`: the same host, port and user.
    pub fn same_recipient(&self, other: &Endpoint) -> bool {
        self.host.eq_ignore_ascii_case(&other.host) && self.port == other.port && self.user == other.user
    }

    /// Checks the endpoint against the egress policy without connecting. A host that does not
    /// resolve now is no refusal: connecting resolves and checks again.
    pub async fn check(&self, ctx: &Context) -> Result<(), ConnectorError> {
        if let Some(directory) = &self.directory {
            return ctx.egress.local_directory(directory).map_err(Into::into);
        }
        let limit = ctx.deadlines.connect;
        match ctx.egress.resolve(&self.host, self.port, self.database.as_deref(), limit).await {
            Err(refused @ EgressError::Refused(_)) => Err(refused.into()),
            _ => Ok(()),
        }
    }
}

/// Runs `work`, failing as transient when it takes longer than `limit`; the error says that
/// `what` did not answer. Dropping `work` at the deadline drops whatever it was waiting on.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| Err(ConnectorError::timed_out(what, limit)))
}
