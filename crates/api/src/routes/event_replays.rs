//! What a route could not deliver, and delivering again: the route's dead letters (each with
//! its reason and attempts), replays of them after the cause is fixed (by id or by the time
//! their events arrived), and a replay of the route from a point in time, of every event the
//! store still holds (`EVENTS_RETENTION_HOURS`).

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::{Page, envelope, event_routes::route_of};
use crate::{
    AppState,
    error::{ApiError, parse_body},
    extract::{Authorized, can},
    store::{
        self,
        event_dead_letters::{DeadLetter, Selection},
        event_sources::EventSource,
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(replay_letters).service(replay_route);
}

fn to_json(letter: &DeadLetter) -> Json {
    json!({
        "id": letter.id,
        "message_id": letter.message_id,
        "received_at": letter.received_at,
        "message": letter.message,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "created_at": letter.created_at,
        "replay_requested_at": letter.replay_requested_at,
        "replayed_at": letter.replayed_at,
    })
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(message).with_metadata(json!({ "field": field }))
}

#[derive(Deserialize)]
struct ListQuery {
    page_token: Option<String>,
    limit: Option<i64>,
}

#[get("/event_sources/{id}/routes/{route_id}/dead_letters")]
async fn list(
    state: web::Data<AppState>,
    source: Authorized<EventSource, can::Read>,
    path: web::Path<(String, String)>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let route = route_of(&state, &source, &path.1).await?;
    let page = Page::parse(query.page_token.as_deref(), query.limit, 100)?;
    let letters = store::event_dead_letters::list(&state.pool.get().await?, route.id, page.window()).await?;
    Ok(page.respond(&letters, to_json))
}

/// The time at `key` of `body`, if given (422 naming it when it is not RFC 3339).
fn time(body: &Map<String, Json>, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match body.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| invalid(key, format!("{key} {text:?} is not an RFC 3339 time"))),
        Some(_) => Err(invalid(key, format!("{key} must be an RFC 3339 time"))),
    }
}

/// A replay's body (`{}` when empty), refusing fields not in `fields`.
fn replay_body(body: &[u8], fields: &[&str]) -> Result<Map<String, Json>, ApiError> {
    let body: Map<String, Json> = if body.is_empty() { Map::new() } else { parse_body(body)? };
    match body.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(unknown, format!("{unknown} is not a field of a replay"))),
        None => Ok(body),
    }
}

/// Replays dead letters: `{"ids": [..]}`, or `{"from": t, "to": t}` (events received in
/// `[from, to)`; either bound may be left out, `{}` replays all). Answers how many were asked
/// for; the route's delivery tries them within a second and records how each went.
#[post("/event_sources/{id}/routes/{route_id}/dead_letters/replay")]
async fn replay_letters(
    state: web::Data<AppState>,
    source: Authorized<EventSource, can::Update>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let route = route_of(&state, &source, &path.1).await?;
    let body = replay_body(&body, &["ids", "from", "to"])?;
    let ids: Option<Vec<i64>> = match body.get("ids") {
        None | Some(Json::Null) => None,
        Some(ids) => Some(
            serde_json::from_value(ids.clone()).map_err(|_| invalid("ids", "ids must be a list of dead letter ids"))?,
        ),
    };
    let (from, to) = (time(&body, "from")?, time(&body, "to")?);
    let selection = match &ids {
        Some(_) if from.is_some() || to.is_some() => {
            return Err(invalid("ids", "ids cannot be given with from or to"));
        }
        Some(ids) => Selection::Ids(ids),
        None => Selection::Received { from, to },
    };
    let requested = store::event_dead_letters::request_replay(&state.pool.get().await?, route.id, &selection).await?;
    Ok(envelope(json!({ "requested": requested })))
}

/// Replays the route from a point in time: `{"from": t}` delivers again every event of its
/// source received since `t` that the store still holds. Answers the route.
#[post("/event_sources/{id}/routes/{route_id}/replay")]
async fn replay_route(
    state: web::Data<AppState>,
    source: Authorized<EventSource, can::Update>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let route = route_of(&state, &source, &path.1).await?;
    let body = replay_body(&body, &["from"])?;
    let from = time(&body, "from")?.ok_or_else(|| invalid("from", "from is required"))?;
    store::event_dead_letters::rewind(&mut state.pool.get().await?, (source.id, route.id), from).await?;
    Ok(envelope(super::event_routes::to_json(&route_of(&state, &source, &path.1).await?)))
}
