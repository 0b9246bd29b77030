//! Opening the connections a run reads and writes: their configuration with secrets unsealed,
//! and their connector.

use std::sync::Arc;

use serde_json::Value as Json;
use syncline_core::{
    connector::{ConnectorError, DynConnector},
    credentials,
};
use tokio_postgres::Row;

use crate::Services;

/// The state database failed (may clear by itself).
pub fn state(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::transient(format!("state database: {e}"))
}

/// The connector and full configuration of the connection `row` holds in columns
/// `{side}_type`, `{side}_config` and `{side}_secrets`.
pub fn open(
    services: &Services,
    row: &Row,
    side: &str,
) -> Result<(&'static Arc<dyn DynConnector>, Json), ConnectorError> {
    let type_id: String = row.try_get(format!("{side}_type").as_str()).map_err(state)?;
    let public: Json = row.try_get(format!("{side}_config").as_str()).map_err(state)?;
    let sealed: Option<Vec<u8>> = row.try_get(format!("{side}_secrets").as_str()).map_err(state)?;
    let config = credentials::unseal(&public, sealed.as_deref(), &services.secrets)
        .map_err(|e| ConnectorError::config(format!("connection {type_id}: {e}")))?;
    let connector = syncline_connectors::get(&type_id)
        .ok_or_else(|| ConnectorError::config(format!("connection type {type_id:?} is not supported")))?;
    Ok((connector, config))
}
