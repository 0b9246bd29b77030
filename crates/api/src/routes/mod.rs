//! The REST routes under `/api`, grouped by resource. Every route of this directory is under
//! `/api`: `build.rs` relies on it for the route table.

use actix_web::{HttpResponse, web};
use base64::Engine;
use deadpool_postgres::GenericClient;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::{
    error::ApiError,
    store::{self, Window},
};

pub mod audit_events;
pub mod bulk_syncs;
pub mod connection_discovery;
pub mod connections;
pub mod console_log;
pub mod event_activity;
pub mod event_replays;
pub mod event_routes;
pub mod event_sources;
pub mod events;
pub mod executions;
pub mod models;
pub mod notifications;
pub mod organizations;
pub mod permissions;
pub mod record_logs;
pub mod schemas;
pub mod sources;
pub mod syncs;
pub mod targets;
pub mod users;

/// Registers the `/api` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .configure(organizations::configure)
            .configure(users::configure)
            .configure(permissions::configure)
            .configure(audit_events::configure)
            .configure(connections::configure)
            .configure(connection_discovery::configure)
            .configure(targets::configure)
            .configure(sources::configure)
            .configure(models::configure)
            .configure(syncs::configure)
            .configure(executions::configure)
            .configure(record_logs::configure)
            .configure(schemas::configure)
            .configure(bulk_syncs::configure)
            .configure(event_sources::configure)
            .configure(event_routes::configure)
            .configure(event_replays::configure)
            .configure(event_activity::configure)
            .configure(events::configure)
            .configure(notifications::configure),
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

/// 422 naming `policies` unless every id in `policies` names a policy of organization `org`.
pub async fn check_policies(client: &impl GenericClient, org: Uuid, policies: &[String]) -> Result<(), ApiError> {
    let invalid = |message: String| ApiError::unprocessable(message).with_metadata(json!({"field": "policies"}));
    let ids: Vec<Uuid> = policies
        .iter()
        .map(|p| Uuid::parse_str(p).map_err(|_| invalid(format!("policies: {p:?} is not a policy id"))))
        .collect::<Result<_, _>>()?;
    match store::permissions::count_policies(client, org, &ids).await? as usize == ids.len() {
        true => Ok(()),
        false => Err(invalid("policies: every entry must be a policy of this organization".into())),
    }
}

/// One page of a list: `page_token` is an opaque offset.
pub struct Page {
    offset: i64,
    limit: i64,
}

impl Page {
    /// Reads the page from the query; `limit` defaults to and is capped at `max`. A token this
    /// API did not hand out answers 422.
    pub fn parse(token: Option<&str>, limit: Option<i64>, max: i64) -> Result<Self, ApiError> {
        let offset = match token.filter(|t| !t.is_empty()) {
            Some(token) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|offset| *offset >= 0)
                .ok_or_else(|| {
                    ApiError::unprocessable("page_token is not valid: pass the next_page_token of a previous page")
                        .with_metadata(json!({"field": "page_token"}))
                })?,
            None => 0,
        };
        Ok(Self { offset, limit: limit.unwrap_or(max).clamp(1, max) })
    }

    /// The rows to fetch: one more than the page, to know if another follows.
    pub fn window(&self) -> Window {
        Window { limit: self.limit + 1, offset: self.offset }
    }

    /// The `{data, pagination}` envelope for rows fetched with [`Page::window`].
    pub fn respond<T>(&self, rows: &[T], to_json: impl Fn(&T) -> Json) -> HttpResponse {
        let next = match rows.len() as i64 > self.limit {
            true => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode((self.offset + self.limit).to_string()),
            false => String::new(),
        };
        let data: Vec<Json> = rows.iter().take(self.limit as usize).map(to_json).collect();
        HttpResponse::Ok().json(json!({"data": data, "pagination": {"next_page_token": next}}))
    }
}
