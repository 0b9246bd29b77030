//! Column values in PostgreSQL's text output format (what `pgoutput` sends) as the record
//! values the source reads for the same column. The capture session fixes the settings that
//! shape the text: ISO dates, UTC, hex `bytea`, shortest exact floats.

use syncline_core::record::{DecodeError, FieldType, Value};

/// `character(n)`: the source reads it cast to `text`, which drops the padding.
const BPCHAR: u32 = 1042;

/// The value of a column of type `type_oid`, read as `field_type`, from its text output.
pub(super) fn value(field_type: &FieldType, type_oid: u32, text: &str) -> Result<Value, DecodeError> {
    match field_type {
        FieldType::Text if type_oid == BPCHAR => Ok(Value::Text(text.trim_end_matches(' ').to_owned())),
        FieldType::List(element) => array(element, text).map(Value::List),
        other => scalar(other, text),
    }
}

fn scalar(field_type: &FieldType, text: &str) -> Result<Value, DecodeError> {
    match field_type {
        FieldType::Bytes => bytea(text).map(Value::Bytes),
        other => Value::parse(other, text),
    }
}

/// `bytea` in hex output (`\x00ff`).
fn bytea(text: &str) -> Result<Vec<u8>, DecodeError> {
    let digits = text.strip_prefix("\\x").ok_or_else(|| DecodeError(format!("bytea {text:?} is not in hex form")))?;
    hex::decode(digits).map_err(|e| DecodeError(format!("bytea: {e}")))
}

/// A one-dimensional array literal (`{1,NULL,"a \"b\""}`, optionally after `[lower:upper]=`).
fn array(element: &FieldType, text: &str) -> Result<Vec<Value>, DecodeError> {
    let bad = |why: &str| DecodeError(format!("not a valid {}[]: {why}", element.postgres_name()));
    let body = match text.starts_with('[') {
        true => text.split_once('=').map(|(_, body)| body).ok_or_else(|| bad("bounds without a value"))?,
        false => text,
    };
    let inner = body.strip_prefix('{').and_then(|b| b.strip_suffix('}')).ok_or_else(|| bad("no braces"))?;
    if inner.starts_with('{') {
        return Err(bad("only one dimension is supported"));
    }
    let mut items = Vec::new();
    if inner.is_empty() {
        return Ok(items);
    }
    let mut chars = inner.chars();
    loop {
        let mut item = String::new();
        let mut quoted = false;
        let mut next = chars.next();
        if next == Some('"') {
            quoted = true;
            loop {
                match chars.next() {
                    Some('\\') => item.push(chars.next().ok_or_else(|| bad("unterminated escape"))?),
                    Some('"') => break,
                    Some(c) => item.push(c),
                    None => return Err(bad("unterminated quote")),
                }
            }
            next = chars.next();
        } else {
            while let Some(c) = next.filter(|&c| c != ',') {
                item.push(c);
                next = chars.next();
            }
        }
        items.push(match !quoted && item == "NULL" {
            true => Value::Null,
            false => scalar(element, &item)?,
        });
        match next {
            None => return Ok(items),
            Some(',') => {}
            Some(c) => return Err(bad(&format!("{c:?} after an element"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(field_type: FieldType, oid: u32, text: &str) -> Value {
        value(&field_type, oid, text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn scalars_read_as_the_source_reads_them() {
        let ts = chrono::NaiveDate::from_ymd_opt(1969, 7, 20)
            .and_then(|d| d.and_hms_micro_opt(20, 17, 40, 123_456))
            .expect("a timestamp");
        assert_eq!(parsed(FieldType::Bool, 16, "t"), Value::Bool(true));
        assert_eq!(parsed(FieldType::Int64, 20, "-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(parsed(FieldType::Float64, 701, "-Infinity"), Value::Float(f64::NEG_INFINITY));
        assert_eq!(parsed(FieldType::Float64, 701, "0.1"), Value::Float(0.1));
        assert_eq!(parsed(FieldType::Numeric, 1700, "1.50"), Value::Decimal("1.50".into()));
        assert_eq!(parsed(FieldType::Text, 25, "naïve 🎉"), Value::Text("naïve 🎉".into()));
        assert_eq!(parsed(FieldType::Text, BPCHAR, "ab   "), Value::Text("ab".into()));
        assert_eq!(parsed(FieldType::Bytes, 17, "\\x00ff01"), Value::Bytes(vec![0, 255, 1]));
        assert_eq!(parsed(FieldType::Bytes, 17, "\\x"), Value::Bytes(vec![]));
        assert_eq!(parsed(FieldType::Date, 1082, "1969-07-20"), Value::Date(ts.date()));
        assert_eq!(parsed(FieldType::Time, 1083, "20:17:40.123456"), Value::Time(ts.time()));
        assert_eq!(parsed(FieldType::Timestamp, 1114, "1969-07-20 20:17:40.123456"), Value::Timestamp(ts));
        let tz = Value::TimestampTz(ts.and_utc());
        assert_eq!(parsed(FieldType::TimestampTz, 1184, "1969-07-20 20:17:40.123456+00"), tz);
        let uuid = "01234567-89ab-cdef-0123-456789abcdef";
        assert_eq!(parsed(FieldType::Uuid, 2950, uuid), Value::Uuid(uuid.parse().expect("a uuid")));
        let json = serde_json::json!({"a": [1, "x"], "b": null});
        assert_eq!(parsed(FieldType::Jsonb, 3802, r#"{"a": [1, "x"], "b": null}"#), Value::Json(json));
    }

    #[test]
    fn arrays_with_quotes_escapes_and_nulls() {
        let ints = FieldType::List(Box::new(FieldType::Int32));
        assert_eq!(
            parsed(ints.clone(), 1007, "{1,NULL,3}"),
            Value::List(vec![Value::Int(1), Value::Null, Value::Int(3)])
        );
        assert_eq!(parsed(ints.clone(), 1007, "{}"), Value::List(vec![]));
        assert_eq!(parsed(ints.clone(), 1007, "[0:1]={7,8}"), Value::List(vec![Value::Int(7), Value::Int(8)]));
        let texts = FieldType::List(Box::new(FieldType::Text));
        let expected = ["a b", "q\"uote", "back\\slash", "NULL", "", "é,"].map(|t| Value::Text(t.into()));
        let literal = r#"{"a b","q\"uote","back\\slash","NULL","","é,"}"#;
        assert_eq!(parsed(texts.clone(), 1009, literal), Value::List(expected.to_vec()));
        let stamps = FieldType::List(Box::new(FieldType::TimestampTz));
        let stamp = "2024-01-02T03:04:05Z".parse().expect("a timestamp");
        let value = parsed(stamps, 1185, r#"{"2024-01-02 03:04:05+00",NULL}"#);
        assert_eq!(value, Value::List(vec![Value::TimestampTz(stamp), Value::Null]));

        assert!(value_of(&ints, "{{1,2},{3,4}}").is_err(), "two dimensions");
        assert!(value_of(&ints, "{1,x}").is_err(), "not an integer");
        assert!(value_of(&texts, r#"{"open}"#).is_err(), "unterminated quote");
        assert!(value_of(&texts, r#"{"a"b}"#).is_err(), "junk after a quoted element");
        assert!(value_of(&ints, "1,2").is_err(), "no braces");
    }

    fn value_of(field_type: &FieldType, text: &str) -> Result<Value, DecodeError> {
        value(field_type, 0, text)
    }

    #[test]
    fn malformed_text_is_an_error() {
        assert!(value_of(&FieldType::Bytes, "00ff").is_err(), "escape-format bytea");
        assert!(value_of(&FieldType::Bytes, "\\x0").is_err(), "odd hex");
        assert!(value_of(&FieldType::Int32, "1.5").is_err());
        assert!(value_of(&FieldType::Date, "infinity").is_err());
    }
}
