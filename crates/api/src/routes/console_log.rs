//! Console log pages of executions of any kind (`execution_logs`, as the engine writes them):
//! `ExecutionConsoleLogsResponse`, the newest lines or those after a cursor.

use actix_web::HttpResponse;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use super::envelope;
use crate::{
    AppState,
    error::ApiError,
    store::execution_logs::{self, LogLine},
};

/// Console log entries one request answers at most.
const LOG_PAGE: i64 = 50;

/// The query of a console log: how many lines, and after which cursor.
#[derive(Deserialize)]
pub struct LogQuery {
    pub limit: Option<i64>,
    pub after: Option<String>,
}

/// An entry: the line, with its schema (if any) as payload.
fn entry(line: &LogLine) -> Json {
    let payload = match &line.schema_id {
        Some(schema) => json!({ "schema": schema }),
        None => json!({}),
    };
    json!({
        "id": line.id.to_string(),
        "timestamp": line.at,
        "level": line.level,
        "message": line.message,
        "payload": payload,
    })
}

/// `{entries, next_cursor}`: up to 50 console log lines of `executions` (of one schema when
/// given), the newest ones, or those after the cursor `after`; `next_cursor` is where to go on.
pub async fn page(
    state: &AppState,
    executions: &[Uuid],
    schema_id: Option<&str>,
    query: &LogQuery,
) -> Result<HttpResponse, ApiError> {
    let after = query
        .after
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<i64>().map_err(|_| {
                ApiError::bad_request("after must be a next_cursor of an earlier answer")
                    .with_metadata(json!({"field": "after"}))
            })
        })
        .transpose()?;
    let read = execution_logs::Query { schema_id, after, limit: query.limit.unwrap_or(LOG_PAGE).clamp(1, LOG_PAGE) };
    let lines = execution_logs::read(&state.pool.get().await?, executions, &read).await?;
    let next = lines.last().map(|l| l.id).or(after);
    let entries: Vec<Json> = lines.iter().map(entry).collect();
    Ok(envelope(json!({ "entries": entries, "next_cursor": next.map(|n| n.to_string()) })))
}
