//! Record logs: an organization's setting (`/organization/record-logging`) and what an
//! execution of a model sync logged — the index by type, expiring links to the files, and the
//! files themselves. The links point back at this API and need the caller's credentials like
//! every API URL; a file is served only if the execution's index lists it.

use actix_web::{HttpResponse, get, http::header, put, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::executions::MODEL_SYNC;
use uuid::Uuid;

use super::{envelope, parse_id};
use crate::{
    AppState,
    error::{ApiError, parse_body},
    extract::{Authorized, Tenant, can},
    store::{self, syncs::ModelSync},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_settings)
        .service(put_settings)
        .service(logs_index)
        .service(log_urls)
        .service(log_file)
        .service(log_content);
}

/// How long a link to a record log file works.
const LINK_VALIDITY: chrono::Duration = chrono::Duration::hours(1);

/// The record log types an execution is asked about; `records` is every logged record and
/// `warnings` is always empty (Syncline logs no record warnings).
const TYPES: [&str; 6] = ["records", "errors", "warnings", "inserts", "updates", "deletes"];

/// The settings as the API shows them (camelCase, as the SDK reads them).
fn settings_json(settings: &Json) -> Json {
    json!({
        "enabled": settings["enabled"].as_bool().unwrap_or(false),
        "deliveryConnectionId": null,
        "deliveryConnectionName": null,
        "deliveryPrefix": settings["deliveryPrefix"],
    })
}

#[get("/organization/record-logging")]
async fn get_settings(state: web::Data<AppState>, tenant: Tenant) -> Result<HttpResponse, ApiError> {
    let settings = store::organizations::record_logging(&state.pool.get().await?, tenant.organization_id).await?;
    Ok(envelope(settings_json(&settings)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettingsBody {
    enabled: Option<bool>,
    delivery_connection_id: Option<String>,
    delivery_prefix: Option<String>,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::unprocessable(message).with_metadata(json!({ "field": field }))
}

/// Replaces the organization's record logging settings (Admins only).
#[put("/organization/record-logging")]
async fn put_settings(state: web::Data<AppState>, tenant: Tenant, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let org = tenant.caller.admin()?;
    let input: SettingsBody = parse_body(&body)?;
    let enabled = input.enabled.ok_or_else(|| invalid("enabled", "enabled is required"))?;
    if input.delivery_connection_id.is_some_and(|id| !id.is_empty()) {
        return Err(invalid(
            "deliveryConnectionId",
            "record logs go to the deployment's log store (EXECUTION_LOG_BUCKET); delivering them to a connection is not supported",
        ));
    }
    let prefix = input.delivery_prefix.filter(|p| !p.is_empty());
    if let Some(prefix) = &prefix {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
        if !prefix.chars().all(allowed) || prefix.split('/').any(|part| part == "..") || prefix.len() > 200 {
            return Err(invalid(
                "deliveryPrefix",
                "deliveryPrefix may hold letters, digits, '-', '_', '.' and '/' (no '..'), at most 200 of them",
            ));
        }
    }
    let settings = json!({ "enabled": enabled, "deliveryPrefix": prefix });
    store::organizations::set_record_logging(&state.pool.get().await?, org, &settings).await?;
    Ok(envelope(settings_json(&settings)))
}

/// The record log index an execution of `sync` kept: 404 when it kept none.
async fn kept(state: &AppState, sync: &ModelSync, execution: &str) -> Result<(Uuid, Json), ApiError> {
    let id = parse_id(execution, "execution")?;
    let client = state.pool.get().await?;
    let execution = store::executions::get_of(&client, (MODEL_SYNC, sync.id), id)
        .await?
        .ok_or_else(|| ApiError::not_found("execution"))?;
    match execution.record_logs {
        Some(index) => Ok((id, index)),
        None => Err(ApiError::not_found("record logs (record logging was off when this execution ran)")),
    }
}

/// The files of record log type `kind` in `index`.
fn files<'a>(index: &'a Json, kind: &'a str) -> Vec<(&'a str, &'a str)> {
    let types: Vec<&'a str> = match kind {
        "records" => vec!["inserts", "updates", "deletes", "errors"],
        "warnings" => vec![],
        other => vec![other],
    };
    types
        .into_iter()
        .flat_map(|t| {
            let names = index["types"][t]["files"].as_array().into_iter().flatten().filter_map(Json::as_str);
            names.map(move |name| (t, name))
        })
        .collect()
}

fn count(index: &Json, kind: &str) -> u64 {
    match kind {
        "records" => ["inserts", "updates", "deletes", "errors"].iter().map(|t| count(index, t)).sum(),
        other => index["types"][other]["count"].as_u64().unwrap_or(0),
    }
}

fn known(kind: &str) -> Result<(), ApiError> {
    match TYPES.contains(&kind) {
        true => Ok(()),
        false => Err(ApiError::not_found("record log type")),
    }
}

fn base(state: &AppState, (sync_id, execution_id): (Uuid, Uuid)) -> String {
    let root = state.settings.public_url.as_str().trim_end_matches('/');
    format!("{root}/api/syncs/{sync_id}/executions/{execution_id}")
}

#[get("/syncs/{sync_id}/executions/{id}/logs")]
async fn logs_index(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Read>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, index) = kept(&state, &sync, &path.1).await?;
    let base = base(&state, (sync.id, id));
    let entries: serde_json::Map<String, Json> = TYPES
        .iter()
        .map(|t| (t.to_string(), json!({"count": count(&index, t), "url": format!("{base}/{t}")})))
        .collect();
    Ok(envelope(Json::Object(entries)))
}

#[get("/syncs/{sync_id}/executions/{id}/{type}")]
async fn log_urls(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Read>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    known(&path.2)?;
    let (id, index) = kept(&state, &sync, &path.1).await?;
    let expires = Utc::now() + LINK_VALIDITY;
    let base = base(&state, (sync.id, id));
    let urls: Vec<String> = files(&index, &path.2)
        .into_iter()
        .map(|(kind, name)| format!("{base}/{kind}/{name}/content?expires={}", expires.timestamp()))
        .collect();
    Ok(envelope(json!({ "urls": urls, "expires": expires })))
}

/// `get_logs`: a 302 to an expiring link to the file.
#[get("/syncs/{sync_id}/executions/{id}/{type}/{filename}")]
async fn log_file(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Read>,
    path: web::Path<(String, String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, _) = listed(&state, &sync, &path).await?;
    let expires = (Utc::now() + LINK_VALIDITY).timestamp();
    let location = format!("{}/{}/{}/content?expires={expires}", base(&state, (sync.id, id)), path.2, path.3);
    Ok(HttpResponse::Found().insert_header((header::LOCATION, location)).finish())
}

#[derive(Deserialize)]
struct ContentQuery {
    expires: Option<i64>,
}

/// One record log file (gzip-compressed JSON lines); 410 once its link expired.
#[get("/syncs/{sync_id}/executions/{id}/{type}/{filename}/content")]
async fn log_content(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Read>,
    path: web::Path<(String, String, String, String)>,
    query: web::Query<ContentQuery>,
) -> Result<HttpResponse, ApiError> {
    let expired = query.expires.and_then(|at| DateTime::from_timestamp(at, 0)).is_none_or(|at| at < Utc::now());
    if expired {
        return Err(ApiError::new(actix_web::http::StatusCode::GONE, "this record log link expired: ask for it again"));
    }
    let (_, dir) = listed(&state, &sync, &path).await?;
    let bytes = state.record_logs.get(&format!("{dir}/{}", path.3)).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read a record log");
        ApiError::new(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR, "the record log store could not be read")
    })?;
    Ok(HttpResponse::Ok()
        .content_type("application/gzip")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}\"", path.3)))
        .body(bytes))
}

/// The execution and the directory of a file its index lists under the type (else 404).
async fn listed(
    state: &AppState,
    sync: &ModelSync,
    path: &(String, String, String, String),
) -> Result<(Uuid, String), ApiError> {
    known(&path.2)?;
    let (id, index) = kept(state, sync, &path.1).await?;
    if !files(&index, &path.2).iter().any(|(_, name)| *name == path.3) {
        return Err(ApiError::not_found("record log file"));
    }
    Ok((id, index["dir"].as_str().unwrap_or_default().to_owned()))
}
