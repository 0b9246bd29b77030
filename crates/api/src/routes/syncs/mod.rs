//! Model syncs: configuration, starting executions, status, and error handling
//! (`error_handling`).

mod error_handling;
mod new_target;
pub(crate) mod run_after;
mod schedule_options;
mod validate;

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use syncline_core::{
    executions::{self, MODEL_SYNC},
    sync::{StartOptions, SyncSpec, filter::Invalid},
};
use uuid::Uuid;

use self::validate::validate;
use super::{Page, envelope, executions as execution_routes};
use crate::{
    AppState,
    access::{Action, Kind},
    error::{ApiError, parse_body},
    extract::{Authorized, Tenant, can},
    idempotency, launch,
    store::{self, syncs::ModelSync},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(schedule_options::schedules)
        .service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(start)
        .service(status)
        .service(activate)
        .service(cancel)
        .configure(error_handling::configure);
}

fn to_json(sync: &ModelSync) -> Json {
    let mut shown = match &sync.spec {
        Json::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, value) in [
        ("id", json!(sync.id)),
        ("organization_id", json!(sync.organization_id)),
        ("name", json!(sync.name)),
        ("active", json!(sync.active)),
        ("mode", json!(sync.mode)),
        ("model_ids", json!([sync.model_id])),
        ("problems", json!([])),
        ("created_at", json!(sync.created_at)),
        ("updated_at", json!(sync.updated_at)),
    ] {
        shown.insert(key.into(), value);
    }
    Json::Object(shown)
}

fn list_item(sync: &ModelSync) -> Json {
    json!({
        "id": sync.id,
        "organization_id": sync.organization_id,
        "name": sync.name,
        "active": sync.active,
        "mode": sync.mode,
        "model_ids": [sync.model_id],
        "target_connection_id": sync.target_connection_id,
        "target_object": sync.spec["target"]["object"],
        "schedule": sync.spec["schedule"],
        "created_at": sync.created_at,
        "updated_at": sync.updated_at,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    active: Option<bool>,
    mode: Option<String>,
    target_connection_id: Option<Uuid>,
    page_token: Option<String>,
    limit: Option<i64>,
}

#[get("/syncs")]
async fn list(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let readable = tenant.caller.readable(Kind::Sync);
    let page = Page::parse(query.page_token.as_deref(), query.limit, 50)?;
    let filter = store::syncs::Filter {
        active: query.active,
        mode: query.mode.as_deref(),
        target_connection_id: query.target_connection_id,
    };
    let client = state.pool.get().await?;
    let syncs = store::syncs::list(&client, tenant.organization_id, &filter, &readable, page.window()).await?;
    Ok(page.respond(&syncs, list_item))
}

#[post("/syncs")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    tenant: Tenant,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (org, caller) = (tenant.organization_id, &tenant.caller);
    caller.check(Action::Create, Kind::Sync, &[])?;
    idempotency::once(&state, &req, caller, &body, async {
        let valid = validate(&state, caller, &body, None).await?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        run_after::acyclic(&tx, (org, None), &valid.upstreams).await?;
        let sync = store::syncs::insert(&tx, org, &valid.values()).await?;
        valid.create_target(&tx).await?;
        tx.commit().await?;
        Ok(envelope(to_json(&sync)))
    })
    .await
}

#[get("/syncs/{id}")]
async fn get_one(sync: Authorized<ModelSync, can::Read>) -> HttpResponse {
    envelope(to_json(&sync))
}

#[put("/syncs/{id}")]
async fn update(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // No state-database connection is held while the destination is asked about the target
    // (one the sync creates is created inside the transaction: `Valid::create_target`).
    let valid = validate(&state, &sync.caller, &body, Some(&sync)).await?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    run_after::acyclic(&tx, (sync.organization_id, Some(sync.id)), &valid.upstreams).await?;
    let updated = store::syncs::update(&tx, sync.organization_id, sync.id, &valid.values()).await?;
    let updated = updated.ok_or_else(|| ApiError::not_found("sync"))?;
    valid.create_target(&tx).await?;
    tx.commit().await?;
    Ok(envelope(to_json(&updated)))
}

#[delete("/syncs/{id}")]
async fn remove(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Delete>,
) -> Result<HttpResponse, ApiError> {
    let id = sync.id;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    run_after::refuse_deleting_upstream(&tx, sync.organization_id, (MODEL_SYNC, id)).await?;
    if !store::syncs::delete(&tx, sync.organization_id, id).await? {
        return Err(ApiError::not_found("sync"));
    }
    tx.commit().await?;
    if let Err(e) = state.store.delete_prefix(&format!("syncs/{id}")).await {
        tracing::warn!(sync_id = %id, error = %e, "could not remove the sync's diff state");
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct StartBody {
    resync: Option<bool>,
    #[serde(flatten)]
    options: StartOptions,
}

#[post("/syncs/{id}/executions")]
async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    sync: Authorized<ModelSync, can::Run>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    idempotency::once(&state, &req, &sync.caller, &body, async {
        let input: StartBody = parse_body(&body)?;
        let resync = input.resync.unwrap_or(false);
        let spec: SyncSpec = serde_json::from_value(sync.spec.clone())
            .map_err(|e| ApiError::unprocessable(format!("stored sync is invalid: {e}")))?;
        let refused = |e: Invalid| ApiError::unprocessable(e.message).with_metadata(json!({ "field": e.field }));
        input.options.restriction(&spec).map_err(refused)?;
        for (n, record) in input.options.source_identities.iter().enumerate() {
            if let Some((m, other)) = record.iter().enumerate().find(|(_, v)| v.source.model_id != sync.model_id) {
                let field = format!("source_identities[{n}][{m}].source.model_id");
                let message = format!("model {} is not the sync's model", other.source.model_id);
                return Err(refused(Invalid::new(field, message)));
            }
        }
        let subject = (MODEL_SYNC, sync.id, sync.organization_id);
        let options = json!(input.options);
        let execution = launch::start(&state, subject, "manual", resync, &options).await?;
        Ok(envelope(execution_routes::to_json(&execution)))
    })
    .await
}

#[get("/syncs/{id}/status")]
async fn status(state: web::Data<AppState>, sync: Authorized<ModelSync, can::Read>) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let current = store::executions::latest(&client, (MODEL_SYNC, sync.id), executions::ACTIVE, true).await?;
    let last = store::executions::latest(&client, (MODEL_SYNC, sync.id), executions::ACTIVE, false).await?;
    Ok(envelope(json!({
        "current_execution": current.as_ref().map(execution_routes::to_json),
        "last_execution": last.as_ref().map(execution_routes::to_json),
        "next_execution_time": sync.next_run_at,
    })))
}

#[derive(Deserialize)]
struct ActivateBody {
    active: Option<bool>,
}

#[post("/syncs/{id}/activate")]
async fn activate(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = (sync.organization_id, sync.id);
    let input: ActivateBody = parse_body(&body)?;
    let active = input.active.ok_or_else(|| ApiError::unprocessable("active is required"))?;
    let spec: SyncSpec = serde_json::from_value(sync.spec.clone())
        .map_err(|e| ApiError::unprocessable(format!("stored sync is invalid: {e}")))?;
    let next_run_at = match active {
        true => spec.schedule.next_after(chrono::Utc::now()),
        false => None,
    };
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    store::syncs::set_active(&tx, (org, id), active, (&spec.schedule, next_run_at)).await?;
    tx.commit().await?;
    Ok(envelope(json!({ "id": id, "active": active })))
}

#[post("/syncs/{id}/cancel")]
async fn cancel(state: web::Data<AppState>, sync: Authorized<ModelSync, can::Run>) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let current = store::executions::latest(&client, (MODEL_SYNC, sync.id), executions::ACTIVE, true).await?;
    let message = match store::executions::request_cancel(&client, (MODEL_SYNC, sync.id), None).await? {
        0 => "no execution is running",
        _ => "cancel requested",
    };
    if let Some(waiting) = current.filter(|e| e.status == "waiting") {
        execution_routes::discard_kept(&state, sync.id, waiting.id).await;
    }
    Ok(envelope(json!({ "message": message })))
}
