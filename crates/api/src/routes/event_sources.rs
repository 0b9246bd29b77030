//! Event sources: where producers send events (`/v1/*`), each with a write key that is shown
//! once, when the source is created or its key replaced, and stored only as a digest.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::crypto;

use super::{check_policies, envelope};
use crate::{
    AppState,
    access::{Action, Kind},
    error::{ApiError, parse_body},
    extract::{Authorized, Tenant, can},
    idempotency, input,
    store::{
        self,
        event_sources::{EventSource, Rules, StoredKey},
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(create).service(get_one).service(update).service(remove).service(rotate);
}

/// Characters of a write key shown as its hint.
const HINT_CHARS: usize = 4;

fn to_json(source: &EventSource) -> Json {
    json!({
        "id": source.id,
        "organization_id": source.organization_id,
        "name": source.name,
        "write_key_hint": source.write_key_hint,
        "policies": source.policies,
        "notifications": source.notifications,
        "created_at": source.created_at,
        "updated_at": source.updated_at,
    })
}

/// `source` with its new write key, the only time the key is shown.
fn with_key(source: &EventSource, key: &str) -> HttpResponse {
    let mut data = to_json(source);
    data["write_key"] = json!(key);
    envelope(data)
}

/// A new write key, its digest and its hint.
fn new_key() -> (String, Vec<u8>, String) {
    let key = crypto::new_write_key();
    let hint = key[key.len() - HINT_CHARS..].to_owned();
    let hash = crypto::hash_api_key(&key);
    (key, hash, hint)
}

#[derive(Deserialize)]
struct SourceBody {
    name: Option<String>,
    policies: Option<Vec<String>>,
    notifications: Option<Json>,
}

/// Parses a body, refusing fields an event source does not have (422 naming the field).
fn source_body(body: &[u8]) -> Result<SourceBody, ApiError> {
    let value: Json = parse_body(body)?;
    let fields = ["name", "policies", "notifications"];
    if let Some(unknown) = value.as_object().and_then(|o| o.keys().find(|k| !fields.contains(&k.as_str()))) {
        return Err(ApiError::unprocessable(format!("{unknown} is not a field of an event source"))
            .with_metadata(json!({"field": unknown})));
    }
    parse_body(body)
}

/// One notification rule as given: log events of these kinds go to a Slack channel (through
/// the Web API with the rule's bot token or `SLACK_TOKEN`, to its channel or `SLACK_CHANNEL`),
/// or to an incoming webhook.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    events: Vec<String>,
    channel: Option<String>,
    token: Option<String>,
    webhook_url: Option<String>,
}

/// The notification rules `given`, checked: each names log events of known kinds and where
/// they go — an incoming webhook (an http(s) URL), or a channel (its own or `SLACK_CHANNEL`)
/// and a bot token (its own or `SLACK_TOKEN`). 422 naming `notifications` otherwise.
fn notifications(state: &AppState, given: Json) -> Result<Rules, ApiError> {
    let invalid = |message: String| ApiError::unprocessable(message).with_metadata(json!({"field": "notifications"}));
    let rules: Vec<Rule> = serde_json::from_value(given).map_err(|e| {
        invalid(format!("notifications must be a list of {{\"events\": [...], \"channel\": \"#name\"}}: {e}"))
    })?;
    let slack = &state.settings.slack;
    let (mut public, mut secrets) = (Vec::new(), Vec::new());
    for rule in rules {
        if let Some(kind) = rule.events.iter().find(|k| !LOG_EVENTS.contains(&k.as_str())) {
            return Err(invalid(format!("notifications: {kind:?} is not one of {}", LOG_EVENTS.join(", "))));
        }
        let channel = rule.channel.as_deref().or(slack.channel.as_deref()).filter(|c| !c.is_empty());
        let (secret, kind) = match (rule.webhook_url, rule.token) {
            (Some(_), Some(_)) => {
                return Err(invalid("notifications: a rule has a token or a webhook_url, not both".into()));
            }
            (Some(url), None) => {
                let parsed = reqwest::Url::parse(&url).ok().filter(|u| ["http", "https"].contains(&u.scheme()));
                if parsed.is_none() {
                    return Err(invalid("notifications: webhook_url must be an http(s) URL".into()));
                }
                (Some(url), Some("webhook_url"))
            }
            (None, token) => {
                if channel.is_none() {
                    return Err(invalid("notifications: a rule names no channel and SLACK_CHANNEL is not set".into()));
                }
                if token.is_none() && slack.token.is_none() {
                    return Err(invalid("notifications: a rule has no token and SLACK_TOKEN is not set".into()));
                }
                let kind = token.is_some().then_some("token");
                (token, kind)
            }
        };
        let mut stored = json!({"events": rule.events});
        if let Some(channel) = rule.channel {
            stored["channel"] = json!(channel);
        }
        if let Some(kind) = kind {
            stored["secret"] = json!(kind);
        }
        public.push(stored);
        secrets.push(secret);
    }
    let sealed = secrets
        .iter()
        .any(Option::is_some)
        .then(|| state.secrets.seal(&serde_json::to_vec(&secrets).expect("secrets serialize")));
    Ok(Rules { public: Json::Array(public), sealed })
}

/// The kinds of log events of event streams.
const LOG_EVENTS: &[&str] = &["user.first_named", "delivery.dead_lettered"];

#[get("/event_sources")]
async fn list(state: web::Data<AppState>, tenant: Tenant) -> Result<HttpResponse, ApiError> {
    let readable = tenant.caller.readable(Kind::EventSource);
    let sources = store::event_sources::list(&state.pool.get().await?, tenant.organization_id, &readable).await?;
    Ok(envelope(sources.iter().map(to_json).collect()))
}

#[post("/event_sources")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    tenant: Tenant,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (org, caller) = (tenant.organization_id, &tenant.caller);
    caller.check(Action::Create, Kind::EventSource, &[])?;
    idempotency::once(&state, &req, caller, &body, async {
        let input = source_body(&body)?;
        let name = input::name(input.name.as_deref(), "name")?;
        let policies = input.policies.unwrap_or_default();
        let rules = match input.notifications.filter(|n| !n.is_null()) {
            Some(given) => notifications(&state, given)?,
            None => Rules { public: json!([]), sealed: None },
        };
        let client = state.pool.get().await?;
        check_policies(&client, org, &policies).await?;
        let (key, hash, hint) = new_key();
        let stored = StoredKey { hash: &hash, hint: &hint };
        let source = store::event_sources::insert(&client, org, (&name, &policies, &rules), stored).await?;
        Ok(with_key(&source, &key))
    })
    .await
}

#[get("/event_sources/{id}")]
async fn get_one(source: Authorized<EventSource, can::Read>) -> HttpResponse {
    envelope(to_json(&source))
}

#[put("/event_sources/{id}")]
async fn update(
    state: web::Data<AppState>,
    source: Authorized<EventSource, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input = source_body(&body)?;
    let name = input::name(input.name.as_deref(), "name")?;
    let policies = input.policies.unwrap_or_else(|| source.policies.clone());
    let rules = match input.notifications {
        None => None,
        Some(Json::Null) => Some(Rules { public: json!([]), sealed: None }),
        Some(given) => Some(notifications(&state, given)?),
    };
    let client = state.pool.get().await?;
    check_policies(&client, source.organization_id, &policies).await?;
    let updated =
        store::event_sources::update(&client, source.organization_id, source.id, (&name, &policies), rules.as_ref())
            .await?;
    Ok(envelope(to_json(&updated.ok_or_else(|| ApiError::not_found("event source"))?)))
}

#[delete("/event_sources/{id}")]
async fn remove(
    state: web::Data<AppState>,
    source: Authorized<EventSource, can::Delete>,
) -> Result<HttpResponse, ApiError> {
    store::event_sources::delete(&state.pool.get().await?, source.organization_id, source.id).await?;
    state.write_keys.forget_all();
    Ok(HttpResponse::NoContent().finish())
}

/// Replaces the source's write key; the old key stops working at once here and within
/// seconds on other api processes ([`crate::ingest::WriteKeys`]).
#[post("/event_sources/{id}/write_key")]
async fn rotate(
    state: web::Data<AppState>,
    source: Authorized<EventSource, can::Update>,
) -> Result<HttpResponse, ApiError> {
    let (key, hash, hint) = new_key();
    let stored = StoredKey { hash: &hash, hint: &hint };
    let rotated = store::event_sources::rotate(&state.pool.get().await?, source.organization_id, source.id, stored)
        .await?
        .ok_or_else(|| ApiError::not_found("event source"))?;
    state.write_keys.forget_all();
    Ok(with_key(&rotated, &key))
}
