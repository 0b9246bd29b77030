//! Single values: decoding a field's binary encoding into a [`Value`] and encoding it back.
//!
//! Every encoding is PostgreSQL's binary wire format for the field's type (see
//! [`FieldType::postgres_name`]). Decoding never substitutes: bytes that are not a valid value of
//! the type are a [`DecodeError`], which a [`Record`](super::Record) turns into an error naming
//! the field and the record.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use serde_json::Value as Json;

use super::{FieldType, numeric};

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// An exact decimal, as text (`-12.50`, `NaN`).
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Uuid(uuid::Uuid),
    Json(Json),
    List(Vec<Value>),
}

/// Bytes that are not a valid value of their type, or a value that does not fit a type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

fn bad(ty: &FieldType, why: impl std::fmt::Display) -> DecodeError {
    DecodeError(format!("not a valid {}: {why}", ty.postgres_name()))
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const POSTGRES_EPOCH_DAYS: i64 = 10_957;

fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("a valid date")
}

fn fixed<const N: usize>(ty: &FieldType, b: &[u8]) -> Result<[u8; N], DecodeError> {
    b.try_into().map_err(|_| bad(ty, format_args!("{} bytes, expected {N}", b.len())))
}

fn micros_to_timestamp(ty: &FieldType, micros: i64) -> Result<NaiveDateTime, DecodeError> {
    epoch()
        .checked_add_signed(chrono::Duration::microseconds(micros))
        .ok_or_else(|| bad(ty, "out of range (infinity?)"))
}

impl Value {
    /// Decodes one encoded value of type `ty` (`None` is NULL).
    pub fn decode(ty: &FieldType, bytes: Option<&[u8]>) -> Result<Value, DecodeError> {
        let Some(b) = bytes else { return Ok(Value::Null) };
        Ok(match ty {
            FieldType::Bool => Value::Bool(fixed::<1>(ty, b)?[0] != 0),
            FieldType::Int16 => Value::Int(i16::from_be_bytes(fixed(ty, b)?) as i64),
            FieldType::Int32 => Value::Int(i32::from_be_bytes(fixed(ty, b)?) as i64),
            FieldType::Int64 => Value::Int(i64::from_be_bytes(fixed(ty, b)?)),
            FieldType::Float32 => Value::Float(f32::from_be_bytes(fixed(ty, b)?) as f64),
            FieldType::Float64 => Value::Float(f64::from_be_bytes(fixed(ty, b)?)),
            FieldType::Numeric | FieldType::Decimal { .. } => {
                Value::Decimal(numeric::decode(b).ok_or_else(|| bad(ty, "malformed digits"))?)
            }
            FieldType::Text => Value::Text(std::str::from_utf8(b).map_err(|e| bad(ty, e))?.to_owned()),
            FieldType::Bytes => Value::Bytes(b.to_vec()),
            FieldType::Uuid => Value::Uuid(uuid::Uuid::from_bytes(fixed(ty, b)?)),
            FieldType::Date => {
                let days = i32::from_be_bytes(fixed(ty, b)?) as i64;
                let date = DateTime::from_timestamp((days + POSTGRES_EPOCH_DAYS) * 86_400, 0)
                    .ok_or_else(|| bad(ty, "out of range (infinity?)"))?;
                Value::Date(date.date_naive())
            }
            FieldType::Time => {
                let micros = i64::from_be_bytes(fixed(ty, b)?);
                let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
                let time = u32::try_from(secs)
                    .ok()
                    .and_then(|s| NaiveTime::from_num_seconds_from_midnight_opt(s, frac as u32 * 1000))
                    .ok_or_else(|| bad(ty, "out of range"))?;
                Value::Time(time)
            }
            FieldType::Timestamp => Value::Timestamp(micros_to_timestamp(ty, i64::from_be_bytes(fixed(ty, b)?))?),
            FieldType::TimestampTz => {
                Value::TimestampTz(micros_to_timestamp(ty, i64::from_be_bytes(fixed(ty, b)?))?.and_utc())
            }
            FieldType::Json => Value::Json(serde_json::from_slice(b).map_err(|e| bad(ty, e))?),
            FieldType::Jsonb => match b.split_first() {
                Some((1, text)) => Value::Json(serde_json::from_slice(text).map_err(|e| bad(ty, e))?),
                _ => return Err(bad(ty, "unknown jsonb version")),
            },
            FieldType::List(element) => Value::List(decode_array(ty, element, b)?),
        })
    }

    /// Appends the encoding of `self` as a value of type `ty` (not its length prefix). NULL has no
    /// encoding: the caller writes it as length `-1`. Integers and floats convert between widths
    /// when the value fits; text parses into numbers, dates, times, uuids and JSON.
    pub fn encode(&self, ty: &FieldType, out: &mut BytesMut) -> Result<(), DecodeError> {
        let mismatch = || bad(ty, format_args!("cannot hold {}", self.describe()));
        match (ty, self) {
            (_, Value::Null) => return Err(bad(ty, "NULL has no encoding")),
            (FieldType::Bool, Value::Bool(v)) => out.put_u8(*v as u8),
            (FieldType::Int16, Value::Int(v)) => out.put_i16(i16::try_from(*v).map_err(|_| mismatch())?),
            (FieldType::Int32, Value::Int(v)) => out.put_i32(i32::try_from(*v).map_err(|_| mismatch())?),
            (FieldType::Int64, Value::Int(v)) => out.put_i64(*v),
            (FieldType::Float32, Value::Float(v)) => out.put_f32(*v as f32),
            (FieldType::Float64, Value::Float(v)) => out.put_f64(*v),
            (FieldType::Float32, Value::Int(v)) => out.put_f32(*v as f32),
            (FieldType::Float64, Value::Int(v)) => out.put_f64(*v as f64),
            (FieldType::Numeric | FieldType::Decimal { .. }, Value::Decimal(text) | Value::Text(text)) => {
                numeric::encode(text, out).ok_or_else(mismatch)?
            }
            (FieldType::Numeric | FieldType::Decimal { .. }, Value::Int(v)) => {
                numeric::encode(&v.to_string(), out).ok_or_else(mismatch)?
            }
            (FieldType::Text, Value::Text(v) | Value::Decimal(v)) => out.put_slice(v.as_bytes()),
            (FieldType::Bytes, Value::Bytes(v)) => out.put_slice(v),
            (FieldType::Uuid, Value::Uuid(v)) => out.put_slice(v.as_bytes()),
            (FieldType::Date, Value::Date(d)) => {
                let days = d.signed_duration_since(epoch().date()).num_days();
                out.put_i32(i32::try_from(days).map_err(|_| mismatch())?)
            }
            (FieldType::Time, Value::Time(t)) => {
                out.put_i64(t.num_seconds_from_midnight() as i64 * 1_000_000 + (t.nanosecond() / 1000) as i64)
            }
            (FieldType::Timestamp, Value::Timestamp(ts)) => out.put_i64(timestamp_micros(ts).ok_or_else(mismatch)?),
            (FieldType::TimestampTz, Value::TimestampTz(ts)) => {
                out.put_i64(timestamp_micros(&ts.naive_utc()).ok_or_else(mismatch)?)
            }
            (FieldType::Json, Value::Json(v)) => out.put_slice(v.to_string().as_bytes()),
            (FieldType::Jsonb, Value::Json(v)) => {
                out.put_u8(1);
                out.put_slice(v.to_string().as_bytes())
            }
            (FieldType::List(element), Value::List(items)) => encode_array(ty, element, items, out)?,
            (_, Value::Text(text)) => return Self::parse(ty, text).map_err(|_| mismatch())?.encode(ty, out),
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    /// Parses the text form of a value of type `ty` (as a database prints it).
    pub fn parse(ty: &FieldType, text: &str) -> Result<Value, DecodeError> {
        let fail = |e: &dyn std::fmt::Display| bad(ty, format_args!("{text:?}: {e}"));
        Ok(match ty {
            FieldType::Bool => match text {
                "t" | "true" | "1" => Value::Bool(true),
                "f" | "false" | "0" => Value::Bool(false),
                _ => return Err(fail(&"not a boolean")),
            },
            FieldType::Int16 | FieldType::Int32 | FieldType::Int64 => Value::Int(text.parse().map_err(|e| fail(&e))?),
            FieldType::Float32 | FieldType::Float64 => Value::Float(text.parse().map_err(|e| fail(&e))?),
            FieldType::Numeric | FieldType::Decimal { .. } => Value::Decimal(text.to_owned()),
            FieldType::Text => Value::Text(text.to_owned()),
            FieldType::Bytes => Value::Bytes(text.as_bytes().to_vec()),
            FieldType::Uuid => Value::Uuid(text.parse().map_err(|e| fail(&e))?),
            FieldType::Date => Value::Date(text.parse().map_err(|e| fail(&e))?),
            FieldType::Time => Value::Time(text.parse().map_err(|e| fail(&e))?),
            FieldType::Timestamp => Value::Timestamp(
                NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                    .or_else(|_| text.parse())
                    .map_err(|e| fail(&e))?,
            ),
            FieldType::TimestampTz => Value::TimestampTz(
                DateTime::parse_from_rfc3339(text)
                    .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z"))
                    .map_err(|e| fail(&e))?
                    .to_utc(),
            ),
            FieldType::Json | FieldType::Jsonb => Value::Json(serde_json::from_str(text).map_err(|e| fail(&e))?),
            FieldType::List(_) => return Err(fail(&"lists have no text form here")),
        })
    }

    /// The value as JSON (decimals stay exact as strings, bytes become hex).
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(v) => Json::Bool(*v),
            Value::Int(v) => Json::from(*v),
            Value::Float(v) => {
                serde_json::Number::from_f64(*v).map_or_else(|| Json::String(v.to_string()), Json::Number)
            }
            Value::Json(v) => v.clone(),
            Value::List(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            other => Json::String(other.to_string()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Text(t) if t.len() > 40 => format!("text {:?}…", t.chars().take(40).collect::<String>()),
            Value::Text(t) => format!("text {t:?}"),
            other => format!("{other:?}"),
        }
    }
}

fn timestamp_micros(ts: &NaiveDateTime) -> Option<i64> {
    ts.signed_duration_since(epoch()).num_microseconds()
}

/// Decodes a one-dimensional PostgreSQL array.
fn decode_array(ty: &FieldType, element: &FieldType, b: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let word = |at: usize| -> Result<i32, DecodeError> {
        b.get(at..at + 4).map(|w| i32::from_be_bytes([w[0], w[1], w[2], w[3]])).ok_or_else(|| bad(ty, "truncated"))
    };
    let dims = word(0)?;
    if dims == 0 {
        return Ok(Vec::new());
    }
    if dims != 1 {
        return Err(bad(ty, format_args!("{dims} dimensions; only one is supported")));
    }
    let count = usize::try_from(word(12)?).map_err(|_| bad(ty, "negative length"))?;
    let mut pos = 20;
    let mut items = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let len = word(pos)?;
        pos += 4;
        let value = match usize::try_from(len) {
            Ok(len) => {
                let bytes = b.get(pos..pos + len).ok_or_else(|| bad(ty, "truncated"))?;
                pos += len;
                Some(bytes)
            }
            Err(_) => None,
        };
        items.push(Value::decode(element, value)?);
    }
    Ok(items)
}

/// Encodes a one-dimensional PostgreSQL array of `element`s.
fn encode_array(ty: &FieldType, element: &FieldType, items: &[Value], out: &mut BytesMut) -> Result<(), DecodeError> {
    let oid = element.postgres_oid().ok_or_else(|| bad(ty, "arrays of arrays are not supported"))?;
    let has_null = items.contains(&Value::Null);
    out.put_i32(1);
    out.put_i32(has_null as i32);
    out.put_u32(oid);
    out.put_i32(items.len() as i32);
    out.put_i32(1);
    for item in items {
        if *item == Value::Null {
            out.put_i32(-1);
            continue;
        }
        let at = out.len();
        out.put_i32(0);
        item.encode(element, out)?;
        let len = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Decimal(v) | Value::Text(v) => f.write_str(v),
            Value::Bytes(v) => write!(f, "\\x{}", hex::encode(v)),
            Value::Date(v) => write!(f, "{v}"),
            Value::Time(v) => write!(f, "{v}"),
            Value::Timestamp(v) => write!(f, "{v}"),
            Value::TimestampTz(v) => f.write_str(&v.to_rfc3339()),
            Value::Uuid(v) => write!(f, "{v}"),
            Value::Json(v) => write!(f, "{v}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(ty: FieldType, value: Value) {
        let mut out = BytesMut::new();
        value.encode(&ty, &mut out).unwrap_or_else(|e| panic!("{ty:?} {value:?}: {e}"));
        assert_eq!(Value::decode(&ty, Some(&out)).expect("decodes"), value, "{ty:?}");
    }

    #[test]
    fn every_type_round_trips() {
        let ts =
            NaiveDate::from_ymd_opt(1969, 7, 20).and_then(|d| d.and_hms_micro_opt(20, 17, 40, 123_456)).expect("ts");
        round_trip(FieldType::Bool, Value::Bool(true));
        round_trip(FieldType::Int16, Value::Int(-7));
        round_trip(FieldType::Int32, Value::Int(i32::MIN as i64));
        round_trip(FieldType::Int64, Value::Int(i64::MAX));
        round_trip(FieldType::Float32, Value::Float(1.5));
        round_trip(FieldType::Float64, Value::Float(-0.1));
        round_trip(FieldType::Decimal { precision: 38, scale: 10 }, Value::Decimal("-1234567890.0123456789".into()));
        round_trip(FieldType::Numeric, Value::Decimal("0.0005".into()));
        round_trip(FieldType::Text, Value::Text("naïve 🎉".into()));
        round_trip(FieldType::Bytes, Value::Bytes(vec![0, 255, 1]));
        round_trip(FieldType::Date, Value::Date(ts.date()));
        round_trip(FieldType::Time, Value::Time(ts.time()));
        round_trip(FieldType::Timestamp, Value::Timestamp(ts));
        round_trip(FieldType::TimestampTz, Value::TimestampTz(ts.and_utc()));
        round_trip(FieldType::Uuid, Value::Uuid(uuid::Uuid::new_v4()));
        round_trip(FieldType::Json, Value::Json(serde_json::json!({"a": [1, "x"]})));
        round_trip(FieldType::Jsonb, Value::Json(serde_json::json!({"nested": {"b": null}})));
        round_trip(
            FieldType::List(Box::new(FieldType::Int32)),
            Value::List(vec![Value::Int(1), Value::Null, Value::Int(3)]),
        );
        round_trip(FieldType::List(Box::new(FieldType::Text)), Value::List(vec![]));
    }

    #[test]
    fn bad_bytes_are_errors_not_substitutes() {
        assert!(Value::decode(&FieldType::Float64, Some(&[1, 2, 3])).is_err());
        assert!(Value::decode(&FieldType::Text, Some(&[0xff, 0xfe])).is_err());
        assert!(Value::decode(&FieldType::Uuid, Some(&[1; 3])).is_err());
        assert!(Value::decode(&FieldType::Json, Some(b"{")).is_err());
        assert!(Value::decode(&FieldType::Timestamp, Some(&i64::MAX.to_be_bytes())).is_err());
        assert!(Value::Int(70_000).encode(&FieldType::Int16, &mut BytesMut::new()).is_err());
        assert!(Value::Text("abc".into()).encode(&FieldType::Int64, &mut BytesMut::new()).is_err());
    }

    #[test]
    fn text_parses_into_the_field_type() {
        let mut out = BytesMut::new();
        Value::Text("2024-02-29 10:00:00.5".into()).encode(&FieldType::Timestamp, &mut out).expect("parses");
        assert_eq!(
            Value::decode(&FieldType::Timestamp, Some(&out)).expect("decodes").to_string(),
            "2024-02-29 10:00:00.500"
        );
    }
}
