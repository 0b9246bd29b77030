//! Bulk syncs (`client.bulk_sync`): configuration and activation here; discovery, schemas,
//! schedules, executions and error handling in their own modules. The engine that runs them
//! is the worker's.

mod discovery;
mod error_handling;
mod executions;
mod ingestion;
mod schedules;
mod schemas;
mod selection;
mod validate;

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value as Json, json};
use syncline_core::executions::BULK_SYNC;
use uuid::Uuid;

use self::{selection::Writing, validate::validate};
use super::{Page, envelope, schemas::catalog, syncs::run_after::refuse_deleting_upstream};
use crate::{
    AppState,
    access::{Action, Kind},
    error::{ApiError, parse_body},
    extract::{Authorized, Tenant, can},
    idempotency,
    store::{self, StoreError, bulk_syncs::BulkSync},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Before `/bulk/syncs/{id}`, which would take `status` for an id.
    cfg.service(executions::list_status)
        .service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(activate)
        .configure(discovery::configure)
        .configure(schemas::configure)
        .configure(schedules::configure)
        .configure(executions::configure)
        .configure(ingestion::configure)
        .configure(error_handling::configure);
}

/// 422 naming `field`.
fn invalid(field: &str, message: String) -> ApiError {
    ApiError::unprocessable(message).with_metadata(json!({ "field": field }))
}

/// The body's value of `key`, `null` counting as absent.
fn value<'a>(body: &'a Map<String, Json>, key: &str) -> Option<&'a Json> {
    body.get(key).filter(|v| !v.is_null())
}

/// The body's `key` as a `T` (`None` when absent); otherwise `refuse` names `key` and says it
/// must be `expected`.
fn read<T: DeserializeOwned>(
    body: &Map<String, Json>,
    key: &str,
    expected: &str,
    refuse: fn(&str, String) -> ApiError,
) -> Result<Option<T>, ApiError> {
    value(body, key)
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|_| refuse(key, format!("{key} must be {expected}")))
}

/// How `sync` writes its schemas.
fn writing(sync: &BulkSync) -> Result<Writing, ApiError> {
    let mode = serde_json::from_value(json!(sync.mode))
        .map_err(|e| StoreError::Malformed { what: "bulk sync mode", message: e.to_string() })?;
    let new_fields = serde_json::from_value(sync.spec["automatically_add_new_fields"].clone()).unwrap_or_default();
    Ok(Writing { mode, normalize: sync.spec["normalize_names"] != "disabled", new_fields })
}

/// The ids of the schemas of bulk sync `sync_id` (only the enabled or disabled ones when
/// `enabled` says).
async fn stored_schemas(state: &AppState, sync_id: Uuid, enabled: Option<bool>) -> Result<Vec<String>, ApiError> {
    let schemas = store::bulk_schemas::list(&state.pool.get().await?, sync_id, enabled).await?;
    Ok(schemas.into_iter().map(|s| s.schema_id).collect())
}

/// `BulkSyncResponse`: the spec as given, with what the server keeps.
fn to_json(sync: &BulkSync) -> Json {
    let mut shown = sync.spec.clone();
    if let Json::Object(map) = &mut shown {
        map.remove(error_handling::KEY);
        for (key, value) in [
            ("id", json!(sync.id)),
            ("organization_id", json!(sync.organization_id)),
            ("name", json!(sync.name)),
            ("active", json!(sync.active)),
            ("mode", json!(sync.mode)),
            ("source_connection_id", json!(sync.source_connection_id)),
            ("destination_connection_id", json!(sync.destination_connection_id)),
            ("policies", json!(sync.policies)),
            ("created_at", json!(sync.created_at)),
            ("updated_at", json!(sync.updated_at)),
        ] {
            map.insert(key.into(), value);
        }
    }
    shown
}

#[derive(Deserialize)]
struct ListQuery {
    active: Option<bool>,
    page_token: Option<String>,
    limit: Option<i64>,
}

/// The readable bulk syncs, last changed first: pages of at most 50 when `page_token` or
/// `limit` is given, else all of them (the SDK's `list` cannot page).
#[get("/bulk/syncs")]
async fn list(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let paged = query.page_token.is_some() || query.limit.is_some();
    let page = Page::parse(query.page_token.as_deref(), query.limit, if paged { 50 } else { 10_000 })?;
    let filter = store::bulk_syncs::Filter { active: query.active, ids: None };
    let readable = tenant.caller.readable(Kind::BulkSync);
    let client = state.pool.get().await?;
    let syncs = store::bulk_syncs::list(&client, tenant.organization_id, &filter, &readable, page.window()).await?;
    Ok(page.respond(&syncs, to_json))
}

#[post("/bulk/syncs")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    tenant: Tenant,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (org, caller) = (tenant.organization_id, &tenant.caller);
    caller.check(Action::Create, Kind::BulkSync, &[])?;
    idempotency::once(&state, &req, caller, &body, async {
        let valid = validate(&state, caller, &body, None).await?;
        let id = Uuid::new_v4();
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let sync = store::bulk_syncs::insert(&tx, org, id, &valid.values()).await?;
        store::bulk_schemas::replace(&tx, id, valid.schemas.as_deref().unwrap_or_default()).await?;
        tx.commit().await?;
        Ok(envelope(to_json(&sync)))
    })
    .await
}

#[derive(Deserialize)]
struct GetQuery {
    refresh_schemas: Option<bool>,
}

/// The bulk sync; `refresh_schemas` also starts a refresh of its source's schemas.
#[get("/bulk/syncs/{id}")]
async fn get_one(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.refresh_schemas == Some(true) {
        let client = state.pool.get().await?;
        let source = store::connections::get(&client, sync.organization_id, sync.source_connection_id).await?;
        drop(client);
        catalog::refresh(&state, &source.ok_or_else(|| ApiError::not_found("connection"))?).await?;
    }
    Ok(envelope(to_json(&sync)))
}

/// Replaces the bulk sync's configuration; omitted or empty `schemas` keep the selection.
#[put("/bulk/syncs/{id}")]
async fn update(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // No state-database connection is held while the source is asked for its schemas.
    let valid = validate(&state, &sync.caller, &body, Some(&sync)).await?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let updated = store::bulk_syncs::update(&tx, sync.organization_id, sync.id, &valid.values()).await?;
    let updated = updated.ok_or_else(|| ApiError::not_found("bulk_sync"))?;
    if let Some(schemas) = &valid.schemas {
        store::bulk_schemas::replace(&tx, sync.id, schemas).await?;
    }
    tx.commit().await?;
    ingestion::resume(&state, &updated).await?;
    Ok(envelope(to_json(&updated)))
}

/// Deletes the bulk sync with its schemas, schedules and executions.
#[delete("/bulk/syncs/{id}")]
async fn remove(state: web::Data<AppState>, sync: Authorized<BulkSync, can::Delete>) -> Result<HttpResponse, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    refuse_deleting_upstream(&tx, sync.organization_id, (BULK_SYNC, sync.id)).await?;
    match store::bulk_syncs::delete(&tx, sync.organization_id, sync.id).await? {
        true => {
            tx.commit().await?;
            Ok(HttpResponse::NoContent().finish())
        }
        false => Err(ApiError::not_found("bulk_sync")),
    }
}

#[derive(Deserialize)]
struct ActivateBody {
    active: Option<bool>,
}

/// Turns the bulk sync on (it runs on its schedules, its capture resumes) or off (its capture
/// pauses, keeping its position).
#[post("/bulk/syncs/{id}/activate")]
async fn activate(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: ActivateBody = parse_body(&body)?;
    let active = input.active.ok_or_else(|| invalid("active", "active is required".into()))?;
    let mut spec = sync.spec.clone();
    spec["active"] = json!(active);
    let saved = schedules::save(&state, &sync, spec, &schedules::of_spec(&sync.spec)?).await?;
    ingestion::resume(&state, &saved).await?;
    Ok(envelope(json!({ "id": sync.id, "active": active })))
}
