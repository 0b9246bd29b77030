//! What a connection offers bulk syncs: the schemas of a source (`get_source`) and what a
//! destination accepts (`get_destination`). PostgreSQL and MySQL/MariaDB connections are bulk
//! sources and destinations; other types are refused naming the connection.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::{
    bulk::{BulkMode, DestinationConfig},
    connector::config_schema,
};

use super::super::{envelope, schemas::catalog};
use crate::{
    AppState,
    error::ApiError,
    extract::{Authorized, can},
    store::connections::Connection,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(source).service(destination);
}

/// The connection types bulk syncs read from and write to.
const BULK_TYPES: &[&str] = &["postgresql", "mysql"];

/// A bulk sync's side: its source or its destination.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    Source,
    Destination,
}

/// 422 (naming `field`, when given) unless `connection` can be this side of a bulk sync.
pub fn require(connection: &Connection, side: Side, field: Option<&str>) -> Result<(), ApiError> {
    if BULK_TYPES.contains(&connection.type_id.as_str()) {
        return Ok(());
    }
    let side = match side {
        Side::Source => "source",
        Side::Destination => "destination",
    };
    let message = format!(
        "a {} connection cannot be a bulk sync {side} (bulk syncs support {})",
        connection.type_id,
        BULK_TYPES.join(", ")
    );
    let error = ApiError::unprocessable(message);
    Err(match field {
        Some(field) => error.with_metadata(json!({ "field": field })),
        None => error,
    })
}

#[derive(Deserialize)]
struct SourceQuery {
    include_fields: Option<bool>,
}

#[get("/connections/{id}/bulksync/source")]
async fn source(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
    query: web::Query<SourceQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&connection, Side::Source, None)?;
    let view = catalog::load(&state, &connection).await?;
    let include_fields = query.include_fields.unwrap_or(false);
    let schemas: Vec<Json> = view.catalog.streams.iter().map(|s| view.schema_json(s, include_fields)).collect();
    Ok(envelope(json!({
        "schemas": schemas,
        "configuration": {},
        "capabilities": {"supports_namespaces": true, "supports_tracking_fields": true},
    })))
}

/// What each mode does to a destination table.
fn mode_json(mode: BulkMode) -> Json {
    let (label, description) = match mode {
        BulkMode::Replicate => {
            ("Replicate", "The destination equals the source: rows upserted by primary key, deletes propagated")
        }
        BulkMode::Snapshot => ("Snapshot", "A full copy every run, swapped in at once"),
        BulkMode::Append => ("Append", "Every run's rows added to what is there"),
    };
    json!({
        "id": mode.as_str(),
        "label": label,
        "description": description,
        "requires_identity": mode == BulkMode::Replicate,
        "supports_field_sync_mode": false,
        "supports_target_filters": false,
    })
}

#[get("/connections/{id}/bulksync/target")]
async fn destination(connection: Authorized<Connection, can::Read>) -> Result<HttpResponse, ApiError> {
    require(&connection, Side::Destination, None)?;
    let modes: Vec<Json> = BulkMode::ALL.into_iter().map(mode_json).collect();
    Ok(envelope(json!({
        "configuration": config_schema::<DestinationConfig>(),
        "modes": modes,
        "supported_resync_modes": ["refetch", "resync", "rebuild"],
        "supports_history_mode": false,
    })))
}
