//! Bulk sync executions: start (with `fetch_mode`, `resync_mode`, a subset of `schemas`, or as a
//! test), cancel (the sync's execution in progress, or one execution), status, history, the
//! per-schema status of many syncs, and console logs (as entries, and as a text download whose
//! URL `get_logs` and `export_logs` answer).
//!
//! An execution shows Polytomic's statuses (`queued` is `scheduled`, `completed_with_errors` is
//! `errors`) and, per schema, its accounting and progress: rows read, written, rejected,
//! skipped and deleted, the total when known, partitions, rows per second and an ETA.

use actix_web::{HttpRequest, HttpResponse, get, http::header, post, web};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use syncline_core::{
    bulk::{FetchMode, ResyncMode, StartOptions},
    executions::{ACTIVE, BULK_SYNC},
    schedule,
};
use uuid::Uuid;

use super::{ingestion, read, stored_schemas, value};
use crate::{
    AppState,
    access::Kind,
    error::{ApiError, parse_body},
    extract::{Authorized, Tenant, can},
    idempotency, launch,
    routes::{
        Page,
        console_log::{LogQuery, page as log_page},
        envelope, parse_id,
    },
    store::{
        self, Window,
        bulk_schema_executions::SchemaExecution,
        bulk_syncs::BulkSync,
        execution_logs::{self, LogLine},
        executions::Execution,
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(start)
        .service(cancel_sync)
        .service(get_status)
        .service(list)
        .service(get_one)
        .service(cancel)
        .service(console_log)
        .service(schema_console_log)
        .service(logs)
        .service(export_logs)
        .service(download);
}

/// How long the URL of a log download is valid.
const LOG_URL_VALIDITY: Duration = Duration::hours(1);

/// A status as Polytomic names it.
fn status_name(status: &str) -> &str {
    match status {
        "queued" => "scheduled",
        "completed_with_errors" => "errors",
        other => other,
    }
}

/// How many rows of a schema's load are done: read, or handled (written, rejected, skipped)
/// when the engine counted those further.
fn rows_done(schema: &SchemaExecution) -> i64 {
    schema.rows_read.max(schema.rows_written + schema.rows_rejected + schema.rows_skipped)
}

/// Rows done per second of a schema's load so far, and while it runs the seconds left when its
/// total is known.
fn speed(schema: &SchemaExecution) -> (Option<f64>, Option<i64>) {
    let Some(started) = schema.started_at else { return (None, None) };
    let seconds = (schema.completed_at.unwrap_or(schema.updated_at) - started).num_milliseconds() as f64 / 1000.0;
    if seconds <= 0.0 {
        return (None, None);
    }
    let done = rows_done(schema);
    let rate = done as f64 / seconds;
    let eta = match (schema.status.as_str(), schema.rows_total) {
        ("running", Some(total)) if rate > 0.0 && total > done => Some(((total - done) as f64 / rate).round() as i64),
        _ => None,
    };
    (Some((rate * 10.0).round() / 10.0), eta)
}

/// `BulkSyncSchemaExecution`, with the schema's accounting and progress.
fn schema_json(schema: &SchemaExecution) -> Json {
    let (rows_per_second, eta_seconds) = speed(schema);
    json!({
        "schema": schema.schema_id,
        "output_name": schema.output_name,
        "status": status_name(&schema.status),
        "status_message": schema.status_message,
        "record_count": schema.rows_written,
        "error_count": schema.rows_rejected,
        "warning_count": 0,
        "created_at": schema.created_at,
        "started_at": schema.started_at,
        "completed_at": schema.completed_at,
        "updated_at": schema.updated_at,
        "rows_read": schema.rows_read,
        "rows_written": schema.rows_written,
        "rows_rejected": schema.rows_rejected,
        "rows_skipped": schema.rows_skipped,
        "rows_deleted": schema.rows_deleted,
        "rows_total": schema.rows_total,
        "partitions": schema.partitions,
        "partitions_committed": schema.partitions_committed,
        "rows_per_second": rows_per_second,
        "eta_seconds": eta_seconds,
        "cancel_requested": schema.cancel_requested,
    })
}

/// `BulkSyncExecution`: the execution, its start options and its schemas.
fn to_json(execution: &Execution, schemas: &[SchemaExecution]) -> Json {
    let options: StartOptions = serde_json::from_value(execution.options.clone()).unwrap_or_default();
    let disposition = match options.resync_mode {
        None | Some(ResyncMode::Refetch) => "retain",
        Some(ResyncMode::Resync) => "truncate",
        Some(ResyncMode::Rebuild) => "rebuild",
    };
    let mine: Vec<&SchemaExecution> = schemas.iter().filter(|s| s.execution_id == execution.id).collect();
    json!({
        "id": execution.id,
        "type": "bulk_sync",
        "trigger": execution.trigger,
        "status": status_name(&execution.status),
        "status_message": execution.errors.get(0),
        "created_at": execution.created_at,
        "started_at": execution.started_at,
        "completed_at": execution.completed_at,
        "updated_at": execution.updated_at,
        "record_count": mine.iter().map(|s| s.rows_written).sum::<i64>(),
        "error_count": mine.iter().map(|s| s.rows_rejected).sum::<i64>(),
        "warning_count": 0,
        "fetch_mode": options.fetch_mode,
        "output_disposition": disposition,
        "is_resync": execution.resync || options.resync_mode.is_some(),
        "is_partial": !options.schemas.is_empty(),
        "is_test": options.test,
        "version": "1",
        "schemas": mine.into_iter().map(schema_json).collect::<Vec<_>>(),
    })
}

/// The executions as `BulkSyncExecution`s, each with its schemas.
async fn with_schemas(state: &AppState, executions: &[Execution]) -> Result<Vec<Json>, ApiError> {
    let ids: Vec<Uuid> = executions.iter().map(|e| e.id).collect();
    let schemas = store::bulk_schema_executions::of_executions(&state.pool.get().await?, &ids).await?;
    Ok(executions.iter().map(|e| to_json(e, &schemas)).collect())
}

/// Execution `id` (a path segment) of `sync`; 404 when it has none.
async fn execution_of(state: &AppState, sync: &BulkSync, id: &str) -> Result<Execution, ApiError> {
    let id = parse_id(id, "execution")?;
    let execution = store::executions::get_of(&state.pool.get().await?, (BULK_SYNC, sync.id), id).await?;
    execution.ok_or_else(|| ApiError::not_found("execution"))
}

/// 400 naming `field`.
fn bad(field: &str, message: String) -> ApiError {
    ApiError::bad_request(message).with_metadata(json!({ "field": field }))
}

/// What a start body asks for: a fetch mode, a resync mode, some of the enabled schemas, or a
/// test run (which cannot be a resync). The legacy `resync` flag is refused.
fn start_options(body: &Map<String, Json>, enabled: &[String]) -> Result<StartOptions, ApiError> {
    if value(body, "resync").is_some() {
        return Err(bad(
            "resync",
            "resync is not supported in this API version: use resync_mode (refetch, resync or rebuild)".into(),
        ));
    }
    let fetch_mode: Option<FetchMode> = read(body, "fetch_mode", "one of none, incremental, full", bad)?;
    let resync_mode: Option<ResyncMode> = read(body, "resync_mode", "one of refetch, resync, rebuild", bad)?;
    let test = read(body, "test", "true or false", bad)?.unwrap_or(false);
    if test && resync_mode.is_some() {
        return Err(bad(
            "resync_mode",
            "a test run reads a few records and cannot be a resync: drop resync_mode or test".into(),
        ));
    }
    let schemas: Vec<String> = read(body, "schemas", "a list of schema ids", bad)?.unwrap_or_default();
    if let Some((j, schema)) = schemas.iter().enumerate().find(|(_, s)| !enabled.contains(s)) {
        return Err(bad(&format!("schemas[{j}]"), format!("{schema:?} is not an enabled schema of the bulk sync")));
    }
    if enabled.is_empty() {
        return Err(bad("schemas", "the bulk sync has no enabled schema to run".into()));
    }
    Ok(StartOptions { fetch_mode, resync_mode, schemas, test })
}

/// Starts an execution; 409 while one is in progress.
#[post("/bulk/syncs/{id}/executions")]
async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    sync: Authorized<BulkSync, can::Run>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    idempotency::once(&state, &req, &sync.caller, &body, async {
        let input: Map<String, Json> = parse_body(&body)?;
        let options = start_options(&input, &stored_schemas(&state, sync.id, Some(true)).await?)?;
        let resync = options.resync_mode.is_some();
        let options = serde_json::to_value(&options).expect("start options serialize");
        let subject = (BULK_SYNC, sync.id, sync.organization_id);
        let execution = launch::start(&state, subject, "manual", resync, &options).await?;
        Ok(envelope(to_json(&execution, &[])))
    })
    .await
}

/// `{message}` after asking executions of `sync` (one, or whichever is in progress) to stop.
async fn request_cancel(state: &AppState, sync: &BulkSync, execution: Option<Uuid>) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let message = match store::executions::request_cancel(&client, (BULK_SYNC, sync.id), execution).await? {
        0 => "no execution is running",
        _ => "cancel requested",
    };
    Ok(envelope(json!({ "message": message })))
}

#[post("/bulk/syncs/{id}/cancel")]
async fn cancel_sync(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Run>,
) -> Result<HttpResponse, ApiError> {
    request_cancel(&state, &sync, None).await
}

#[post("/bulk/syncs/{id}/executions/{exec_id}/cancel")]
async fn cancel(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Run>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let execution = execution_of(&state, &sync, &path.1).await?;
    request_cancel(&state, &sync, Some(execution.id)).await
}

#[get("/bulk/syncs/{id}/status")]
async fn get_status(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let subject = (BULK_SYNC, sync.id);
    let current = store::executions::latest(&client, subject, ACTIVE, true).await?;
    let last = store::executions::latest(&client, subject, ACTIVE, false).await?;
    let next = schedule::next_run_at(&client, BULK_SYNC, sync.id).await?;
    drop(client);
    let shown =
        with_schemas(&state, &[current.clone(), last.clone()].into_iter().flatten().collect::<Vec<_>>()).await?;
    let find = |e: Option<&Execution>| e.and_then(|e| shown.iter().find(|s| s["id"] == json!(e.id)).cloned());
    Ok(envelope(json!({
        "current_execution": find(current.as_ref()),
        "last_execution": find(last.as_ref()),
        "next_execution_time": next,
        "ingestion_status": ingestion::status(&state, &sync).await?,
    })))
}

#[derive(Deserialize)]
struct ListQuery {
    page_token: Option<String>,
    limit: Option<i64>,
    only_terminal: Option<bool>,
    ascending: Option<bool>,
}

#[get("/bulk/syncs/{id}/executions")]
async fn list(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::parse(query.page_token.as_deref(), query.limit, 100)?;
    let filter = store::executions::Filter {
        statuses: query.only_terminal.unwrap_or(false).then_some(store::executions::ENDED),
        ascending: query.ascending.unwrap_or(false),
    };
    let subject = (BULK_SYNC, sync.id);
    let executions = store::executions::list(&state.pool.get().await?, subject, &filter, page.window()).await?;
    let shown = with_schemas(&state, &executions).await?;
    Ok(page.respond(&shown, Json::clone))
}

#[get("/bulk/syncs/{id}/executions/{exec_id}")]
async fn get_one(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let execution = execution_of(&state, &sync, &path.1).await?;
    Ok(envelope(with_schemas(&state, &[execution]).await?.remove(0)))
}

/// The query of `list_status`: `all`, `active`, and `sync_id` repeated.
struct StatusQuery {
    all: bool,
    active: bool,
    sync_ids: Vec<String>,
}

impl StatusQuery {
    fn parse(query: &str) -> Self {
        let mut parsed = Self { all: false, active: false, sync_ids: Vec::new() };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "all" => parsed.all = value == "true",
                "active" => parsed.active = value == "true",
                "sync_id" => parsed.sync_ids.push(value.into_owned()),
                _ => {}
            }
        }
        parsed
    }
}

/// Per schema of each bulk sync, the status of its latest execution (one in progress first):
/// every readable sync of the organization (`all`, or when nothing is named), the active ones
/// (`active`), or those named by `sync_id` (404 when one names none the caller may read).
#[get("/bulk/syncs/status")]
pub(super) async fn list_status(
    state: web::Data<AppState>,
    tenant: Tenant,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = StatusQuery::parse(req.query_string());
    let named: Vec<Uuid> = query.sync_ids.iter().map(|id| parse_id(id, "bulk_sync")).collect::<Result<_, _>>()?;
    let filter = match (query.all, query.active, named.is_empty()) {
        (true, _, _) | (false, false, true) => store::bulk_syncs::Filter { active: None, ids: None },
        (false, true, _) => store::bulk_syncs::Filter { active: Some(true), ids: None },
        (false, false, false) => store::bulk_syncs::Filter { active: None, ids: Some(&named) },
    };
    let readable = tenant.caller.readable(Kind::BulkSync);
    let client = state.pool.get().await?;
    let window = Window { limit: 10_000, offset: 0 };
    let syncs = store::bulk_syncs::list(&client, tenant.organization_id, &filter, &readable, window).await?;
    if filter.ids.is_some() && syncs.len() < named.len() {
        return Err(ApiError::not_found("bulk_sync"));
    }
    let mut data = Vec::with_capacity(syncs.len());
    for sync in &syncs {
        let latest = store::executions::latest(&client, (BULK_SYNC, sync.id), &[], false).await?;
        let schemas = store::bulk_schema_executions::latest_of_sync(&client, sync.id).await?;
        let schemas: Vec<Json> = schemas
            .iter()
            .map(|s| {
                json!({
                    "schema": s.schema_id,
                    "execution_id": s.execution_id,
                    "status": status_name(&s.status),
                    "status_message": s.status_message,
                    "record_count": s.rows_written,
                    "error_count": s.rows_rejected,
                    "warning_count": 0,
                    "started_at": s.started_at,
                    "completed_at": s.completed_at,
                })
            })
            .collect();
        data.push(json!({
            "sync_id": sync.id,
            "status": latest.as_ref().map(|e| status_name(&e.status)),
            "nextExecutionTime": schedule::next_run_at(&client, BULK_SYNC, sync.id).await?,
            "schemas": schemas,
        }));
    }
    Ok(envelope(json!(data)))
}

/// The console log of execution `exec_id` of `sync`.
async fn console(
    state: &AppState,
    (sync, exec_id): (&BulkSync, &str),
    schema_id: Option<&str>,
    query: &LogQuery,
) -> Result<HttpResponse, ApiError> {
    let execution = execution_of(state, sync, exec_id).await?;
    log_page(state, &[execution.id], schema_id, query).await
}

#[get("/bulk/syncs/{id}/executions/{exec_id}/consolelog")]
async fn console_log(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
    path: web::Path<(String, String)>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    console(&state, (&sync, &path.1), None, &query).await
}

#[get("/bulk/syncs/{id}/executions/{exec_id}/schemas/{schema_id}/consolelog")]
async fn schema_console_log(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
    path: web::Path<(String, String, String)>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    console(&state, (&sync, &path.1), Some(&path.2), &query).await
}

/// The URL of execution `execution_id`'s log download, valid until `expires`. It needs the
/// caller's credentials like every API URL.
fn download_url(state: &AppState, (sync_id, execution_id): (Uuid, Uuid), expires: DateTime<Utc>) -> String {
    let base = state.settings.public_url.as_str().trim_end_matches('/');
    format!("{base}/api/bulk/syncs/{sync_id}/executions/{execution_id}/logs/download?expires={}", expires.timestamp())
}

/// `{URLs, Expires}`: where to download the execution's console log.
#[get("/bulk/syncs/{id}/executions/{exec_id}/logs")]
async fn logs(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let execution = execution_of(&state, &sync, &path.1).await?;
    let expires = Utc::now() + LOG_URL_VALIDITY;
    Ok(envelope(json!({
        "URLs": [download_url(&state, (sync.id, execution.id), expires)],
        "Expires": expires,
    })))
}

#[derive(Deserialize)]
struct ExportQuery {
    notify: Option<bool>,
}

/// The console log as one download: ready at once, so the job answered is already done.
#[post("/bulk/syncs/{id}/executions/{exec_id}/logs/export")]
async fn export_logs(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
    path: web::Path<(String, String)>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.notify == Some(true) {
        return Err(bad("notify", "notify is not supported: notifications are not built yet".into()));
    }
    let execution = execution_of(&state, &sync, &path.1).await?;
    let url = download_url(&state, (sync.id, execution.id), Utc::now() + LOG_URL_VALIDITY);
    Ok(HttpResponse::Ok().json(json!({
        "data": {"url": url},
        "job": {"job_id": Uuid::new_v4(), "type": "exportlogs", "status": "done", "result": {"url": url}},
    })))
}

#[derive(Deserialize)]
struct DownloadQuery {
    expires: Option<i64>,
}

/// One line of the text log.
fn text_line(line: &LogLine) -> String {
    let schema = line.schema_id.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
    format!("{} {}{schema} {}\n", line.at.to_rfc3339(), line.level.to_uppercase(), line.message)
}

/// The execution's whole console log as text; 410 once the URL expired.
#[get("/bulk/syncs/{id}/executions/{exec_id}/logs/download")]
async fn download(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
    path: web::Path<(String, String)>,
    query: web::Query<DownloadQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.expires.is_some_and(|at| at < Utc::now().timestamp()) {
        return Err(ApiError::new(actix_web::http::StatusCode::GONE, "this log URL expired: ask for the logs again"));
    }
    let execution = execution_of(&state, &sync, &path.1).await?;
    let every = execution_logs::Query { schema_id: None, after: Some(0), limit: i64::MAX };
    let lines = execution_logs::read(&state.pool.get().await?, &[execution.id], &every).await?;
    let text: String = lines.iter().map(text_line).collect();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"execution-{}.log\"", execution.id),
        ))
        .body(text))
}
