//! Model sync executions: list, get and cancel.

use actix_web::{HttpResponse, get, post, web};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Page, authorize, envelope, parse_id};
use crate::{
    AppState,
    access::{Action, Kind},
    auth::Caller,
    error::ApiError,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(get_one).service(cancel);
}

/// Columns [`to_json`] reads, for `select … from executions e`.
pub const COLUMNS: &str =
    "e.id, e.status, e.created_at, e.started_at, e.completed_at, e.errors, e.insert_count, e.update_count,
    e.delete_count, e.error_count, e.records_read, e.records_changed, e.records_written, e.trigger, e.attempt,
    e.records_estimate, e.error_class, e.retries";

/// An execution as the API shows it (`GetExecutionResponseSchema`, plus live progress).
pub fn to_json(row: &Row) -> Json {
    let (inserted, updated, deleted, errors): (i64, i64, i64, i64) = (row.get(6), row.get(7), row.get(8), row.get(9));
    json!({
        "id": row.get::<_, Uuid>(0),
        "type": "sync",
        "status": row.get::<_, String>(1),
        "created_at": row.get::<_, chrono::DateTime<chrono::Utc>>(2),
        "started_at": row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(3),
        "completed_at": row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(4),
        "errors": row.get::<_, Json>(5),
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
        "progress": progress(row),
        "trigger": row.get::<_, String>(13),
        "attempt": row.get::<_, i32>(14),
        "error_class": row.try_get::<_, Option<String>>("error_class").ok().flatten(),
        "retries": row.try_get::<_, i32>("retries").unwrap_or_default(),
    })
}

/// Live progress: records read, changed and written, and while running an ETA from the read
/// rate and the source's estimate of the total.
fn progress(row: &Row) -> Json {
    let (read, estimate): (i64, Option<i64>) = (row.get(10), row.get(15));
    let started: Option<chrono::DateTime<chrono::Utc>> = row.get(3);
    let running = row.get::<_, String>(1) == "running";
    let eta = match (started, estimate) {
        (Some(started), Some(total)) if running && read > 0 && total > read => {
            let elapsed = (chrono::Utc::now() - started).num_milliseconds() as f64 / 1000.0;
            Some((elapsed * (total - read) as f64 / read as f64).round() as i64)
        }
        _ => None,
    };
    json!({
        "records_read": read,
        "records_changed": row.get::<_, i64>(11),
        "records_written": row.get::<_, i64>(12),
        "records_estimated": estimate,
        "eta_seconds": eta,
    })
}

/// Checks that sync `raw` belongs to the caller's organization and allows them `action`.
async fn owned_sync(state: &AppState, caller: &Caller, raw: &str, action: Action) -> Result<Uuid, ApiError> {
    let id = parse_id(raw, "sync")?;
    authorize(&state.pool.get().await?, caller, Kind::Sync, id, action).await?;
    Ok(id)
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
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let sync_id = owned_sync(&state, &caller, &path, Action::Read).await?;
    let page = Page::parse(query.page_token.as_deref(), query.limit, 100)?;
    let (limit, offset) = page.bounds();
    let order = if query.ascending.unwrap_or(false) { "asc" } else { "desc" };
    let completed = if query.only_completed.unwrap_or(false) {
        "and e.status in ('completed', 'completed_with_errors')"
    } else {
        ""
    };
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "select {COLUMNS} from executions e where e.kind = 'model_sync' and e.subject_id = $1 {completed}
                      order by e.created_at {order}, e.id limit $2 offset $3"
            ),
            &[&sync_id, &limit, &offset],
        )
        .await?;
    Ok(page.respond(&rows, to_json))
}

#[get("/syncs/{sync_id}/executions/{id}")]
async fn get_one(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let sync_id = owned_sync(&state, &caller, &path.0, Action::Read).await?;
    let id = parse_id(&path.1, "execution")?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "select {COLUMNS} from executions e where e.id = $1 and e.kind = 'model_sync' and e.subject_id = $2"
            ),
            &[&id, &sync_id],
        )
        .await?;
    Ok(envelope(to_json(&row.ok_or_else(|| ApiError::not_found("execution"))?)))
}

/// Cancels the unfinished executions of `sync_id` matching `execution`: waiting ones end at
/// once, running ones are asked to stop. Returns how many were affected.
pub async fn request_cancel(
    client: &impl GenericClient,
    sync_id: Uuid,
    execution: Option<Uuid>,
) -> Result<u64, ApiError> {
    let count = client
        .execute(
            "update executions set
                status = case when status in ('created', 'queued') then 'canceled' else 'canceling' end,
                completed_at = case when status in ('created', 'queued') then now() else completed_at end,
                cancel_requested = true, updated_at = now()
             where kind = 'model_sync' and subject_id = $1 and ($2::uuid is null or id = $2)
               and status in ('created', 'queued', 'running')",
            &[&sync_id, &execution],
        )
        .await?;
    Ok(count)
}

#[post("/syncs/{sync_id}/executions/{id}/cancel")]
async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let sync_id = owned_sync(&state, &caller, &path.0, Action::Run).await?;
    let id = parse_id(&path.1, "execution")?;
    let client = state.pool.get().await?;
    client
        .query_opt(
            "select 1 from executions where id = $1 and kind = 'model_sync' and subject_id = $2",
            &[&id, &sync_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("execution"))?;
    let message = match request_cancel(&client, sync_id, Some(id)).await? {
        0 => "the execution is not running",
        _ => "cancel requested",
    };
    Ok(envelope(json!({ "message": message })))
}
