//! The in-memory reference connector (`memory`): the smallest complete implementation of the
//! connector contract, for tests and docs. Registered only when `REFERENCE_CONNECTORS=true`.
//!
//! As a source it yields a generated [`Dataset`] (the model configuration
//! `{"dataset": "<name>"}` names the connection's dataset) or, by the same configuration, an
//! object a memory destination of the same dataset wrote. It declines to sort (records come
//! scrambled, the worker sorts them) unless `sorted` is set, reads after a cursor, reads one
//! partition of several, and emits a checkpoint after every batch. As a destination it keeps
//! objects in a process-global store under the dataset's name, supports every mode, per-record
//! operations and `apply`, and rejects records its `reject_when_field_equals` rule names.
//!
//! `faults` make it misbehave on purpose, on reads and writes only (checks, discovery and
//! samples always work): a panic, a failure index past the batch, transient and rate-limited
//! failures that clear after a number of calls (counted per dataset in this process, so the
//! worker's retries see them clear), a permanent failure.

mod dataset;
mod destination;
mod source;
mod store;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
pub use dataset::Dataset;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;
pub use store::{clear, open_reads};
use syncline_core::connector::{
    Capabilities, Connector, ConnectorError, Context, Destination, Endpoint, Secret, Source,
};

/// In-memory reference
///
/// A generated dataset and a process-local store, with faults on demand (tests and docs only).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "In-memory reference")]
pub struct MemoryConfig {
    /// Name of the generated dataset, and of the store namespace destination writes go to.
    #[schemars(length(min = 1))]
    pub dataset: String,
    /// Records of the generated dataset.
    #[serde(default = "default_rows")]
    pub rows: u64,
    /// Seed of the generated values.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Version of the values: each version after 1 changes exactly 1% of the records.
    #[serde(default = "default_version")]
    #[schemars(range(min = 1))]
    pub version: u32,
    /// Whether reads can be sorted by the identity (otherwise records come scrambled).
    #[serde(default)]
    pub sorted: bool,
    /// When set, must be `memory`: anything else is refused as bad credentials.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Destination: records whose field equals the value are rejected one by one.
    #[serde(default)]
    pub reject_when_field_equals: Option<Rule>,
    /// Failures to inject into reads and writes.
    #[serde(default)]
    pub faults: Faults,
}

fn default_rows() -> u64 {
    1000
}

fn default_seed() -> u64 {
    1
}

fn default_version() -> u32 {
    1
}

/// A rule naming records to reject.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The target field.
    pub field: String,
    /// The value (as JSON) that gets a record rejected.
    pub value: Json,
}

/// Failures to inject. Transient and rate-limited failures are counted per dataset in this
/// process: the first `N` reads or writes fail, later ones succeed.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Panic while reading or writing batch `N` (1 is the first) of a read or writer.
    #[serde(default)]
    pub panic_at_batch: Option<u32>,
    /// Writes report a failure for a record past the end of the batch.
    #[serde(default)]
    pub out_of_range_failure: bool,
    /// The first `N` reads or writes fail as transient.
    #[serde(default)]
    pub transient_failures: u32,
    /// The first `times` reads or writes are rate limited, asking to wait `retry_after_ms`.
    #[serde(default)]
    pub rate_limited: Option<RateLimit>,
    /// Every read and write fails permanently with this message.
    #[serde(default)]
    pub permanent: Option<String>,
}

/// An injected rate limit.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub times: u32,
    pub retry_after_ms: u64,
}

impl Faults {
    /// The failure this call of `what` (`read`, `write`) gets, if any.
    fn on_call(&self, dataset: &str, what: &str) -> Result<(), ConnectorError> {
        if let Some(message) = &self.permanent {
            return Err(ConnectorError::permanent(message.clone()));
        }
        store::with(dataset, |ns| {
            if ns.transient_used < self.transient_failures {
                ns.transient_used += 1;
                let (n, of) = (ns.transient_used, self.transient_failures);
                return Err(ConnectorError::transient(format!("injected transient {what} failure {n} of {of}")));
            }
            match &self.rate_limited {
                Some(limit) if ns.rate_limited_used < limit.times => {
                    ns.rate_limited_used += 1;
                    let after = Duration::from_millis(limit.retry_after_ms);
                    Err(ConnectorError::rate_limited(format!("injected rate limit on {what}"), Some(after)))
                }
                _ => Ok(()),
            }
        })
    }

    /// Panics if batch `n` of a read or writer is the one to panic at. Never called with the
    /// store locked.
    fn on_batch(&self, n: u32, what: &str) {
        if self.panic_at_batch == Some(n) {
            panic!("injected panic at {what} batch {n}");
        }
    }
}

impl MemoryConfig {
    fn dataset(&self) -> Dataset {
        Dataset { rows: self.rows, seed: self.seed, version: self.version }
    }
}

/// The `memory` connection type.
#[derive(Debug, Default)]
pub struct Memory;

#[async_trait]
impl Connector for Memory {
    type Config = MemoryConfig;
    const ID: &'static str = "memory";
    const NAME: &'static str = "In-memory reference";

    fn capabilities(&self) -> Capabilities {
        Capabilities { source: true, destination: true, ..Capabilities::default() }
    }

    /// Nothing leaves the process; the endpoint only tells configurations apart.
    fn endpoint(&self, config: &MemoryConfig) -> Endpoint {
        Endpoint {
            host: "memory.invalid".into(),
            port: 0,
            database: Some(config.dataset.clone()),
            user: None,
            directory: None,
        }
    }

    async fn check(&self, _ctx: &Context, config: &MemoryConfig) -> Result<(), ConnectorError> {
        match &config.token {
            Some(token) if token.expose() != "memory" => Err(ConnectorError::auth("the token was refused")),
            _ => Ok(()),
        }
    }

    fn source(&self, ctx: &Context, config: MemoryConfig) -> Result<Arc<dyn Source>, ConnectorError> {
        Ok(Arc::new(source::MemorySource::new(ctx.clone(), config)))
    }

    fn destination(&self, _ctx: &Context, config: MemoryConfig) -> Result<Arc<dyn Destination>, ConnectorError> {
        Ok(Arc::new(destination::MemoryDestination::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use syncline_core::connector::{ErrorClass, config_schema};

    use super::*;

    fn config(faults: Json) -> MemoryConfig {
        serde_json::from_value(serde_json::json!({"dataset": format!("t-{}", uuid::Uuid::new_v4()), "faults": faults}))
            .expect("config")
    }

    #[test]
    fn the_schema_marks_the_token_secret() {
        let schema = config_schema::<MemoryConfig>();
        assert_eq!(schema["properties"]["token"]["writeOnly"], true);
        assert_eq!(schema["required"], serde_json::json!(["dataset"]));
    }

    #[test]
    fn injected_failures_clear_after_their_count() {
        let cfg =
            config(serde_json::json!({"transient_failures": 2, "rate_limited": {"times": 1, "retry_after_ms": 50}}));
        let classes: Vec<Option<ErrorClass>> =
            (0..4).map(|_| cfg.faults.on_call(&cfg.dataset, "write").err().map(|e| e.class)).collect();
        let limited = ErrorClass::RateLimited { retry_after: Some(Duration::from_millis(50)) };
        assert_eq!(classes, [Some(ErrorClass::Transient), Some(ErrorClass::Transient), Some(limited), None]);
        let permanent = config(serde_json::json!({"permanent": "disk on fire"}));
        let error = permanent.faults.on_call(&permanent.dataset, "read").expect_err("fails");
        assert_eq!((error.class, error.message.as_str()), (ErrorClass::Permanent, "disk on fire"));
    }
}
