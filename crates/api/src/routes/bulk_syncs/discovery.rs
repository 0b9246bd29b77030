//! What a connection offers bulk syncs: the schemas of a source (`get_source`) and what a
//! destination accepts (`get_destination`). PostgreSQL and MySQL/MariaDB connections are bulk
//! sources; a connection is a bulk destination when its connector loads bulk syncs (PostgreSQL,
//! MySQL/MariaDB, files), in the modes it supports. Other connections are refused naming the field.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::{
    bulk::{BulkMode, DestinationConfig},
    connector::config_schema,
};

use super::super::{connections, envelope, schemas::catalog};
use crate::{
    AppState,
    error::ApiError,
    extract::{Authorized, can},
    store::connections::Connection,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(source).service(destination);
}

/// The connection types bulk syncs read from.
const BULK_SOURCES: &[&str] = &["postgresql", "mysql"];

/// A bulk sync's side: its source or its destination.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    Source,
    Destination,
}

/// 422 (naming `field`, when given) unless `connection` can be this side of a bulk sync: a
/// PostgreSQL or MySQL/MariaDB source, a destination whose connector loads bulk syncs.
pub fn require(state: &AppState, connection: &Connection, side: Side, field: Option<&str>) -> Result<(), ApiError> {
    match side {
        Side::Source if BULK_SOURCES.contains(&connection.type_id.as_str()) => Ok(()),
        Side::Source => Err(refusal(
            format!(
                "a {} connection cannot be a bulk sync source (bulk syncs read {})",
                connection.type_id,
                BULK_SOURCES.join(", ")
            ),
            field,
        )),
        Side::Destination => destination_modes(state, connection, field).map(|_| ()),
    }
}

/// The modes bulk syncs into `connection` may take, the default first; 422 (naming `field`,
/// when given) when its connector loads no bulk syncs.
pub fn destination_modes(
    state: &AppState,
    connection: &Connection,
    field: Option<&str>,
) -> Result<&'static [BulkMode], ApiError> {
    let opened = connections::open(state, connection)?;
    let bulk = opened.connector.bulk_destination(&state.connector, &opened.config);
    bulk.map(|b| b.modes()).map_err(|e| refusal(e.message, field))
}

/// 422 with `message`, naming `field` when given.
fn refusal(message: String, field: Option<&str>) -> ApiError {
    let error = ApiError::unprocessable(message);
    match field {
        Some(field) => error.with_metadata(json!({ "field": field })),
        None => error,
    }
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
    require(&state, &connection, Side::Source, None)?;
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
async fn destination(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
) -> Result<HttpResponse, ApiError> {
    let modes: Vec<Json> = destination_modes(&state, &connection, None)?.iter().copied().map(mode_json).collect();
    Ok(envelope(json!({
        "configuration": config_schema::<DestinationConfig>(),
        "modes": modes,
        "supported_resync_modes": ["refetch", "resync", "rebuild"],
        "supports_history_mode": false,
    })))
}
