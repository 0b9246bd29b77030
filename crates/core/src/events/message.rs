//! One event message as the Segment Spec defines it, checked and normalized on arrival: its
//! type, ids and required fields checked (a rejection names the field); `messageId` assigned
//! when absent; the batch's `context`, `integrations` and `sentAt` carried into it; `receivedAt`
//! stamped; and `timestamp` corrected for the sender's clock skew,
//! `receivedAt − (sentAt − originalTimestamp)`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

/// The longest `messageId` the Spec allows.
const MESSAGE_ID_CHARS: usize = 100;

/// The six message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    const ALL: [MessageType; 6] = [Self::Track, Self::Identify, Self::Page, Self::Screen, Self::Group, Self::Alias];

    /// The type's name in messages and paths (`track`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::Identify => "identify",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Group => "group",
            Self::Alias => "alias",
        }
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a batch says for all its messages.
#[derive(Debug, Clone, Default)]
pub struct BatchFields {
    pub context: Option<Map<String, Json>>,
    pub integrations: Option<Map<String, Json>>,
    pub sent_at: Option<Json>,
}

impl BatchFields {
    /// The batch-level fields of a `/v1/batch` body.
    pub fn of(body: &Map<String, Json>) -> Self {
        let object = |key: &str| body.get(key).and_then(Json::as_object).cloned();
        Self { context: object("context"), integrations: object("integrations"), sent_at: present(body, "sentAt") }
    }
}

/// A message ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub message_type: MessageType,
    pub message_id: String,
    pub received_at: DateTime<Utc>,
    /// The whole message, normalized.
    pub body: Map<String, Json>,
}

/// Why a message was refused, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Rejected {}

fn rejected(field: &str, reason: impl Into<String>) -> Rejected {
    Rejected { field: field.to_owned(), reason: reason.into() }
}

/// The value of `key` unless absent or `null` (clients send `null` for what they leave out).
fn present(body: &Map<String, Json>, key: &str) -> Option<Json> {
    body.get(key).filter(|v| !v.is_null()).cloned()
}

/// Checks and normalizes `raw`, received at `received_at`: a message of type `implied` when the
/// path gives one, else of the type it names, within `batch`.
pub fn normalize(
    raw: Json,
    implied: Option<MessageType>,
    batch: &BatchFields,
    received_at: DateTime<Utc>,
) -> Result<Message, Rejected> {
    let Json::Object(mut body) = raw else { return Err(rejected("message", "is not a JSON object")) };
    body.retain(|_, value| !value.is_null());
    let message_type = match (implied, body.get("type")) {
        (Some(implied), _) => implied,
        (None, Some(Json::String(name))) => MessageType::parse(name).ok_or_else(|| {
            rejected("type", format!("{name:?} is not track, identify, page, screen, group or alias"))
        })?,
        (None, Some(_)) => return Err(rejected("type", "is not a string")),
        (None, None) => return Err(rejected("type", "is required")),
    };
    body.insert("type".into(), Json::String(message_type.as_str().into()));
    for id in ["userId", "anonymousId", "groupId", "previousId"] {
        identifier(&mut body, id)?;
    }
    let has = |body: &Map<String, Json>, key: &str| body.get(key).is_some_and(|v| v.as_str() != Some(""));
    if !has(&body, "userId") && !has(&body, "anonymousId") {
        return Err(rejected("userId", "userId or anonymousId is required"));
    }
    let required: &[&str] = match message_type {
        MessageType::Track => &["event"],
        MessageType::Group => &["groupId"],
        MessageType::Alias => &["userId", "previousId"],
        _ => &[],
    };
    for field in required {
        match body.get(*field) {
            Some(Json::String(value)) if !value.is_empty() => {}
            Some(Json::String(_)) | None => return Err(rejected(field, format!("is required in a {message_type}"))),
            Some(_) => return Err(rejected(field, "is not a string")),
        }
    }
    let message_id = match body.get("messageId") {
        None => Uuid::new_v4().to_string(),
        Some(Json::String(id)) if id.trim().is_empty() => Uuid::new_v4().to_string(),
        Some(Json::String(id)) if id.trim().chars().count() > MESSAGE_ID_CHARS => {
            return Err(rejected("messageId", format!("is longer than {MESSAGE_ID_CHARS} characters")));
        }
        Some(Json::String(id)) => id.trim().to_owned(),
        Some(_) => return Err(rejected("messageId", "is not a string")),
    };
    body.insert("messageId".into(), Json::String(message_id.clone()));
    for (key, shared) in [("context", &batch.context), ("integrations", &batch.integrations)] {
        merge_shared(&mut body, key, shared.as_ref())?;
    }
    stamp_times(&mut body, batch, received_at)?;
    Ok(Message { message_type, message_id, received_at, body })
}

/// Makes id `key` a string: clients may send numbers.
fn identifier(body: &mut Map<String, Json>, key: &str) -> Result<(), Rejected> {
    match body.get(key) {
        None | Some(Json::String(_)) => Ok(()),
        Some(Json::Number(n)) => {
            let text = n.to_string();
            body.insert(key.into(), Json::String(text));
            Ok(())
        }
        Some(_) => Err(rejected(key, "is not a string")),
    }
}

/// Deep-merges the batch's object `key` under the message's own, whose keys win.
fn merge_shared(body: &mut Map<String, Json>, key: &str, shared: Option<&Map<String, Json>>) -> Result<(), Rejected> {
    let own = match body.remove(key) {
        None => Map::new(),
        Some(Json::Object(own)) => own,
        Some(_) => return Err(rejected(key, "is not an object")),
    };
    let merged = match shared {
        Some(shared) => deep_merge(shared.clone(), own),
        None => own,
    };
    if !merged.is_empty() {
        body.insert(key.into(), Json::Object(merged));
    }
    Ok(())
}

/// `over`'s entries laid over `base`, objects merged key by key.
fn deep_merge(mut base: Map<String, Json>, over: Map<String, Json>) -> Map<String, Json> {
    for (key, value) in over {
        let merged = match (base.remove(&key), value) {
            (Some(Json::Object(below)), Json::Object(above)) => Json::Object(deep_merge(below, above)),
            (_, value) => value,
        };
        base.insert(key, merged);
    }
    base
}

/// Sets `receivedAt`, `sentAt`, `originalTimestamp` and the skew-corrected `timestamp`.
fn stamp_times(body: &mut Map<String, Json>, batch: &BatchFields, received_at: DateTime<Utc>) -> Result<(), Rejected> {
    let time = |body: &Map<String, Json>, key: &str| present(body, key).map(|v| parse_time(&v, key)).transpose();
    let original = match time(body, "originalTimestamp")? {
        Some(original) => original,
        None => time(body, "timestamp")?.unwrap_or(received_at),
    };
    let sent_at = match time(body, "sentAt")? {
        Some(sent) => sent,
        None => batch.sent_at.as_ref().map(|v| parse_time(v, "sentAt")).transpose()?.unwrap_or(received_at),
    };
    let timestamp = received_at - (sent_at - original);
    let format = |t: DateTime<Utc>| Json::String(t.to_rfc3339_opts(SecondsFormat::Millis, true));
    body.insert("originalTimestamp".into(), format(original));
    body.insert("sentAt".into(), format(sent_at));
    body.insert("receivedAt".into(), format(received_at));
    body.insert("timestamp".into(), format(timestamp));
    Ok(())
}

/// An ISO-8601 time with a zone (`Z` or an offset, up to nanoseconds), or epoch milliseconds.
fn parse_time(value: &Json, field: &str) -> Result<DateTime<Utc>, Rejected> {
    let parsed = match value {
        Json::String(text) => DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| t.with_timezone(&Utc)),
        Json::Number(n) => n.as_i64().and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        _ => None,
    };
    parsed.ok_or_else(|| rejected(field, format!("{value} is not an ISO-8601 time with a zone or epoch milliseconds")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("a time").with_timezone(&Utc)
    }

    fn batch(fields: Json) -> BatchFields {
        BatchFields::of(fields.as_object().expect("an object"))
    }

    fn refused(raw: Json, implied: Option<MessageType>) -> Rejected {
        normalize(raw, implied, &BatchFields::default(), Utc::now()).expect_err("refused")
    }

    #[test]
    fn a_python_client_batch_message_gets_its_times_ids_and_batch_fields() {
        let received = at("2026-11-22T05:48:06.000Z");
        let shared = batch(json!({
            "sentAt": "2026-11-22T05:48:05.042486+00:00",
            "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "10.0.0.1"},
        }));
        let raw = json!({
            "type": "track", "event": "Order Completed", "userId": 42, "anonymousId": null,
            "timestamp": "2026-11-22T05:48:04.542+00:00", "messageId": " m-1 ",
            "context": {"ip": "1.2.3.4", "library": {"version": "2.4.1"}},
            "properties": {"revenue": 12.5},
        });
        let message = normalize(raw, None, &shared, received).expect("accepted");
        assert_eq!((message.message_type, message.message_id.as_str()), (MessageType::Track, "m-1"));
        let body = Json::Object(message.body);
        assert_eq!(body["userId"], "42", "numeric ids become strings");
        assert!(body.get("anonymousId").is_none(), "a null is absent");
        assert_eq!(
            body["context"],
            json!({"ip": "1.2.3.4", "library": {"name": "analytics-python", "version": "2.4.1"}}),
            "the message's context wins key by key over the batch's"
        );
        assert_eq!(body["originalTimestamp"], "2026-11-22T05:48:04.542Z");
        assert_eq!(body["sentAt"], "2026-11-22T05:48:05.042Z", "the batch's sentAt is carried in");
        assert_eq!(body["receivedAt"], "2026-11-22T05:48:06.000Z");
        // receivedAt − (sentAt − originalTimestamp): the client's clock was 0.958 s behind.
        assert_eq!(body["timestamp"], "2026-11-22T05:48:05.499Z");
    }

    #[test]
    fn missing_times_fall_back_to_arrival_and_epoch_milliseconds_are_times() {
        let received = at("2026-11-22T05:48:06.000Z");
        let bare = normalize(json!({"userId": "u"}), Some(MessageType::Identify), &BatchFields::default(), received)
            .expect("accepted");
        for field in ["timestamp", "originalTimestamp", "sentAt", "receivedAt"] {
            assert_eq!(bare.body[field], "2026-11-22T05:48:06.000Z", "{field}");
        }
        assert_eq!(bare.body["type"], "identify", "the path's type");
        assert_eq!(bare.message_id.len(), 36, "a messageId is assigned: {}", bare.message_id);
        let fork = json!({"type": "page", "anonymousId": "a", "timestamp": 1_795_326_628_577_i64,
                          "sentAt": 1_795_326_628_577_i64});
        let message = normalize(fork, None, &BatchFields::default(), received).expect("accepted");
        assert_eq!(message.body["originalTimestamp"], "2026-11-22T05:50:28.577Z");
        assert_eq!(message.body["timestamp"], "2026-11-22T05:48:06.000Z", "sent as it happened: no skew");
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json!([1]), None, "message"),
            (json!({"userId": "u"}), None, "type"),
            (json!({"type": "click", "userId": "u"}), None, "type"),
            (json!({"type": "track", "event": "E"}), None, "userId"),
            (json!({"type": "track", "userId": ""}), None, "userId"),
            (json!({"userId": "u", "event": ""}), Some(MessageType::Track), "event"),
            (json!({"anonymousId": "a"}), Some(MessageType::Group), "groupId"),
            (json!({"anonymousId": "a", "previousId": "p"}), Some(MessageType::Alias), "userId"),
            (json!({"userId": "u"}), Some(MessageType::Alias), "previousId"),
            (json!({"userId": "u", "messageId": "x".repeat(101)}), Some(MessageType::Page), "messageId"),
            (json!({"userId": "u", "timestamp": "yesterday"}), Some(MessageType::Page), "timestamp"),
            (json!({"userId": "u", "context": "web"}), Some(MessageType::Screen), "context"),
            (json!({"userId": ["u"]}), Some(MessageType::Screen), "userId"),
        ];
        for (raw, implied, field) in cases {
            let refusal = refused(raw.clone(), implied);
            assert_eq!(refusal.field, field, "{raw}: {refusal}");
        }
    }

    #[test]
    fn a_blank_message_id_is_replaced_and_shared_objects_merge_deeply() {
        let shared = batch(json!({"integrations": {"All": true, "Slack": {"channel": "#a", "on": true}}}));
        let raw = json!({"type": "track", "event": "E", "userId": "u", "messageId": "  ",
                         "integrations": {"Slack": {"channel": "#b"}}});
        let message = normalize(raw, None, &shared, Utc::now()).expect("accepted");
        assert_eq!(message.message_id.len(), 36);
        assert_eq!(message.body["integrations"], json!({"All": true, "Slack": {"channel": "#b", "on": true}}));
    }
}
