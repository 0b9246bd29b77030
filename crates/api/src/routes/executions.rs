//! Model sync executions: list, get, cancel, and the console log of one.

use actix_web::{HttpResponse, get, post, web};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::{
    executions::MODEL_SYNC,
    sync::{changes_dir, snapshot_dir},
};
use uuid::Uuid;

use super::{
    Page,
    console_log::{LogQuery, page as log_page},
    envelope, parse_id,
};
use crate::{
    AppState,
    error::ApiError,
    extract::{Authorized, can},
    store::{self, executions::Execution, syncs::ModelSync},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(get_one).service(cancel).service(approve).service(reject).service(console_log);
}

/// A run's plan as shown: what it would write, with samples, without what a waiting run kept
/// for the run that carries it out.
fn shown_plan(plan: &Option<Json>) -> Json {
    match plan {
        Some(Json::Object(plan)) => {
            Json::Object(plan.iter().filter(|(k, _)| *k != "kept").map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        _ => Json::Null,
    }
}

/// An execution as the API shows it (`GetExecutionResponseSchema`, plus live progress).
pub fn to_json(execution: &Execution) -> Json {
    let (inserted, updated, deleted, errors) =
        (execution.insert_count, execution.update_count, execution.delete_count, execution.error_count);
    json!({
        "id": execution.id,
        "type": "sync",
        "status": execution.status,
        "created_at": execution.created_at,
        "started_at": execution.started_at,
        "completed_at": execution.completed_at,
        "errors": execution.errors,
        "version": "1",
        "counts": {
            "insert": inserted,
            "update": updated,
            "delete": deleted,
            "upserts": inserted + updated,
            "total": inserted + updated + deleted + errors,
            "error": errors,
            "warnings": 0,
        },
        "progress": progress(execution),
        "trigger": execution.trigger,
        "attempt": execution.attempt,
        "error_class": execution.error_class,
        "retries": execution.retries,
        "plan": shown_plan(&execution.plan),
        "verification": execution.verification,
    })
}

/// Live progress: records read, changed and written, and while running an ETA from the read
/// rate and the source's estimate of the total.
fn progress(execution: &Execution) -> Json {
    let (read, estimate) = (execution.records_read, execution.records_estimate);
    let running = execution.status == "running";
    let eta = match (execution.started_at, estimate) {
        (Some(started), Some(total)) if running && read > 0 && total > read => {
            let elapsed = (chrono::Utc::now() - started).num_milliseconds() as f64 / 1000.0;
            Some((elapsed * (total - read) as f64 / read as f64).round() as i64)
        }
        _ => None,
    };
    json!({
        "records_read": read,
        "records_changed": execution.records_changed,
        "records_written": execution.records_written,
        "records_estimated": estimate,
        "eta_seconds": eta,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    page_token: Option<String>,
    limit: Option<i64>,
    only_completed: Option<bool>,
    ascending: Option<bool>,
}

#[get("/syncs/{sync_id}/executions")]
async fn list(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Read>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::parse(query.page_token.as_deref(), query.limit, 100)?;
    let filter = store::executions::Filter {
        statuses: query.only_completed.unwrap_or(false).then_some(store::executions::COMPLETED),
        ascending: query.ascending.unwrap_or(false),
    };
    let subject = (MODEL_SYNC, sync.id);
    let executions = store::executions::list(&state.pool.get().await?, subject, &filter, page.window()).await?;
    Ok(page.respond(&executions, to_json))
}

/// Execution `id` (a path segment) of `sync`; 404 when it has none.
async fn execution_of(client: &impl GenericClient, sync: &ModelSync, id: &str) -> Result<Execution, ApiError> {
    let execution = store::executions::get_of(client, (MODEL_SYNC, sync.id), parse_id(id, "execution")?).await?;
    execution.ok_or_else(|| ApiError::not_found("execution"))
}

#[get("/syncs/{sync_id}/executions/{id}")]
async fn get_one(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Read>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    Ok(envelope(to_json(&execution_of(&state.pool.get().await?, &sync, &path.1).await?)))
}

#[post("/syncs/{sync_id}/executions/{id}/cancel")]
async fn cancel(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Run>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let execution = execution_of(&client, &sync, &path.1).await?;
    let message = match store::executions::request_cancel(&client, (MODEL_SYNC, sync.id), Some(execution.id)).await? {
        0 => "the execution is not running",
        _ => "cancel requested",
    };
    if execution.status == "waiting" {
        discard_kept(&state, sync.id, execution.id).await;
    }
    Ok(envelope(json!({ "message": message })))
}

/// Removes what a run that waited for approval kept, once it will not be carried out.
pub async fn discard_kept(state: &AppState, sync_id: Uuid, execution_id: Uuid) {
    for prefix in [changes_dir(execution_id), snapshot_dir(sync_id, execution_id)] {
        if let Err(e) = state.store.delete_prefix(&prefix).await {
            tracing::warn!(%execution_id, %prefix, error = %e, "could not remove what a rejected run kept");
        }
    }
}

/// Approves or rejects the plan execution `id` of `sync` waits with; answers the execution.
async fn decide(
    state: &AppState,
    sync: &Authorized<ModelSync, can::Run>,
    id: &str,
    approved: bool,
) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let id = execution_of(&client, sync, id).await?.id;
    let subject = (MODEL_SYNC, sync.id);
    let by = sync.caller.describe();
    let reason = json!([format!("the plan was rejected by {by}")]);
    if !store::executions::decide(&client, subject, id, approved, &reason).await? {
        return Err(ApiError::conflict("the execution is not waiting for approval"));
    }
    match approved {
        true => {
            // Should the queue be down, the execution is pushed again once it is found waiting.
            if let Err(e) = state.queues.enqueue(MODEL_SYNC, id).await {
                tracing::warn!(execution_id = %id, error = %e, "cannot enqueue the approved execution yet");
            }
        }
        false => discard_kept(state, sync.id, id).await,
    }
    tracing::info!(execution_id = %id, approved, by = %by, "plan decided");
    let execution =
        store::executions::get_of(&client, subject, id).await?.ok_or_else(|| ApiError::not_found("execution"))?;
    Ok(envelope(to_json(&execution)))
}

/// Approves the plan of an execution waiting over its sync's blast-radius limits: it is queued
/// and carries the plan out (a Syncline extension).
#[post("/syncs/{sync_id}/executions/{id}/approve")]
async fn approve(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Run>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    decide(&state, &sync, &path.1, true).await
}

/// Rejects the plan of an execution waiting over its sync's blast-radius limits: it ends
/// canceled, having written nothing (a Syncline extension).
#[post("/syncs/{sync_id}/executions/{id}/reject")]
async fn reject(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Run>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    decide(&state, &sync, &path.1, false).await
}

/// The console log the engine wrote while running the execution.
#[get("/syncs/{sync_id}/executions/{id}/consolelog")]
async fn console_log(
    state: web::Data<AppState>,
    sync: Authorized<ModelSync, can::Read>,
    path: web::Path<(String, String)>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    let execution = execution_of(&state.pool.get().await?, &sync, &path.1).await?;
    log_page(&state, &[execution.id], None, &query).await
}
