//! Records in flight: schemas, field types and bounded record batches.
//!
//! A record is encoded as one PostgreSQL binary `COPY` tuple: a big-endian `i16` field count,
//! then per field an `i32` length (`-1` for NULL) and the value in PostgreSQL's binary wire format
//! for the field's [`FieldType`]. This is the canonical encoding between every source and
//! destination: a PostgreSQL → PostgreSQL sync passes the bytes through untouched, and other
//! connectors decode single values on demand with [`Value::decode`].

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// The logical type of a field, which fixes the binary encoding of its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Numeric,
    Text,
    Bytes,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Jsonb,
}

impl FieldType {
    /// The PostgreSQL type whose binary format this type uses.
    pub fn postgres_name(self) -> &'static str {
        match self {
            Self::Bool => "boolean",
            Self::Int16 => "smallint",
            Self::Int32 => "integer",
            Self::Int64 => "bigint",
            Self::Float32 => "real",
            Self::Float64 => "double precision",
            Self::Numeric => "numeric",
            Self::Text => "text",
            Self::Bytes => "bytea",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
            Self::TimestampTz => "timestamptz",
            Self::Uuid => "uuid",
            Self::Json => "json",
            Self::Jsonb => "jsonb",
        }
    }

    /// The Polytomic field type name shown in the API (`string`, `number`, …).
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Bool => "boolean",
            Self::Int16 | Self::Int32 | Self::Int64 | Self::Float32 | Self::Float64 | Self::Numeric => "number",
            Self::Text | Self::Uuid => "string",
            Self::Bytes => "binary",
            Self::Date | Self::Timestamp | Self::TimestampTz => "datetime",
            Self::Json | Self::Jsonb => "object",
        }
    }

    /// How identity values of this type are ordered, or `None` if it cannot be an identity.
    pub fn key_order(self) -> Option<KeyOrder> {
        match self {
            Self::Int16 | Self::Int32 | Self::Int64 | Self::Date | Self::Timestamp | Self::TimestampTz => {
                Some(KeyOrder::SignedBigEndian)
            }
            Self::Text | Self::Uuid | Self::Bytes | Self::Bool => Some(KeyOrder::Bytewise),
            Self::Float32 | Self::Float64 | Self::Numeric | Self::Json | Self::Jsonb => None,
        }
    }
}

/// How two encoded identity values compare, matching the order the source sorts them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOrder {
    /// Big-endian two's-complement integers of any width (integers, dates, timestamps).
    SignedBigEndian,
    /// Plain byte order (text in the "C" collation, uuid, bytea, boolean).
    Bytewise,
}

impl KeyOrder {
    /// Compares two encoded keys.
    pub fn compare(self, a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        match self {
            Self::Bytewise => a.cmp(b),
            Self::SignedBigEndian => signed(a).cmp(&signed(b)),
        }
    }
}

fn signed(bytes: &[u8]) -> i64 {
    let mut buf = [if bytes.first().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 }; 8];
    let n = bytes.len().min(8);
    buf[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    i64::from_be_bytes(buf)
}

/// A named, typed field of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub field_type: FieldType,
}

/// The fields of every record in a batch, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schema {
    pub fields: Vec<Field>,
}

impl Schema {
    /// The position of the field called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// One record: a view of a binary tuple inside a batch.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    bytes: &'a [u8],
}

impl<'a> Record<'a> {
    /// The encoded tuple, ready for a binary `COPY`.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The encoded values in field order (`None` for NULL).
    pub fn values(&self) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        let bytes = self.bytes;
        let count = i16::from_be_bytes([bytes[0], bytes[1]]).max(0) as usize;
        let mut pos = 2;
        (0..count).map(move |_| {
            let len = i32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]);
            pos += 4;
            if len < 0 {
                return None;
            }
            let value = &bytes[pos..pos + len as usize];
            pos += len as usize;
            Some(value)
        })
    }

    /// The encoded value of field `index` (`None` for NULL or out of range).
    pub fn value(&self, index: usize) -> Option<&'a [u8]> {
        self.values().nth(index).flatten()
    }
}

/// A bounded batch of records sharing one schema.
#[derive(Debug, Clone)]
pub struct RecordBatch {
    schema: Arc<Schema>,
    data: Bytes,
    /// Start offset of each record in `data`, followed by `data.len()`.
    offsets: Vec<u32>,
}

impl RecordBatch {
    /// The batch's schema.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The encoded tuples of every record, back to back.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Record `index`.
    pub fn record(&self, index: usize) -> Record<'_> {
        let (start, end) = (self.offsets[index] as usize, self.offsets[index + 1] as usize);
        Record { bytes: &self.data[start..end] }
    }

    /// Every record in order.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        (0..self.len()).map(|i| self.record(i))
    }

    /// The encoded tuples of records `range`, back to back.
    pub fn slice_data(&self, range: std::ops::Range<usize>) -> Bytes {
        self.data.slice(self.offsets[range.start] as usize..self.offsets[range.end] as usize)
    }

    /// Rebuilds a batch from its schema and concatenated tuples, checking their framing.
    pub fn from_tuples(schema: Arc<Schema>, data: Bytes) -> Result<Self, RecordError> {
        let mut offsets = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            offsets.push(pos as u32);
            pos += tuple_len(&data[pos..], schema.fields.len())?.ok_or(RecordError::Truncated)?;
        }
        offsets.push(pos as u32);
        Ok(Self { schema, data, offsets })
    }
}

/// A malformed record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record has {found} fields, expected {expected}")]
    FieldCount { found: i16, expected: usize },
    #[error("record is truncated")]
    Truncated,
}

/// The length of the complete tuple at the start of `bytes`, `None` if it is not all there yet.
pub fn tuple_len(bytes: &[u8], expected_fields: usize) -> Result<Option<usize>, RecordError> {
    if bytes.len() < 2 {
        return Ok(None);
    }
    let count = i16::from_be_bytes([bytes[0], bytes[1]]);
    if count < 0 || count as usize != expected_fields {
        return Err(RecordError::FieldCount { found: count, expected: expected_fields });
    }
    let mut pos = 2;
    for _ in 0..count {
        let Some(len) = bytes.get(pos..pos + 4) else { return Ok(None) };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        pos += 4 + len.max(0) as usize;
    }
    Ok((pos <= bytes.len()).then_some(pos))
}

/// Builds a [`RecordBatch`] one record at a time.
#[derive(Debug)]
pub struct RecordBatchBuilder {
    schema: Arc<Schema>,
    data: BytesMut,
    offsets: Vec<u32>,
}

impl RecordBatchBuilder {
    /// An empty builder with room for about `bytes` of data.
    pub fn with_capacity(schema: Arc<Schema>, bytes: usize) -> Self {
        Self { schema, data: BytesMut::with_capacity(bytes), offsets: vec![0] }
    }

    /// Appends one already-encoded tuple.
    pub fn push_tuple(&mut self, tuple: &[u8]) {
        self.data.extend_from_slice(tuple);
        self.offsets.push(self.data.len() as u32);
    }

    /// Appends a record from encoded values (`None` for NULL).
    pub fn push_values<'v>(&mut self, values: impl IntoIterator<Item = Option<&'v [u8]>>) {
        let start = self.data.len();
        self.data.put_i16(0);
        let mut count: i16 = 0;
        for value in values {
            count += 1;
            match value {
                Some(v) => {
                    self.data.put_i32(v.len() as i32);
                    self.data.extend_from_slice(v);
                }
                None => self.data.put_i32(-1),
            }
        }
        self.data[start..start + 2].copy_from_slice(&count.to_be_bytes());
        self.offsets.push(self.data.len() as u32);
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of encoded data so far.
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// Finishes the batch.
    pub fn finish(self) -> RecordBatch {
        RecordBatch { schema: self.schema, data: self.data.freeze(), offsets: self.offsets }
    }
}

/// A decoded value, for display and for connectors that speak JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Json(serde_json::Value),
}

const POSTGRES_EPOCH_DAYS: i64 = 10_957;

impl Value {
    /// Decodes one encoded value of type `field_type`.
    pub fn decode(field_type: FieldType, bytes: Option<&[u8]>) -> Value {
        let Some(b) = bytes else { return Value::Null };
        match field_type {
            FieldType::Bool => Value::Bool(b.first().is_some_and(|v| *v != 0)),
            FieldType::Int16 | FieldType::Int32 | FieldType::Int64 => Value::Int(signed(b)),
            FieldType::Float32 => Value::Float(b.try_into().map(f32::from_be_bytes).unwrap_or(f32::NAN) as f64),
            FieldType::Float64 => Value::Float(b.try_into().map(f64::from_be_bytes).unwrap_or(f64::NAN)),
            FieldType::Text => Value::Text(String::from_utf8_lossy(b).into_owned()),
            FieldType::Bytes => Value::Bytes(b.to_vec()),
            FieldType::Uuid => Value::Text(uuid::Uuid::from_slice(b).map(|u| u.to_string()).unwrap_or_default()),
            FieldType::Date => {
                let days = signed(b) + POSTGRES_EPOCH_DAYS;
                let date = chrono::DateTime::from_timestamp(days * 86_400, 0).map(|d| d.date_naive().to_string());
                Value::Text(date.unwrap_or_default())
            }
            FieldType::Timestamp | FieldType::TimestampTz => {
                let micros = signed(b) + POSTGRES_EPOCH_DAYS * 86_400_000_000;
                let ts = chrono::DateTime::from_timestamp_micros(micros).map(|d| {
                    if field_type == FieldType::TimestampTz { d.to_rfc3339() } else { d.naive_utc().to_string() }
                });
                Value::Text(ts.unwrap_or_default())
            }
            FieldType::Json => Value::Json(serde_json::from_slice(b).unwrap_or(serde_json::Value::Null)),
            FieldType::Jsonb => Value::Json(serde_json::from_slice(b.get(1..).unwrap_or_default()).unwrap_or_default()),
            FieldType::Numeric => Value::Text(crate::numeric::decode(b)),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Text(v) => f.write_str(v),
            Value::Bytes(v) => write!(f, "\\x{}", hex::encode(v)),
            Value::Json(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(n: usize) -> Arc<Schema> {
        let fields = (0..n).map(|i| Field { name: format!("f{i}"), field_type: FieldType::Text }).collect();
        Arc::new(Schema { fields })
    }

    #[test]
    fn builds_and_reads_back_records() {
        let mut b = RecordBatchBuilder::with_capacity(schema(2), 64);
        b.push_values([Some(&b"a"[..]), None]);
        b.push_values([Some(&b""[..]), Some(&b"xyz"[..])]);
        let batch = b.finish();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.record(0).values().collect::<Vec<_>>(), vec![Some(&b"a"[..]), None]);
        assert_eq!(batch.record(1).value(1), Some(&b"xyz"[..]));
        let again = RecordBatch::from_tuples(schema(2), batch.data().clone()).expect("valid framing");
        assert_eq!(again.record(1).as_bytes(), batch.record(1).as_bytes());
        assert_eq!(batch.slice_data(1..2), Bytes::copy_from_slice(batch.record(1).as_bytes()));
    }

    #[test]
    fn detects_bad_framing() {
        assert_eq!(
            RecordBatch::from_tuples(schema(2), Bytes::from_static(&[0, 1, 0, 0, 0, 0])).unwrap_err(),
            RecordError::FieldCount { found: 1, expected: 2 }
        );
        assert_eq!(
            RecordBatch::from_tuples(schema(1), Bytes::from_static(&[0, 1, 0, 0, 0, 5, b'a'])).unwrap_err(),
            RecordError::Truncated
        );
    }

    #[test]
    fn orders_keys_like_the_database() {
        let k = |v: i64| v.to_be_bytes();
        assert!(KeyOrder::SignedBigEndian.compare(&k(-5), &k(3)).is_lt());
        assert!(KeyOrder::SignedBigEndian.compare(&(-1i32).to_be_bytes(), &(1i32).to_be_bytes()).is_lt());
        assert!(KeyOrder::Bytewise.compare(b"B", b"a").is_lt());
        assert!(KeyOrder::Bytewise.compare(b"ab", b"abc").is_lt());
    }

    #[test]
    fn decodes_values_for_display() {
        assert_eq!(Value::decode(FieldType::Int32, Some(&42i32.to_be_bytes())).to_string(), "42");
        assert_eq!(Value::decode(FieldType::Date, Some(&0i32.to_be_bytes())).to_string(), "2000-01-01");
        assert_eq!(Value::decode(FieldType::Text, None), Value::Null);
        assert_eq!(Value::decode(FieldType::Jsonb, Some(b"\x01{\"a\":1}")), Value::Json(serde_json::json!({"a": 1})));
    }
}
