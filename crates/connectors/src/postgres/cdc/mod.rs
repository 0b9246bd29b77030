//! Change data capture: logical replication through `pgoutput`.

pub mod pgoutput;

/// A position in the WAL (`16/B374D848` as text).
pub use tokio_postgres::types::PgLsn as Lsn;
