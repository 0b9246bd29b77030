//! Destination discovery for model syncs: target objects and their fields, and the properties
//! naming a target object a sync can create.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::{
    connector::{CreateProperty, Destination, TargetCreation},
    sync::filter::{Function, Kind},
};

use super::{connections, envelope};
use crate::{
    AppState,
    error::ApiError,
    extract::{Authorized, can},
    store::connections::Connection,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(objects).service(create_property).service(fields);
}

/// The modes of `destination`, with what each supports.
fn modes(destination: &dyn Destination) -> Vec<Json> {
    let shapes = destination.shapes_writes();
    destination
        .modes()
        .iter()
        .map(|m| {
            json!({
                "id": m.as_str(),
                "mode": m.as_str(),
                "label": m.as_str(),
                "requires_identity": m.requires_identity(),
                "supports_per_field_mode": shapes,
                "supports_field_sync_mode": shapes,
                "supports_target_filters": shapes,
            })
        })
        .collect()
}

/// A target-creation property, with its values when `values` holds them.
async fn property(creation: &dyn TargetCreation, property: &CreateProperty, values: bool) -> Result<Json, ApiError> {
    let mut shown = json!({"id": property.id, "title": property.title, "enum": property.listed});
    if values {
        let listed = match property.listed {
            true => creation.values(property.id).await?,
            false => Vec::new(),
        };
        shown["values"] = json!(listed);
    }
    Ok(shown)
}

#[derive(Deserialize)]
struct ObjectsQuery {
    include_target_creation_values: Option<bool>,
}

/// The target objects, and `target_creation`: whether the destination creates targets, and the
/// properties naming a new one (with the values of listed ones when the query asks).
#[get("/connections/{id}/modelsync/targetobjects")]
async fn objects(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
    query: web::Query<ObjectsQuery>,
) -> Result<HttpResponse, ApiError> {
    let connection = connections::open(&state, &connection)?;
    let destination = connection.connector.destination(&state.connector, &connection.config)?;
    let modes = modes(destination.as_ref());
    let objects: Vec<Json> = destination
        .target_objects()
        .await?
        .into_iter()
        .map(|o| json!({"id": o.id, "name": o.name, "modes": modes}))
        .collect();
    let creation = destination.target_creation();
    let mut properties = Vec::new();
    if let Some(creation) = creation {
        let values = query.include_target_creation_values.unwrap_or(false);
        for p in creation.properties() {
            properties.push(property(creation, p, values).await?);
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "data": objects,
        "target_creation": {"supported": creation.is_some(), "properties": properties},
    })))
}

/// One target-creation property with its values (none for free text); 404 when the
/// destination has no such property, or creates no targets.
#[get("/connections/{id}/modelsync/targetobjects/properties/{property}")]
async fn create_property(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let connection = connections::open(&state, &connection)?;
    let destination = connection.connector.destination(&state.connector, &connection.config)?;
    let creation = destination.target_creation().ok_or_else(|| ApiError::not_found("target-creation property"))?;
    let wanted = creation
        .properties()
        .iter()
        .find(|p| p.id == path.1)
        .ok_or_else(|| ApiError::not_found("target-creation property"))?;
    Ok(envelope(property(creation, wanted, true).await?))
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
            field["identity_functions"] = match destination.shapes_writes() && f.field_type == "string" {
                true => json!([{"id": "Equality", "label": "Equality"}, {"id": "ISubstring", "label": "ISubstring"}]),
                false => json!([{"id": "Equality", "label": "Equality"}]),
            };
            let functions = filter_functions(&f.field_type);
            field["filterable"] = json!(destination.shapes_writes() && !functions.is_empty());
            field["filter_functions"] = json!(functions);
            field["encryptable"] = json!(false);
            field
        })
        .collect();
    Ok(envelope(json!({
        "id": target,
        "name": target,
        "refreshed_at": chrono::Utc::now(),
        "modes": modes(destination.as_ref()),
        "properties": {},
        "fields": fields,
    })))
}

/// The filter functions that apply to a field of Polytomic type `type_name`.
fn filter_functions(type_name: &str) -> Vec<Json> {
    let kind = Kind::of(type_name);
    Function::ALL.iter().filter(|f| f.applies_to(kind)).map(|f| json!({"id": f, "label": f})).collect()
}
