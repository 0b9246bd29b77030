//! PostgreSQL as a model source and a destination.
//!
//! Both sides speak binary `COPY`: the source streams `COPY (model) TO STDOUT (FORMAT binary)`
//! sorted by the sync identity, and the destination `COPY`s batches into a temporary staging
//! table and applies them with one set-based statement per batch.

mod client;
mod copy;
mod destination;
mod source;
mod types;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::connector::{
    Capabilities, Connector, ConnectorError, ConnectorSpec, Context, Destination, Endpoint, Source,
};

pub use client::quote_ident;

/// Settings of a PostgreSQL connection (the Polytomic `postgresql` configuration).
#[derive(Debug, Clone, Deserialize)]
pub struct PostgresConfig {
    pub hostname: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub database: String,
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default = "default_ssl")]
    pub ssl: bool,
}

fn default_port() -> u16 {
    5432
}

fn default_ssl() -> bool {
    true
}

impl PostgresConfig {
    fn parse(config: &Json) -> Result<Self, ConnectorError> {
        serde_json::from_value(config.clone()).map_err(|e| ConnectorError::invalid(format!("configuration: {e}")))
    }
}

/// The `postgresql` connection type.
#[derive(Debug)]
pub struct Postgres {
    spec: ConnectorSpec,
}

impl Postgres {
    /// The connection type with its configuration schema.
    pub fn new() -> Self {
        let spec = ConnectorSpec {
            id: "postgresql",
            name: "PostgreSQL",
            capabilities: Capabilities { source: true, destination: true, ..Capabilities::default() },
            config_schema: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": "postgresql",
                "title": "PostgreSQL",
                "type": "object",
                "required": ["hostname", "database", "username", "password"],
                "additionalProperties": false,
                "properties": {
                    "hostname": {"type": "string", "minLength": 1, "title": "Host"},
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 5432, "title": "Port"},
                    "database": {"type": "string", "minLength": 1, "title": "Database"},
                    "username": {"type": "string", "minLength": 1, "title": "Username"},
                    "password": {"type": "string", "title": "Password", "writeOnly": true},
                    "ssl": {"type": "boolean", "default": true, "title": "Use TLS"}
                }
            }),
        };
        Self { spec }
    }
}

impl Default for Postgres {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Connector for Postgres {
    fn spec(&self) -> &ConnectorSpec {
        &self.spec
    }

    async fn check(&self, ctx: &Context, config: &Json) -> Result<(), ConnectorError> {
        let conn = client::connect(ctx, &PostgresConfig::parse(config)?).await?;
        conn.interactive(conn.client.simple_query("select 1")).await?;
        Ok(())
    }

    fn source(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn Source>, ConnectorError> {
        Ok(Arc::new(source::PostgresSource::new(ctx.clone(), PostgresConfig::parse(config)?)))
    }

    fn destination(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn Destination>, ConnectorError> {
        Ok(Arc::new(destination::PostgresDestination::new(ctx.clone(), PostgresConfig::parse(config)?)))
    }

    fn endpoint(&self, config: &Json) -> Result<Endpoint, ConnectorError> {
        let cfg = PostgresConfig::parse(config)?;
        Ok(Endpoint { host: cfg.hostname, port: cfg.port, database: Some(cfg.database), user: Some(cfg.username) })
    }
}
