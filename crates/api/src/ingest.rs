//! Segment's HTTP tracking API (`/v1/*`), which Segment's and RudderStack's clients post to
//! unmodified: the write key from Basic auth (as username), the body's `writeKey` or
//! `X-Api-Key`; gzip bodies (the limits apply to what they expand to);
//! each message checked and normalized ([`syncline_core::events::message`]). A `200` means the
//! events are committed ([`EventWriter`]); a store that cannot take them answers `503` with
//! `Retry-After`, which every client retries.
//!
//! Errors are the API's JSON error object with a `code` beside `message`: clients that find a
//! JSON error body without both retry even a 4xx. A batch with some bad messages stores the
//! good ones and answers 200 (clients drop a whole batch on a 4xx); the bad ones are counted in
//! the log. A request with nothing to store answers 400 naming the first bad field.

use actix_web::{HttpRequest, HttpResponse, dev::Decompress, http::StatusCode, post, web};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine;
use chrono::Utc;
use futures::StreamExt;
use serde_json::{Map, Value as Json, json};
use syncline_core::{
    crypto,
    events::{
        message::{BatchFields, MessageType, Rejected, normalize},
        store::{NewEvent, WriteError},
    },
};

use syncline_core::db::DbPool;
use uuid::Uuid;

use crate::{AppState, store};

/// Registers the routes; they read their bodies themselves, up to the configured limits.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(batch).service(import).service(single);
}

/// How long an answer about a write key is kept.
const KEY_TTL: Duration = Duration::from_secs(5);
/// Write keys kept at most; past that, the whole cache starts over.
const KEYS_KEPT: usize = 10_000;

/// The sources of write keys looked up lately, so a busy source is not looked up on every
/// request. An answer is kept for [`KEY_TTL`]: a replaced or deleted key stops working within
/// that time on every api process, and at once on the one that replaced it ([`WriteKeys::forget_all`]).
#[derive(Clone, Default)]
pub struct WriteKeys(Arc<Mutex<HashMap<Vec<u8>, KnownKey>>>);

/// A write key's source (none: no source has it), and when that was looked up.
type KnownKey = (Option<Uuid>, Instant);

impl WriteKeys {
    /// The source whose write key is `key`, if any.
    async fn source(&self, pool: &DbPool, key: &str) -> Result<Option<Uuid>, String> {
        let hash = crypto::hash_api_key(key);
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&hash).copied();
        if let Some((source, at)) = kept
            && at.elapsed() < KEY_TTL
        {
            return Ok(source);
        }
        let client = pool.get().await.map_err(|e| e.to_string())?;
        let source = store::event_sources::by_key(&client, &hash).await.map_err(|e| e.to_string())?.map(|s| s.id);
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= KEYS_KEPT {
            kept.clear();
        }
        kept.insert(hash, (source, Instant::now()));
        Ok(source)
    }

    /// Forgets every answer (a key was replaced or its source deleted).
    pub fn forget_all(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// An answer of the tracking API.
fn answer(status: StatusCode, key: &str, message: String, field: Option<&str>) -> HttpResponse {
    let metadata = field.map_or_else(|| json!({}), |field| json!({ "field": field }));
    let mut response = HttpResponse::build(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.insert_header(("Retry-After", "1"));
    }
    response.json(json!({
        "status": status.as_u16(), "key": key, "code": key, "message": message, "metadata": metadata,
    }))
}

fn bad_request(message: String, field: Option<&str>) -> HttpResponse {
    answer(StatusCode::BAD_REQUEST, "bad_request", message, field)
}

/// The write key: Basic auth's username (with or without the colon), else the body's
/// `writeKey`, else `X-Api-Key`.
fn write_key(req: &HttpRequest, body: &Map<String, Json>) -> Option<String> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let basic = header("authorization")
        .and_then(|auth| auth.strip_prefix("Basic ").or_else(|| auth.strip_prefix("basic ")))
        .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .map(|pair| match pair.split_once(':') {
            Some((user, _)) => user.to_owned(),
            None => pair,
        });
    let body_key = body.get("writeKey").and_then(Json::as_str).map(str::to_owned);
    [basic, body_key, header("x-api-key").map(str::to_owned)].into_iter().flatten().find(|key| !key.is_empty())
}

#[post("/v1/batch")]
async fn batch(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    accept(&state, &req, body, None).await
}

/// `/v1/import`, the classic mobile clients' batch route.
#[post("/v1/import")]
async fn import(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    accept(&state, &req, body, None).await
}

/// `/v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`: one message
/// of the path's type.
#[post("/v1/{type}")]
async fn single(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
) -> HttpResponse {
    match MessageType::parse(&path) {
        Some(message_type) => accept(&state, &req, body, Some(message_type)).await,
        None => answer(StatusCode::NOT_FOUND, "not_found", format!("route POST /v1/{path} not found"), None),
    }
}

/// The request body, decompressed, read no further than `limit` bytes (then a 400 naming
/// `what`): a small gzip body cannot expand without bound.
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    (limit, what): (usize, &str),
) -> Result<Vec<u8>, HttpResponse> {
    let mut body = Decompress::from_headers(payload, req.headers());
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| bad_request(format!("the body cannot be read: {e}"), None))?;
        if bytes.len() + chunk.len() > limit {
            return Err(bad_request(format!("the {what} is over the limit of {limit} bytes"), Some(what)));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Checks, normalizes and stores the messages of one request.
async fn accept(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    implied: Option<MessageType>,
) -> HttpResponse {
    let limits = (&state.settings.events_max_batch, &state.settings.events_max_message);
    let limit = match implied {
        Some(_) => (*limits.1, "message"),
        None => (*limits.0, "batch"),
    };
    let body = match read_body(req, payload, limit).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let Ok(Json::Object(mut body)) = serde_json::from_slice::<Json>(&body) else {
        return bad_request("the body is not a JSON object".into(), None);
    };
    let Some(key) = write_key(req, &body) else {
        return answer(StatusCode::UNAUTHORIZED, "unauthorized", "a write key is required".into(), None);
    };
    let source = match state.write_keys.source(&state.pool, &key).await {
        Ok(Some(source)) => source,
        Ok(None) => return answer(StatusCode::UNAUTHORIZED, "unauthorized", "the write key is not valid".into(), None),
        Err(e) => return answer(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e, None),
    };
    let received_at = Utc::now();
    let (raw, shared) = match implied {
        Some(_) => {
            body.remove("writeKey");
            (vec![Json::Object(body)], BatchFields::default())
        }
        None => {
            let shared = BatchFields::of(&body);
            match body.remove("batch") {
                Some(Json::Array(messages)) if !messages.is_empty() => (messages, shared),
                Some(Json::Array(_)) => return bad_request("batch is empty".into(), Some("batch")),
                _ => return bad_request("batch is required: a list of messages".into(), Some("batch")),
            }
        }
    };
    let mut events = Vec::with_capacity(raw.len());
    let mut refused: Vec<(usize, Rejected)> = Vec::new();
    for (index, message) in raw.into_iter().enumerate() {
        // A single message's size is its body's, checked as it was read.
        let size = match implied {
            Some(_) => 0,
            None => serde_json::to_vec(&message).map_or(0, |bytes| bytes.len()),
        };
        let checked = match size > *limits.1 {
            true => Err(Rejected { field: "message".into(), reason: format!("is {size} bytes, over {}", limits.1) }),
            false => normalize(message, implied, &shared, received_at),
        };
        match checked {
            Ok(message) => events.push(NewEvent::new(source, message)),
            Err(rejected) => refused.push((index, rejected)),
        }
    }
    if events.is_empty() {
        let (index, rejected) = refused.swap_remove(0);
        let field = match implied {
            Some(_) => rejected.field.clone(),
            None => format!("batch[{index}].{}", rejected.field),
        };
        return bad_request(format!("{field} {}", rejected.reason), Some(&field));
    }
    if !refused.is_empty() {
        let first = &refused[0];
        tracing::info!(%source, refused = refused.len(), first = %format!("batch[{}]: {}", first.0, first.1),
            "messages of a batch were refused");
    }
    match state.events.write(events).await {
        Ok(()) => HttpResponse::Ok().json(json!({"success": true})),
        Err(WriteError::Busy) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the event store is busy: retry shortly".into(),
            None,
        ),
        Err(e @ WriteError::Store(_)) => answer(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string(), None),
    }
}
