//! Which events a route takes: by message type, by track event name, and by fields that must
//! hold given values (`{"context.resourcePath": "/server"}`, as Polku split its sources). An
//! empty filter takes everything.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::message::MessageType;

/// A route's filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// The message types taken (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// The track event names taken (all when empty); other types are not held to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Dotted paths into the message and the value each must hold.
    #[serde(default, rename = "match", skip_serializing_if = "Map::is_empty")]
    pub matching: Map<String, Json>,
}

impl Filter {
    /// Why this filter cannot be used (an unknown type, an empty path), if it cannot.
    pub fn problem(&self) -> Option<String> {
        if let Some(unknown) = self.types.iter().find(|t| MessageType::parse(t).is_none()) {
            return Some(format!("{unknown:?} is not track, identify, page, screen, group or alias"));
        }
        self.matching
            .keys()
            .find(|path| path.split('.').any(str::is_empty))
            .map(|path| format!("{path:?} is not a path"))
    }

    /// Whether `message` passes.
    pub fn takes(&self, message: &Map<String, Json>) -> bool {
        let kind = message.get("type").and_then(Json::as_str).unwrap_or_default();
        let typed = self.types.is_empty() || self.types.iter().any(|t| t == kind);
        let named = kind != "track"
            || self.events.is_empty()
            || message.get("event").and_then(Json::as_str).is_some_and(|e| self.events.iter().any(|n| n == e));
        typed && named && self.matching.iter().all(|(path, value)| at(message, path) == Some(value))
    }
}

/// The value at dotted `path` of `message`.
fn at<'a>(message: &'a Map<String, Json>, path: &str) -> Option<&'a Json> {
    let mut parts = path.split('.');
    let first = message.get(parts.next()?)?;
    parts.try_fold(first, |value, part| value.get(part))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(value: Json) -> Map<String, Json> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn takes_by_type_event_and_field_values() {
        let filter: Filter = serde_json::from_value(json!({
            "types": ["track", "identify"], "events": ["Signed Up"], "match": {"context.resourcePath": "/server"},
        }))
        .expect("a filter");
        let server = json!({"resourcePath": "/server"});
        assert!(filter.takes(&message(json!({"type": "track", "event": "Signed Up", "context": server}))));
        assert!(filter.takes(&message(json!({"type": "identify", "context": server}))), "events bind tracks only");
        assert!(!filter.takes(&message(json!({"type": "track", "event": "Booked", "context": server}))));
        assert!(!filter.takes(&message(json!({"type": "page", "context": server}))));
        assert!(!filter.takes(&message(json!({"type": "identify", "context": {"resourcePath": "/client"}}))));
        assert!(!filter.takes(&message(json!({"type": "identify"}))), "a missing field does not match");
        assert!(Filter::default().takes(&message(json!({"type": "alias"}))), "an empty filter takes all");
    }

    #[test]
    fn problems_are_named() {
        let bad: Filter = serde_json::from_value(json!({"types": ["click"]})).expect("parses");
        assert!(bad.problem().is_some_and(|p| p.contains("click")));
        let bad: Filter = serde_json::from_value(json!({"match": {"a..b": 1}})).expect("parses");
        assert!(bad.problem().is_some_and(|p| p.contains("a..b")));
        assert!(serde_json::from_value::<Filter>(json!({"where": {}})).is_err(), "unknown fields are refused");
    }
}
