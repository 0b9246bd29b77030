//! Where a stored message lands in a warehouse, as rows of named tables.
//!
//! Two layouts, chosen per route:
//! - [`Layout::SourceTable`], as Polku had it: one table per source (`<schema>.server`), every
//!   message type in it, with a `type` column and `properties_*`, `traits_*` and `context_*`
//!   columns.
//! - [`Layout::Segment`], Segment's warehouse layout: `tracks` (standard columns only) and one
//!   table per event name with its properties un-prefixed, `identifies` and the `users` it
//!   merges into, `pages`, `screens`, `groups`, `aliases`.
//!
//! Names pass through Segment's snake_case ([`snake`]); nested objects are flattened with `_`
//! and arrays kept as JSON. A property whose name is taken by a standard column of its table is
//! kept with a leading `_` (Segment drops it; nothing is dropped here). Null values make no
//! column. A message that would need more than [`MAX_COLUMNS`] columns in one row is refused.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// Columns one row may have: beyond this a message is refused (a runaway set of property names
/// would otherwise widen its table for good).
pub const MAX_COLUMNS: usize = 200;
/// The longest identifier PostgreSQL keeps.
const MAX_NAME_BYTES: usize = 63;
/// Tables of the Segment layout an event name may not take.
const SEGMENT_TABLES: &[&str] = &["tracks", "identifies", "users", "pages", "screens", "groups", "aliases", "accounts"];

/// How a route lays events out in its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One table per source, named after it.
    SourceTable,
    /// Segment's warehouse tables.
    Segment,
}

impl Layout {
    /// The layout's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SourceTable => "source_table",
            Self::Segment => "segment",
        }
    }

    /// The layout named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::SourceTable, Self::Segment].into_iter().find(|l| l.as_str() == name)
    }
}

/// How a table takes rows whose `id` it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Merge {
    /// The row it has stays; the new one is a duplicate (messages, keyed by `messageId`).
    Keep,
    /// Each column takes the newest non-null value (`users`, keyed by user id).
    Latest,
}

/// One row for one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub table: String,
    pub merge: Merge,
    /// Column names (snake_case) and their non-null values; `id` always among them.
    pub values: Map<String, Json>,
}

/// The type a column gets from the first non-null value it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Numeric,
    Boolean,
    Timestamp,
    Json,
}

impl ColumnType {
    /// The type of columns `value` starts (`None` for null): numbers are `numeric` (exact for
    /// integers and decimals alike), strings that are ISO-8601 times with a zone timestamps,
    /// arrays and objects JSON.
    pub fn of(value: &Json) -> Option<Self> {
        Some(match value {
            Json::Null => return None,
            Json::Bool(_) => Self::Boolean,
            Json::Number(_) => Self::Numeric,
            Json::String(s) if looks_like_time(s) => Self::Timestamp,
            Json::String(_) => Self::Text,
            Json::Array(_) | Json::Object(_) => Self::Json,
        })
    }

    /// The PostgreSQL type.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Numeric => "numeric",
            Self::Boolean => "boolean",
            Self::Timestamp => "timestamptz",
            Self::Json => "jsonb",
        }
    }
}

/// A date and time with a zone, as RFC 3339 writes it.
fn looks_like_time(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// The rows `message` (a stored, normalized message of source `source`) becomes in `layout`,
/// the message's own row first; `extra` (enrichment, the load time) goes into every row.
/// `Err` names why the message cannot be laid out.
pub fn rows(
    layout: Layout,
    source: &str,
    message: &Map<String, Json>,
    extra: &[(String, Json)],
) -> Result<Vec<Row>, String> {
    let kind = message.get("type").and_then(Json::as_str).unwrap_or("track");
    let mut standard = Map::new();
    let text = |key: &str| message.get(key).and_then(Json::as_str).map(|s| Json::String(s.to_owned()));
    for (column, key) in [
        ("id", "messageId"),
        ("anonymous_id", "anonymousId"),
        ("user_id", "userId"),
        ("received_at", "receivedAt"),
        ("sent_at", "sentAt"),
        ("timestamp", "timestamp"),
        ("original_timestamp", "originalTimestamp"),
        ("group_id", "groupId"),
        ("previous_id", "previousId"),
    ] {
        if let Some(value) = text(key).filter(|v| v.as_str() != Some("")) {
            standard.insert(column.into(), value);
        }
    }
    if let Some(Json::Object(context)) = message.get("context") {
        flatten_into(&mut standard, "context", context);
    }
    match kind {
        "track" => {
            let event = text("event").unwrap_or(Json::String(String::new()));
            standard.insert("event".into(), Json::String(snake(event.as_str().unwrap_or_default())));
            standard.insert("event_text".into(), event);
        }
        "page" | "screen" => {
            for key in ["name", "category"] {
                if let Some(value) = text(key) {
                    standard.insert(key.into(), value);
                }
            }
        }
        _ => {}
    }
    for (column, value) in extra {
        standard.insert(column.clone(), value.clone());
    }
    let object = |key: &str| match message.get(key) {
        Some(Json::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    let rows = match layout {
        Layout::SourceTable => {
            let mut values = standard;
            values.insert("type".into(), Json::String(kind.to_owned()));
            for key in ["properties", "traits"] {
                flatten_into(&mut values, key, &object(key));
            }
            vec![Row { table: table_name(source), merge: Merge::Keep, values }]
        }
        Layout::Segment => segment_rows(kind, standard, &object("properties"), &object("traits")),
    };
    match rows.iter().find(|row| row.values.len() > MAX_COLUMNS) {
        Some(row) => {
            Err(format!("the message needs {} columns in {}, more than {MAX_COLUMNS}", row.values.len(), row.table))
        }
        None => Ok(rows),
    }
}

/// The rows of Segment's layout: the type's table with properties (or traits) un-prefixed;
/// a track also in `tracks`, an identify with a user id also merged into `users`.
fn segment_rows(
    kind: &str,
    standard: Map<String, Json>,
    properties: &Map<String, Json>,
    traits: &Map<String, Json>,
) -> Vec<Row> {
    let row = |table: String, merge, own: &Map<String, Json>| {
        let mut values = standard.clone();
        let taken: Vec<String> = values.keys().cloned().collect();
        for (column, value) in flattened(own) {
            let column = if taken.contains(&column) { format!("_{column}") } else { column };
            values.insert(column, value);
        }
        Row { table, merge, values }
    };
    match kind {
        "track" => {
            let event = table_name(standard.get("event").and_then(Json::as_str).unwrap_or_default());
            let event_table = match SEGMENT_TABLES.contains(&event.as_str()) {
                true => format!("_{event}"),
                false => event,
            };
            vec![row("tracks".into(), Merge::Keep, &Map::new()), row(event_table, Merge::Keep, properties)]
        }
        "identify" => {
            let mut rows = vec![row("identifies".into(), Merge::Keep, traits)];
            if let Some(user_id) = standard.get("user_id").cloned() {
                let mut user = row("users".into(), Merge::Latest, traits);
                user.values.remove("anonymous_id");
                user.values.insert("id".into(), user_id);
                rows.push(user);
            }
            rows
        }
        "page" => vec![row("pages".into(), Merge::Keep, properties)],
        "screen" => vec![row("screens".into(), Merge::Keep, properties)],
        "group" => vec![row("groups".into(), Merge::Keep, traits)],
        _ => vec![row("aliases".into(), Merge::Keep, traits)],
    }
}

/// `object` flattened: nested objects joined with `_`, names in snake_case.
fn flattened(object: &Map<String, Json>) -> Map<String, Json> {
    let mut out = Map::new();
    flatten_into(&mut out, "", object);
    out
}

/// Adds `object`'s values to `out` under `prefix`, nested objects flattened.
fn flatten_into(out: &mut Map<String, Json>, prefix: &str, object: &Map<String, Json>) {
    for (key, value) in object {
        let name = match prefix {
            "" => snake(key),
            prefix => format!("{prefix}_{}", snake(key)),
        };
        match value {
            Json::Null => {}
            Json::Object(inner) => flatten_into(out, &name, inner),
            value => {
                out.insert(column_name(name), value.clone());
            }
        }
    }
}

/// A column name PostgreSQL keeps whole: a leading digit gets a `_`, and a name longer than
/// 63 bytes is cut at a character boundary.
fn column_name(name: String) -> String {
    let name = match name.chars().next() {
        Some(c) if c.is_ascii_digit() => format!("_{name}"),
        None => "_".to_owned(),
        _ => name,
    };
    let mut end = name.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// A table name from a source or event name.
pub fn table_name(name: &str) -> String {
    column_name(snake(name))
}

/// Segment's snake_case (`segmentio/go-snakecase`): ASCII letters and digits only, anything
/// else a separator; a word starts at a capital that follows a lowercase letter or a digit,
/// so a run of capitals stays with the letters after it (`productID` → `product_id`,
/// `HTMLParser` → `htmlparser`); lowercase, joined with single `_`.
pub fn snake(name: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut previous: Option<char> = None;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            previous = None;
            continue;
        }
        let boundary = c.is_ascii_uppercase() && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.push(c.to_ascii_lowercase());
        previous = Some(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words.join("_")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_segments_snake_case() {
        for (name, snaked) in [
            ("sampleText", "sample_text"),
            ("SAMPLE 2 TEXT", "sample_2_text"),
            ("___$$Base64Encode", "base64_encode"),
            ("something.com", "something_com"),
            ("$something%", "something"),
            ("productID", "product_id"),
            ("HTMLParser", "htmlparser"),
            ("Order Completed", "order_completed"),
        ] {
            assert_eq!(snake(name), snaked, "{name}");
        }
        assert_eq!(table_name("9mega"), "_9mega");
        assert_eq!(table_name(&"x".repeat(70)).len(), 63);
    }

    fn message(value: Json) -> Map<String, Json> {
        value.as_object().expect("an object").clone()
    }

    /// Segment's worked example (reference §4.3).
    #[test]
    fn a_track_goes_to_tracks_and_its_event_table() {
        let track = message(json!({
            "type": "track", "messageId": "m1", "userId": "u1", "event": "Order Completed",
            "properties": {"revenue": 12.5, "nested": {"a": 1}, "arr": [1, 2], "userId": "x", "gone": null},
            "context": {"ip": "1.2.3.4", "library": {"name": "analytics-python", "version": "2.4.0"}},
            "receivedAt": "2026-12-01T10:00:00.000Z", "sentAt": "2026-12-01T10:00:00.000Z",
            "timestamp": "2026-12-01T09:59:59.000Z", "originalTimestamp": "2026-12-01T09:59:59.000Z",
        }));
        let rows = rows(Layout::Segment, "shop", &track, &[]).expect("laid out");
        assert_eq!(rows.len(), 2);
        let (tracks, event) = (&rows[0], &rows[1]);
        assert_eq!((tracks.table.as_str(), event.table.as_str()), ("tracks", "order_completed"));
        assert_eq!(tracks.values["id"], "m1");
        assert_eq!(tracks.values["event"], "order_completed");
        assert_eq!(tracks.values["event_text"], "Order Completed");
        assert_eq!(tracks.values["context_library_name"], "analytics-python");
        assert!(!tracks.values.contains_key("revenue"), "tracks has the standard columns only");
        assert_eq!(event.values["revenue"], 12.5);
        assert_eq!(event.values["nested_a"], 1);
        assert_eq!(event.values["arr"], json!([1, 2]));
        assert_eq!(event.values["_user_id"], "x", "a property named like a standard column is kept");
        assert!(!event.values.contains_key("gone"), "null makes no column");
    }

    #[test]
    fn an_identify_merges_into_users_and_polkus_layout_keeps_one_table() {
        let identify = message(json!({
            "type": "identify", "messageId": "m2", "userId": "u1", "anonymousId": "a1",
            "traits": {"name": "Ada", "address": {"city": "London"}},
        }));
        let rows =
            rows(Layout::Segment, "server", &identify, &[("uuid_ts".to_owned(), json!("now"))]).expect("laid out");
        let tables: Vec<_> = rows.iter().map(|r| (r.table.as_str(), r.merge)).collect();
        assert_eq!(tables, [("identifies", Merge::Keep), ("users", Merge::Latest)]);
        assert_eq!(rows[1].values["id"], "u1");
        assert_eq!(rows[1].values["address_city"], "London");
        assert!(!rows[1].values.contains_key("anonymous_id"));
        assert_eq!(rows[1].values["uuid_ts"], "now");

        let rows = rows_of(Layout::SourceTable, &identify);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].table, "server");
        assert_eq!(rows[0].values["type"], "identify");
        assert_eq!(rows[0].values["traits_name"], "Ada");
        assert_eq!(rows[0].values["traits_address_city"], "London");
    }

    fn rows_of(layout: Layout, message: &Map<String, Json>) -> Vec<Row> {
        rows(layout, "server", message, &[]).expect("laid out")
    }

    #[test]
    fn a_message_wider_than_the_limit_is_refused() {
        let properties: Map<String, Json> = (0..MAX_COLUMNS).map(|i| (format!("p{i}"), json!(i))).collect();
        let track =
            message(json!({"type": "track", "messageId": "m", "userId": "u", "event": "E", "properties": properties}));
        let error = rows(Layout::Segment, "s", &track, &[]).expect_err("too wide");
        assert!(error.contains("more than 200"), "{error}");
    }

    #[test]
    fn column_types_come_from_values() {
        assert_eq!(ColumnType::of(&json!(1)), Some(ColumnType::Numeric));
        assert_eq!(ColumnType::of(&json!("2026-12-01T10:00:00.000Z")), Some(ColumnType::Timestamp));
        assert_eq!(ColumnType::of(&json!("2026-12-01")), Some(ColumnType::Text));
        assert_eq!(ColumnType::of(&json!([1])), Some(ColumnType::Json));
        assert_eq!(ColumnType::of(&json!(null)), None);
    }
}
