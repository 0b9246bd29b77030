//! The REST routes, grouped by resource.

use actix_web::{HttpResponse, web};
use base64::Engine;
use deadpool_postgres::GenericClient;
use serde_json::{Value as Json, json};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{AppState, auth::Caller, error::ApiError};

pub mod connections;
pub mod executions;
pub mod models;
pub mod organizations;
pub mod status;
pub mod syncs;
pub mod targets;
pub mod users;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(status::status);
    cfg.service(
        web::scope("/api")
            .configure(organizations::configure)
            .configure(users::configure)
            .configure(connections::configure)
            .configure(targets::configure)
            .configure(models::configure)
            .configure(syncs::configure)
            .configure(executions::configure),
    );
}

/// Parses a path id; a malformed id names no object, so it is a 404.
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what))
}

/// Wraps `data` in the `{"data": …}` envelope.
pub fn envelope(data: Json) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "data": data }))
}

/// Reads `columns` of row `id` of `table` if it belongs to organization `org`. Other
/// organizations' objects do not exist for the caller: 404 naming `what`.
pub async fn owned_row(
    client: &impl GenericClient,
    table: &str,
    columns: &str,
    id: Uuid,
    org: Uuid,
    what: &str,
) -> Result<Row, ApiError> {
    let sql = format!("select {columns} from {table} where id = $1 and organization_id = $2");
    client.query_opt(&sql, &[&id, &org]).await?.ok_or_else(|| ApiError::not_found(what))
}

/// Answers one organization-scoped object of `table`, or 404 (unknown ids, and other
/// organizations' objects, do not exist for the caller).
pub async fn get_owned(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    (table, columns, what): (&str, &str, &str),
    to_json: fn(&Row) -> Json,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(raw_id, what)?;
    let row = owned_row(&state.pool.get().await?, table, columns, id, org, what).await?;
    Ok(envelope(to_json(&row)))
}

/// Answers every object of `table` in the caller's organization, oldest first.
pub async fn list_owned(
    state: &AppState,
    caller: &Caller,
    (table, columns): (&str, &str),
    to_json: fn(&Row) -> Json,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let sql = format!("select {columns} from {table} where organization_id = $1 order by created_at");
    let rows = state.pool.get().await?.query(&sql, &[&org]).await?;
    Ok(envelope(rows.iter().map(to_json).collect()))
}

/// A trimmed, non-empty text field.
pub fn non_empty(value: Option<&str>) -> Option<String> {
    value.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// One page of a list: `page_token` is an opaque offset.
pub struct Page {
    offset: i64,
    limit: i64,
}

impl Page {
    /// Reads the page from the query; `limit` defaults to and is capped at `max`.
    pub fn parse(token: Option<&str>, limit: Option<i64>, max: i64) -> Result<Self, ApiError> {
        let offset = match token.filter(|t| !t.is_empty()) {
            Some(token) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ApiError::bad_request("page_token is not valid"))?,
            None => 0,
        };
        Ok(Self { offset, limit: limit.unwrap_or(max).clamp(1, max) })
    }

    /// `LIMIT` and `OFFSET` values: one row more than the page, to know if another follows.
    pub fn bounds(&self) -> (i64, i64) {
        (self.limit + 1, self.offset)
    }

    /// The `{data, pagination}` envelope for rows fetched with [`Page::bounds`].
    pub fn respond(&self, rows: &[Row], to_json: impl Fn(&Row) -> Json) -> HttpResponse {
        let next = match rows.len() as i64 > self.limit {
            true => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode((self.offset + self.limit).to_string()),
            false => String::new(),
        };
        let data: Vec<Json> = rows.iter().take(self.limit as usize).map(to_json).collect();
        HttpResponse::Ok().json(json!({"data": data, "pagination": {"next_page_token": next}}))
    }
}
