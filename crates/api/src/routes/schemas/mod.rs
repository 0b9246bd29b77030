//! A connection's source schemas (`client.schemas`): the cached catalog, its refresh, sample
//! records, and primary-key overrides. User-defined fields are refused: a SQL source's fields
//! are its columns (they are for API sources, which Syncline does not have yet).

pub mod catalog;

use actix_web::{HttpResponse, delete, get, http::header, patch, post, put, web};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use syncline_core::connector::Stream;

use super::{connections, envelope};
use crate::{
    AppState,
    error::{ApiError, parse_body},
    extract::{Authorized, can},
    store::{self, connections::Connection},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(refresh)
        .service(cache_status)
        .service(get_one)
        .service(records)
        .service(set_primary_keys)
        .service(reset_primary_keys)
        .service(patch_field)
        .service(upsert_fields)
        .service(delete_field);
}

/// 422 naming `field`.
fn invalid(field: &str, message: String) -> ApiError {
    ApiError::unprocessable(message).with_metadata(json!({ "field": field }))
}

/// Starts a refresh (unless one is under way) and answers at once with the cache status; its
/// `Location` is where to poll.
#[post("/connections/{id}/schemas/refresh")]
async fn refresh(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
) -> Result<HttpResponse, ApiError> {
    catalog::refresh(&state, &connection).await?;
    let status = catalog::status(&state, &connection).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/connections/{}/schemas/status", connection.id)))
        .json(json!({ "data": status })))
}

#[get("/connections/{id}/schemas/status")]
async fn cache_status(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
) -> Result<HttpResponse, ApiError> {
    catalog::require_source(&connection)?;
    Ok(envelope(catalog::status(&state, &connection).await?))
}

#[get("/connections/{id}/schemas/{schema_id}")]
async fn get_one(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let view = catalog::load(&state, &connection).await?;
    Ok(envelope(view.schema_json(view.stream(&path.1)?, true)))
}

/// Up to 10 records of the schema, as `{column: value}` objects.
#[get("/connections/{id}/schemas/{schema_id}/records")]
async fn records(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let view = catalog::load(&state, &connection).await?;
    let stream = view.stream(&path.1)?;
    let opened = connections::open(&state, &connection)?;
    let source = opened.connector.source(&state.connector, &opened.config)?;
    let records = source.sample(&json!({ "table": stream.name }), 10).await?;
    Ok(envelope(json!(records)))
}

/// `key` with `field` in it (`Some(true)`), out of it (`Some(false)`), or as in the source's key
/// (`None`), in the order of the schema's fields. A field that cannot identify records cannot
/// join the key: 422 naming `name`.
fn with_key_field(
    stream: &Stream,
    key: &[String],
    (field, wanted): (&str, Option<bool>),
    name: &str,
) -> Result<Vec<String>, ApiError> {
    let found = stream.fields.iter().find(|f| f.name == field).ok_or_else(|| {
        invalid(name, format!("{field:?} is not a field of {} (refresh the schemas if it is new)", stream.name))
    })?;
    let member = wanted.unwrap_or_else(|| stream.key.iter().any(|k| k == field));
    if member && !found.field_type.can_identify() {
        let api_type = found.field_type.api_name();
        return Err(invalid(name, format!("{field:?} ({api_type}) cannot be part of a primary key")));
    }
    let keep = |f: &str| if f == field { member } else { key.iter().any(|k| k == f) };
    Ok(stream.fields.iter().map(|f| f.name.clone()).filter(|f| keep(f)).collect())
}

#[derive(Deserialize)]
struct KeyOverride {
    field_id: String,
    is_primary_key: bool,
}

#[derive(Deserialize)]
struct PrimaryKeysBody {
    #[serde(default)]
    fields: Vec<KeyOverride>,
}

/// Replaces the overrides: the source's key with each listed field in or out of it.
#[put("/connections/{id}/schemas/{schema_id}/primary_keys")]
async fn set_primary_keys(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Update>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: PrimaryKeysBody = parse_body(&body)?;
    let view = catalog::load(&state, &connection).await?;
    let stream = view.stream(&path.1)?;
    let mut key = stream.key.clone();
    for (i, change) in input.fields.iter().enumerate() {
        let change = (change.field_id.as_str(), Some(change.is_primary_key));
        key = with_key_field(stream, &key, change, &format!("fields[{i}].field_id"))?;
    }
    store::schema_overrides::set_primary_keys(&state.pool.get().await?, (connection.id, &stream.name), Some(&key))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[delete("/connections/{id}/schemas/{schema_id}/primary_keys")]
async fn reset_primary_keys(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Update>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let view = catalog::load(&state, &connection).await?;
    let stream = view.stream(&path.1)?;
    store::schema_overrides::set_primary_keys(&state.pool.get().await?, (connection.id, &stream.name), None).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Edits a detected field: `primary_key_override` (`true`/`false`; `null` follows the source
/// again) puts it in or out of the schema's primary key. Its label, type, path and definition
/// are the column's own and are refused.
#[patch("/connections/{id}/schemas/{schema_id}/fields/{field_id}")]
async fn patch_field(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Update>,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (_, schema_id, field_id) = path.into_inner();
    let input: Map<String, Json> = parse_body(&body)?;
    for key in ["label", "type", "path", "definition", "example"] {
        if input.get(key).is_some_and(|v| !v.is_null()) {
            return Err(invalid(
                key,
                format!(
                    "{key} cannot be set on {field_id:?}: a SQL source's fields are its columns, with their own names and types (user-defined fields are for API sources)"
                ),
            ));
        }
    }
    let view = catalog::load(&state, &connection).await?;
    let stream = view.stream(&schema_id)?;
    if !stream.fields.iter().any(|f| f.name == field_id) {
        return Err(ApiError::not_found("field"));
    }
    if let Some(wanted) = input.get("primary_key_override") {
        let wanted = match wanted {
            Json::Bool(b) => Some(*b),
            Json::Null => None,
            _ => {
                return Err(invalid("primary_key_override", "primary_key_override must be true, false or null".into()));
            }
        };
        let key = with_key_field(stream, view.primary_key(stream), (&field_id, wanted), "primary_key_override")?;
        let client = state.pool.get().await?;
        store::schema_overrides::set_primary_keys(&client, (connection.id, &stream.name), Some(&key)).await?;
    }
    let view = catalog::load(&state, &connection).await?;
    Ok(envelope(view.field_json(view.stream(&schema_id)?, &field_id)))
}

/// User-defined fields: refused, naming the first.
#[post("/connections/{id}/schemas/{schema_id}/fields")]
async fn upsert_fields(
    connection: Authorized<Connection, can::Update>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: Map<String, Json> = parse_body(&body)?;
    let field = input.get("fields").and_then(|f| f.get(0)).and_then(|f| f["field_id"].as_str()).unwrap_or_default();
    Err(invalid(
        "fields[0]",
        format!(
            "user-defined field {field:?} cannot be added to {}: a {} source's fields are its columns, read as they are (user-defined fields are for API sources)",
            path.1, connection.type_id
        ),
    ))
}

#[delete("/connections/{id}/schemas/{schema_id}/fields/{field_id}")]
async fn delete_field(
    connection: Authorized<Connection, can::Update>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    Err(invalid(
        "field_id",
        format!(
            "{:?} cannot be deleted: a {} source has no user-defined fields, and its columns are read as they are",
            path.2, connection.type_id
        ),
    ))
}
