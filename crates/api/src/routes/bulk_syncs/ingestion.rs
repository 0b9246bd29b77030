//! Change data capture as the API shows it: a bulk sync's ingestion status (`get_status`), the
//! console log of the captures reading from a connection (`get_ingest_console_logs`), and the
//! restart of a capture when its sync is activated. The worker's capture (kind `bulk_cdc`)
//! writes its progress in `capture_slots` and its log lines in `execution_logs` under its
//! execution.

use actix_web::{HttpResponse, get, http::StatusCode, web};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_connectors::postgres::cdc;
use syncline_core::executions::BULK_CDC;

use crate::{
    AppState,
    error::ApiError,
    extract::{Authorized, can},
    launch,
    routes::{
        console_log::{LogQuery, page as log_page},
        parse_id,
    },
    store::{self, bulk_syncs::BulkSync, connections::Connection},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(console_log);
}

/// A capture whose last poll left more WAL than this to read is behind: status `warning`.
const LAG_WARNING_BYTES: i64 = 64 << 20;

/// A running capture that recorded no progress for this long is stalled: status `warning`.
const STALLED_AFTER: Duration = Duration::minutes(5);

/// `BulkSyncIngestionStatus` of `sync`, or `null` when it does not capture changes: whether
/// its capture runs; `error` with the reason when the capture failed (the WAL guard's stop
/// included), `warning` when it is behind by more than [`LAG_WARNING_BYTES`] of WAL or
/// stalled for [`STALLED_AFTER`], else `ok`; the confirmed position and the commit time of the
/// last change applied, the source's WAL position at the last poll, and when it was recorded.
pub(super) async fn status(state: &AppState, sync: &BulkSync) -> Result<Json, ApiError> {
    let client = state.pool.get().await?;
    let source = store::connections::get(&client, sync.organization_id, sync.source_connection_id).await?;
    let mode = serde_json::from_value(json!(sync.mode)).ok();
    let captures = source.zip(mode).is_some_and(|(s, mode)| cdc::captures(mode, &s.type_id, &s.configuration));
    if !captures {
        return Ok(Json::Null);
    }
    let capture = store::executions::latest(&client, (BULK_CDC, sync.id), &[], false).await?;
    let slot = store::capture_slots::get(&client, sync.id).await?;
    let is_running = capture.as_ref().is_some_and(|c| c.status == "running");
    let lag = slot.as_ref().and_then(|s| s.lag_bytes).unwrap_or(0);
    let stalled = slot.as_ref().and_then(|s| s.updated_at).is_some_and(|at| Utc::now() - at > STALLED_AFTER);
    let (status, message) = match &capture {
        Some(c) if c.status == "failed" => {
            ("error", Some(c.errors.get(0).and_then(Json::as_str).unwrap_or("the capture failed").to_owned()))
        }
        _ if !sync.active => ("ok", Some("capture paused: the bulk sync is inactive".to_owned())),
        _ if lag > LAG_WARNING_BYTES => ("warning", Some(format!("the capture is {} MB of WAL behind", lag >> 20))),
        _ if is_running && stalled => (
            "warning",
            Some(format!("the capture recorded no progress for over {} minutes", STALLED_AFTER.num_minutes())),
        ),
        _ => ("ok", None),
    };
    Ok(json!({
        "enabled": true,
        "is_running": is_running,
        "status": status,
        "status_message": message,
        "position": slot.as_ref().and_then(|s| s.position.clone()),
        "position_time": slot.as_ref().and_then(|s| s.position_time),
        "highwater_mark": slot.as_ref().and_then(|s| s.highwater_mark.clone()),
        "updated_at": slot.as_ref().and_then(|s| s.updated_at),
    }))
}

/// Starts `sync`'s capture again once it is active, from its slot's confirmed position: with
/// the options of its last capture, when it had one and its slot is still there (after the WAL
/// guard dropped it, the next run reloads first). A capture in progress is left alone; a
/// deactivated sync's capture pauses by itself.
pub(super) async fn resume(state: &AppState, sync: &BulkSync) -> Result<(), ApiError> {
    let client = state.pool.get().await?;
    let last = store::executions::latest(&client, (BULK_CDC, sync.id), &[], false).await?;
    let slot = store::capture_slots::get(&client, sync.id).await?;
    drop(client);
    let Some(last) = last.filter(|_| sync.active && slot.is_some()) else { return Ok(()) };
    let subject = (BULK_CDC, sync.id, sync.organization_id);
    match launch::start(state, subject, "bulk_sync", false, &last.options).await {
        Err(e) if e.status != StatusCode::CONFLICT => Err(e),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
struct IngestQuery {
    sync_id: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// The console log of the captures of the bulk syncs reading from the connection (of one of
/// them with `sync_id`; 404 when it is not one of them), as the executions' console logs are.
#[get("/connections/{connection_id}/ingest/consolelog")]
async fn console_log(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
    query: web::Query<IngestQuery>,
) -> Result<HttpResponse, ApiError> {
    let sync_id = query.sync_id.as_deref().filter(|s| !s.is_empty()).map(|s| parse_id(s, "bulk_sync")).transpose()?;
    let client = state.pool.get().await?;
    if let Some(id) = sync_id {
        let sync = store::bulk_syncs::get(&client, connection.organization_id, id).await?;
        sync.filter(|s| s.source_connection_id == connection.id).ok_or_else(|| ApiError::not_found("bulk_sync"))?;
    }
    let captures =
        store::executions::captures_of(&client, (connection.organization_id, connection.id), sync_id).await?;
    drop(client);
    let page = LogQuery { limit: query.limit, after: query.after.clone() };
    log_page(&state, &captures, None, &page).await
}
