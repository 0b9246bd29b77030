//! Destination discovery for model syncs: target objects and their fields.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::connector::SyncMode;

use super::{connections, envelope};
use crate::{
    AppState,
    error::ApiError,
    extract::{Authorized, can},
    store::connections::Connection,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(objects).service(fields);
}

fn modes(modes: &[SyncMode]) -> Vec<Json> {
    modes
        .iter()
        .map(|m| {
            json!({
                "id": m.as_str(),
                "mode": m.as_str(),
                "label": m.as_str(),
                "requires_identity": m.requires_identity(),
                "supports_per_field_mode": false,
                "supports_field_sync_mode": false,
                "supports_target_filters": false,
            })
        })
        .collect()
}

#[get("/connections/{id}/modelsync/targetobjects")]
async fn objects(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
) -> Result<HttpResponse, ApiError> {
    let connection = connections::open(&state, &connection)?;
    let destination = connection.connector.destination(&state.connector, &connection.config)?;
    let modes = modes(destination.modes());
    let objects: Vec<Json> = destination
        .target_objects()
        .await?
        .into_iter()
        .map(|o| json!({"id": o.id, "name": o.name, "modes": modes}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"data": objects, "target_creation": {"supported": false, "properties": []}})))
}

#[derive(Deserialize)]
struct FieldsQuery {
    target: Option<String>,
}

#[get("/connections/{id}/modelsync/target/fields")]
async fn fields(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
    query: web::Query<FieldsQuery>,
) -> Result<HttpResponse, ApiError> {
    let target = query.target.clone().ok_or_else(|| ApiError::bad_request("the target query parameter is required"))?;
    let connection = connections::open(&state, &connection)?;
    let destination = connection.connector.destination(&state.connector, &connection.config)?;
    let fields = destination.target_fields(&target).await.map_err(|e| match e.class {
        syncline_core::connector::ErrorClass::NotFound => ApiError::not_found("target object"),
        _ => e.into(),
    })?;
    let fields: Vec<Json> = fields
        .into_iter()
        .map(|f| {
            let mut field = serde_json::to_value(&f).unwrap_or_default();
            field["identity_functions"] = json!([{"id": "Equality", "label": "Equality"}]);
            field["filterable"] = json!(false);
            field["encryptable"] = json!(false);
            field
        })
        .collect();
    Ok(envelope(json!({
        "id": target,
        "name": target,
        "refreshed_at": chrono::Utc::now(),
        "modes": modes(destination.modes()),
        "properties": {},
        "fields": fields,
    })))
}
