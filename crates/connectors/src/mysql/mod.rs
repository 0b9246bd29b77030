//! MySQL and MariaDB as a model source, a destination and a bulk sync destination.
//!
//! The source streams a model's rows over the binary protocol and encodes them into record
//! batches as they arrive (see [`types`] for the type mapping); the destination writes batches
//! with multi-row `INSERT … ON DUPLICATE KEY UPDATE` when the identity is the table's unique key,
//! and through a temporary staging table otherwise; the bulk destination ([`bulk`]) loads each
//! partition in one transaction with its marker. Every session runs in UTC
//! (`time_zone = '+00:00'`) with `utf8mb4`.

mod bulk;
mod client;
mod destination;
mod source;
mod spelling;
mod types;
mod verify;

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use syncline_core::connector::{
    BulkDestination, Capabilities, Connector, ConnectorError, Context, Destination, Endpoint, ParameterValue, Secret,
    Source,
};

/// MySQL / MariaDB
///
/// Settings of a MySQL or MariaDB connection.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "MySQL / MariaDB")]
pub struct MysqlConfig {
    /// Host name or address of the server.
    #[schemars(length(min = 1))]
    pub hostname: String,
    /// TCP port of the server.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Database to connect to; tables of other databases are named `database.table`.
    #[schemars(length(min = 1))]
    pub database: String,
    /// User to connect as.
    #[schemars(length(min = 1))]
    pub username: String,
    /// Password of the user.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Whether to require TLS (verified against the web's root certificates).
    #[serde(default)]
    pub ssl: bool,
    /// Whether a value that does not fit its column fails its record (the default), rather
    /// than being cut to fit as a server in non-strict mode does.
    #[serde(default = "strict_by_default")]
    pub strict: bool,
}

fn default_port() -> u16 {
    3306
}

fn strict_by_default() -> bool {
    true
}

/// The `mysql` connection type.
#[derive(Debug, Default)]
pub struct Mysql;

#[async_trait]
impl Connector for Mysql {
    type Config = MysqlConfig;
    const ID: &'static str = "mysql";
    const NAME: &'static str = "MySQL / MariaDB";

    fn capabilities(&self) -> Capabilities {
        Capabilities { source: true, destination: true, filters: true, ..Capabilities::default() }
    }

    fn endpoint(&self, cfg: &MysqlConfig) -> Endpoint {
        crate::sql::endpoint(&cfg.hostname, cfg.port, &cfg.database, &cfg.username)
    }

    async fn check(&self, ctx: &Context, config: &MysqlConfig) -> Result<(), ConnectorError> {
        let mut conn = client::connect(ctx, config).await?;
        conn.query::<u8>(ctx.deadlines.query, "select 1", vec![]).await?;
        Ok(())
    }

    /// `database`: the databases the user can see.
    async fn parameter_values(
        &self,
        ctx: &Context,
        config: &MysqlConfig,
        field: &str,
    ) -> Result<Option<Vec<ParameterValue>>, ConnectorError> {
        if field != "database" {
            return Ok(None);
        }
        let mut conn = client::connect(ctx, config).await?;
        Ok(Some(conn.databases().await?))
    }

    fn source(&self, ctx: &Context, config: MysqlConfig) -> Result<Arc<dyn Source>, ConnectorError> {
        Ok(Arc::new(source::MysqlSource::new(ctx.clone(), config)))
    }

    fn destination(&self, ctx: &Context, config: MysqlConfig) -> Result<Arc<dyn Destination>, ConnectorError> {
        Ok(Arc::new(destination::MysqlDestination::new(ctx.clone(), config)))
    }

    fn bulk_destination(&self, ctx: &Context, config: MysqlConfig) -> Result<Arc<dyn BulkDestination>, ConnectorError> {
        Ok(Arc::new(bulk::MysqlBulk::new(ctx.clone(), config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_schema() {
        let config: MysqlConfig = serde_json::from_value(serde_json::json!({
            "hostname": "db", "database": "shop", "username": "reader", "password": "pw"
        }))
        .expect("valid configuration");
        assert_eq!((config.port, config.ssl), (3306, false));
        assert!(!format!("{config:?}").contains("pw"));
        let unknown = serde_json::json!({"hostname": "db", "database": "d", "username": "u", "schema": "x"});
        assert!(serde_json::from_value::<MysqlConfig>(unknown).is_err());
        let schema = syncline_core::connector::config_schema::<MysqlConfig>();
        assert_eq!(schema["title"], "MySQL / MariaDB");
        assert_eq!(schema["properties"]["password"]["writeOnly"], true);
        assert_eq!(schema["properties"]["hostname"]["minLength"], 1);
        assert_eq!(schema["properties"]["port"]["default"], 3306);
        assert_eq!(schema["required"], serde_json::json!(["hostname", "database", "username"]));
    }
}
