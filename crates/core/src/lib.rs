//! Syncline's shared core: configuration, the connector contract, records in flight, the
//! payload store, the job queue, secrets, state storage and telemetry.

pub mod bulk;
pub mod config;
pub mod connector;
pub mod credentials;
pub mod crypto;
pub mod db;
pub mod egress;
pub mod events;
pub mod executions;
pub mod jsonschema;
pub mod object_url;
pub mod payload;
pub mod queue;
pub mod record;
mod relay;
pub mod schedule;
pub mod slack;
pub mod sync;
pub mod telemetry;

pub use config::Settings;
