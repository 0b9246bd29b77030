//! PostgreSQL as a model source and a destination.
//!
//! Both sides speak binary `COPY`: the source streams `COPY (model) TO STDOUT (FORMAT binary)`
//! sorted by the sync identity, and the destination `COPY`s batches into a temporary staging
//! table and applies them with one set-based statement per batch. [`cdc`] captures tables'
//! changes through logical replication.

mod bulk;
pub mod cdc;
mod client;
mod copy;
mod destination;
mod source;
mod spelling;
mod types;
mod verify;
mod warehouse;

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use syncline_core::connector::{
    BulkDestination, Capabilities, Connector, ConnectorError, Context, Destination, Endpoint, EventWarehouse,
    ParameterValue, Secret, Source,
};

pub use client::quote_ident;

/// PostgreSQL
///
/// Settings of a PostgreSQL connection (the Polytomic `postgresql` configuration).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "PostgreSQL")]
pub struct PostgresConfig {
    /// Host name or address of the server.
    #[schemars(length(min = 1))]
    pub hostname: String,
    /// TCP port of the server.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Database to connect to.
    #[schemars(length(min = 1))]
    pub database: String,
    /// User to connect as.
    #[schemars(length(min = 1))]
    pub username: String,
    /// Password of the user.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Whether to require TLS.
    #[serde(default = "default_ssl")]
    pub ssl: bool,
    /// Whether bulk syncs in `replicate` mode from this connection capture changes through
    /// logical replication after their initial load (needs `wal_level = logical` and a role
    /// with `REPLICATION`).
    #[serde(default)]
    pub change_detection: bool,
}

fn default_port() -> u16 {
    5432
}

fn default_ssl() -> bool {
    true
}

/// The `postgresql` connection type.
#[derive(Debug, Default)]
pub struct Postgres;

#[async_trait]
impl Connector for Postgres {
    type Config = PostgresConfig;
    const ID: &'static str = "postgresql";
    const NAME: &'static str = "PostgreSQL";

    fn capabilities(&self) -> Capabilities {
        Capabilities { source: true, destination: true, events: true, filters: true, ..Capabilities::default() }
    }

    fn endpoint(&self, cfg: &PostgresConfig) -> Endpoint {
        crate::sql::endpoint(&cfg.hostname, cfg.port, &cfg.database, &cfg.username)
    }

    async fn check(&self, ctx: &Context, config: &PostgresConfig) -> Result<(), ConnectorError> {
        let conn = client::connect(ctx, config).await?;
        conn.interactive(conn.client.simple_query("select 1")).await?;
        Ok(())
    }

    /// `database`: the databases of the server the user may connect to.
    async fn parameter_values(
        &self,
        ctx: &Context,
        config: &PostgresConfig,
        field: &str,
    ) -> Result<Option<Vec<ParameterValue>>, ConnectorError> {
        let sql = match field {
            "database" => {
                "select datname::text from pg_database where datallowconn and not datistemplate
                   and has_database_privilege(datname, 'connect') order by 1"
            }
            _ => return Ok(None),
        };
        let conn = client::connect(ctx, config).await?;
        Ok(Some(conn.names(sql).await?))
    }

    fn source(&self, ctx: &Context, config: PostgresConfig) -> Result<Arc<dyn Source>, ConnectorError> {
        Ok(Arc::new(source::PostgresSource::new(ctx.clone(), config)))
    }

    fn destination(&self, ctx: &Context, config: PostgresConfig) -> Result<Arc<dyn Destination>, ConnectorError> {
        Ok(Arc::new(destination::PostgresDestination::new(ctx.clone(), config)))
    }

    fn bulk_destination(
        &self,
        ctx: &Context,
        config: PostgresConfig,
    ) -> Result<Arc<dyn BulkDestination>, ConnectorError> {
        Ok(Arc::new(bulk::PostgresBulk::new(ctx.clone(), config)))
    }

    fn event_warehouse(
        &self,
        ctx: &Context,
        config: PostgresConfig,
    ) -> Result<Arc<dyn EventWarehouse>, ConnectorError> {
        Ok(Arc::new(warehouse::PostgresWarehouse::new(ctx.clone(), config)))
    }
}
