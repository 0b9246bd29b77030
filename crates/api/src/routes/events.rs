//! `GET /api/events` and `GET /api/events_types` (`client.events`): what happened to the
//! organization's model and bulk sync executions in the last 48 hours, oldest first.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::envelope;
use crate::{
    AppState,
    error::ApiError,
    extract::Tenant,
    input::invalid,
    store::events::{self, Event, Filter, TYPES},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(types);
}

/// Events a page holds unless asked: the default and the most.
const LIMIT: (i64, i64) = (10, 100);

fn to_json(event: &Event) -> Json {
    json!({
        "id": event.id,
        "organization_id": event.organization_id,
        "type": event.event_type,
        "created_at": event.created_at,
        "event": event.payload,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    organization_id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    starting_after: Option<String>,
    ending_before: Option<String>,
    limit: Option<i64>,
}

/// The time `value` of parameter `name`, if given.
fn time(value: Option<&str>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&Utc)))
        .transpose()
        .map_err(|_| invalid(name, "must be an RFC 3339 timestamp"))
}

#[get("/events")]
async fn list(
    state: web::Data<AppState>,
    tenant: Tenant,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    // Only system callers may name another organization; everyone else sees their own.
    if query.organization_id.as_deref().is_some_and(|id| id != tenant.organization_id.to_string()) {
        return Err(ApiError::not_found("organization"));
    }
    let event_type = query.event_type.as_deref();
    if event_type.is_some_and(|t| !TYPES.contains(&t)) {
        return Err(invalid("type", "must be one of the types GET /api/events_types lists"));
    }
    let limit = query.limit.unwrap_or(LIMIT.0);
    if !(1..=LIMIT.1).contains(&limit) {
        return Err(invalid("limit", &format!("must be between 1 and {}", LIMIT.1)));
    }
    let filter = Filter {
        event_type,
        after: time(query.starting_after.as_deref(), "starting_after")?,
        before: time(query.ending_before.as_deref(), "ending_before")?,
        limit,
    };
    let listed = events::list(&state.pool.get().await?, tenant.organization_id, &filter).await?;
    Ok(envelope(Json::Array(listed.iter().map(to_json).collect())))
}

#[get("/events_types")]
async fn types(_tenant: Tenant) -> HttpResponse {
    envelope(json!(TYPES))
}
