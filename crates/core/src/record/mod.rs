//! Records in flight: schemas, field types, bounded record batches and identity keys.
//!
//! A record is encoded as one PostgreSQL binary `COPY` tuple: a big-endian `i16` field count,
//! then per field an `i32` length (`-1` for NULL) and the value in PostgreSQL's binary wire format
//! for the field's [`FieldType`]. This is the canonical encoding between every source and
//! destination: a PostgreSQL → PostgreSQL sync passes the bytes through untouched. Other
//! connectors build records with [`RecordBatchBuilder::push_row`] from [`Value`]s and read them
//! with the fallible accessors of [`Record`]; a value that does not decode is an error naming
//! the field and the record, never a substitute. [`arrow`] converts batches to and from Apache
//! Arrow record batches, losslessly, for columnar destinations.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

pub mod arrow;
pub mod key;
mod numeric;
mod value;

pub use value::{DecodeError, Value};

/// The logical type of a field, which fixes the binary encoding of its values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// A decimal of any precision (PostgreSQL's unconstrained `numeric`).
    Numeric,
    /// A decimal with `precision` digits, `scale` of them after the point.
    Decimal {
        precision: u8,
        scale: u8,
    },
    Text,
    Bytes,
    Date,
    /// A time of day, microseconds.
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Jsonb,
    /// A list of values of one type.
    List(Box<FieldType>),
}

impl FieldType {
    /// The PostgreSQL type whose binary format this type uses.
    pub fn postgres_name(&self) -> String {
        let name = match self {
            Self::Bool => "boolean",
            Self::Int16 => "smallint",
            Self::Int32 => "integer",
            Self::Int64 => "bigint",
            Self::Float32 => "real",
            Self::Float64 => "double precision",
            Self::Numeric => "numeric",
            Self::Decimal { precision, scale } => return format!("numeric({precision},{scale})"),
            Self::Text => "text",
            Self::Bytes => "bytea",
            Self::Date => "date",
            Self::Time => "time",
            Self::Timestamp => "timestamp",
            Self::TimestampTz => "timestamptz",
            Self::Uuid => "uuid",
            Self::Json => "json",
            Self::Jsonb => "jsonb",
            Self::List(element) => return format!("{}[]", element.postgres_name()),
        };
        name.to_owned()
    }

    /// The PostgreSQL type oid of this type, the element type of arrays (`None` for lists).
    pub fn postgres_oid(&self) -> Option<u32> {
        Some(match self {
            Self::Bool => 16,
            Self::Int16 => 21,
            Self::Int32 => 23,
            Self::Int64 => 20,
            Self::Float32 => 700,
            Self::Float64 => 701,
            Self::Numeric | Self::Decimal { .. } => 1700,
            Self::Text => 25,
            Self::Bytes => 17,
            Self::Date => 1082,
            Self::Time => 1083,
            Self::Timestamp => 1114,
            Self::TimestampTz => 1184,
            Self::Uuid => 2950,
            Self::Json => 114,
            Self::Jsonb => 3802,
            Self::List(_) => return None,
        })
    }

    /// The Polytomic field type name shown in the API (`string`, `number`, …).
    pub fn api_name(&self) -> &'static str {
        match self {
            Self::Bool => "boolean",
            Self::Int16 | Self::Int32 | Self::Int64 | Self::Float32 | Self::Float64 => "number",
            Self::Numeric | Self::Decimal { .. } => "number",
            Self::Text | Self::Uuid | Self::Time => "string",
            Self::Bytes => "binary",
            Self::Date | Self::Timestamp | Self::TimestampTz => "datetime",
            Self::Json | Self::Jsonb => "object",
            Self::List(_) => "array",
        }
    }

    /// Whether values of this type can identify records (see [`key`]).
    pub fn can_identify(&self) -> bool {
        key::supports(self)
    }

    /// Whether values of this type can be a read's cursor: numbers, dates and timestamps,
    /// which only grow in the fields cursors follow.
    pub fn can_be_cursor(&self) -> bool {
        matches!(self, Self::Int16 | Self::Int32 | Self::Int64 | Self::Date | Self::Timestamp | Self::TimestampTz)
    }
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

/// A value of a record that cannot be read: names the field and the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {record}, field {field:?}: {reason}")]
pub struct ValueError {
    pub field: String,
    /// The record's position in its batch.
    pub record: usize,
    pub reason: String,
}

/// One record: a view of a binary tuple inside a batch.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    bytes: &'a [u8],
    schema: &'a Schema,
    index: usize,
}

impl<'a> Record<'a> {
    /// The encoded tuple, ready for a binary `COPY`.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The record's position in its batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The encoded values in field order (`None` for NULL).
    pub fn raw_values(&self) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        tuple_values(self.bytes)
    }

    /// The encoded value of field `index` (`None` for NULL or out of range).
    pub fn raw(&self, index: usize) -> Option<&'a [u8]> {
        self.raw_values().nth(index).flatten()
    }

    /// The decoded value of field `index`.
    pub fn get(&self, index: usize) -> Result<Value, ValueError> {
        let field = self.field(index)?;
        Value::decode(&field.field_type, self.raw(index)).map_err(|e| self.error(index, e.0))
    }

    /// The decoded values of every field.
    pub fn values(&self) -> Result<Vec<Value>, ValueError> {
        (0..self.schema.fields.len()).map(|i| self.get(i)).collect()
    }

    /// The values as a JSON object, each under the name at its position in `names`.
    pub fn json_under(&self, names: &[String]) -> Result<serde_json::Map<String, serde_json::Value>, ValueError> {
        Ok(names.iter().cloned().zip(self.values()?.iter().map(Value::to_json)).collect())
    }

    /// Field `index` as an integer (NULL is `None`); other types are an error.
    pub fn get_i64(&self, index: usize) -> Result<Option<i64>, ValueError> {
        match self.get(index)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(v)),
            other => Err(self.error(index, format!("{other} is not an integer"))),
        }
    }

    /// Field `index` as a float (integers convert; NULL is `None`).
    pub fn get_f64(&self, index: usize) -> Result<Option<f64>, ValueError> {
        match self.get(index)? {
            Value::Null => Ok(None),
            Value::Float(v) => Ok(Some(v)),
            Value::Int(v) => Ok(Some(v as f64)),
            other => Err(self.error(index, format!("{other} is not a number"))),
        }
    }

    /// Field `index` as a boolean (NULL is `None`).
    pub fn get_bool(&self, index: usize) -> Result<Option<bool>, ValueError> {
        match self.get(index)? {
            Value::Null => Ok(None),
            Value::Bool(v) => Ok(Some(v)),
            other => Err(self.error(index, format!("{other} is not a boolean"))),
        }
    }

    /// Field `index` as text, borrowed from the record (NULL is `None`); only text fields.
    pub fn get_str(&self, index: usize) -> Result<Option<&'a str>, ValueError> {
        if self.field(index)?.field_type != FieldType::Text {
            return Err(self.error(index, "is not a text field".into()));
        }
        self.raw(index).map(|b| std::str::from_utf8(b).map_err(|e| self.error(index, e.to_string()))).transpose()
    }

    fn field(&self, index: usize) -> Result<&'a Field, ValueError> {
        self.schema.fields.get(index).ok_or_else(|| ValueError {
            field: format!("#{index}"),
            record: self.index,
            reason: format!("the record has {} fields", self.schema.fields.len()),
        })
    }

    fn error(&self, index: usize, reason: String) -> ValueError {
        let field = self.schema.fields.get(index).map_or_else(|| format!("#{index}"), |f| f.name.clone());
        ValueError { field, record: self.index, reason }
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

    /// Record `index`; panics past the end, like slice indexing (see [`RecordBatch::get`]).
    pub fn record(&self, index: usize) -> Record<'_> {
        self.get(index).expect("record index within the batch")
    }

    /// Record `index`, if the batch has it.
    pub fn get(&self, index: usize) -> Option<Record<'_>> {
        let (start, end) = (*self.offsets.get(index)? as usize, *self.offsets.get(index + 1)? as usize);
        Some(Record { bytes: &self.data[start..end], schema: &self.schema, index })
    }

    /// Every record in order.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        (0..self.len()).map(|i| self.record(i))
    }

    /// The encoded tuples of records `range`, back to back.
    pub fn slice_data(&self, range: std::ops::Range<usize>) -> Bytes {
        self.data.slice(self.offsets[range.start] as usize..self.offsets[range.end] as usize)
    }

    /// The same records under `schema`, which must have as many fields (e.g. renamed ones).
    pub fn with_schema(self, schema: Arc<Schema>) -> Self {
        debug_assert_eq!(schema.fields.len(), self.schema.fields.len());
        Self { schema, ..self }
    }

    /// The records at `positions`, in that order, as a batch of their own.
    pub fn select(&self, positions: &[usize]) -> Self {
        if positions.len() == self.len() && positions.iter().enumerate().all(|(n, at)| n == *at) {
            return self.clone();
        }
        let mut data = BytesMut::new();
        let mut offsets = Vec::with_capacity(positions.len() + 1);
        for at in positions {
            offsets.push(data.len() as u32);
            data.extend_from_slice(self.record(*at).as_bytes());
        }
        offsets.push(data.len() as u32);
        Self { schema: self.schema.clone(), data: data.freeze(), offsets }
    }

    /// The first `len` records.
    pub fn truncated(&self, len: usize) -> Self {
        let len = len.min(self.len());
        Self { schema: self.schema.clone(), data: self.slice_data(0..len), offsets: self.offsets[..=len].to_vec() }
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

/// The values of a tuple whose framing was checked ([`tuple_len`]), `None` for NULL.
pub fn tuple_values(tuple: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    let count = i16::from_be_bytes([tuple[0], tuple[1]]).max(0) as usize;
    let mut pos = 2;
    (0..count).map(move |_| {
        let len = i32::from_be_bytes([tuple[pos], tuple[pos + 1], tuple[pos + 2], tuple[pos + 3]]);
        pos += 4;
        if len < 0 {
            return None;
        }
        let value = &tuple[pos..pos + len as usize];
        pos += len as usize;
        Some(value)
    })
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

    /// Appends a record from one value per schema field, encoding each as its field's type. A
    /// value that does not fit its field is an error naming both, and nothing is appended.
    pub fn push_row<'v>(&mut self, values: impl IntoIterator<Item = &'v Value>) -> Result<(), ValueError> {
        let fields = self.schema.fields.len();
        let mut values = values.into_iter();
        self.push_encoded(|ty, out| match values.next() {
            None => Err(DecodeError(format!("the row has too few values for {fields} fields"))),
            Some(Value::Null) => Ok(false),
            Some(value) => value.encode(ty, out).map(|()| true),
        })?;
        if values.next().is_some() {
            self.offsets.pop();
            self.data.truncate(self.offsets[self.offsets.len() - 1] as usize);
            let reason = format!("the row has more values than the {fields} fields");
            return Err(ValueError { field: String::new(), record: self.len(), reason });
        }
        Ok(())
    }

    /// Appends a record whose values `encode` writes straight into the batch, one field at a
    /// time in schema order: it appends the value's encoding as the field's type to the buffer
    /// and returns `Ok(true)`, or appends nothing and returns `Ok(false)` for NULL. An error
    /// names the field, and nothing is appended.
    pub fn push_encoded(
        &mut self,
        mut encode: impl FnMut(&FieldType, &mut BytesMut) -> Result<bool, DecodeError>,
    ) -> Result<(), ValueError> {
        let start = self.data.len();
        self.data.put_i16(self.schema.fields.len() as i16);
        for field in &self.schema.fields {
            let at = self.data.len();
            self.data.put_i32(-1);
            match encode(&field.field_type, &mut self.data) {
                Ok(true) => {
                    let len = (self.data.len() - at - 4) as i32;
                    self.data[at..at + 4].copy_from_slice(&len.to_be_bytes());
                }
                Ok(false) => self.data.truncate(at + 4),
                Err(e) => {
                    self.data.truncate(start);
                    return Err(ValueError { field: field.name.clone(), record: self.len(), reason: e.0 });
                }
            }
        }
        self.offsets.push(self.data.len() as u32);
        Ok(())
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
        assert_eq!(batch.record(0).raw_values().collect::<Vec<_>>(), vec![Some(&b"a"[..]), None]);
        assert_eq!(batch.record(1).raw(1), Some(&b"xyz"[..]));
        assert_eq!(batch.record(1).get_str(1), Ok(Some("xyz")));
        assert!(batch.get(2).is_none());
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
    fn typed_rows_are_checked_against_the_schema() {
        let schema = Arc::new(Schema {
            fields: vec![
                Field { name: "id".into(), field_type: FieldType::Int32 },
                Field { name: "price".into(), field_type: FieldType::Decimal { precision: 12, scale: 2 } },
            ],
        });
        let mut b = RecordBatchBuilder::with_capacity(schema, 64);
        b.push_row(&[Value::Int(7), Value::Decimal("19.99".into())]).expect("fits");
        let err = b.push_row(&[Value::Int(1 << 40), Value::Null]).expect_err("too wide");
        assert_eq!((err.field.as_str(), err.record), ("id", 1));
        assert!(b.push_row(&[Value::Int(1)]).is_err(), "a missing value is an error");
        let batch = b.finish();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.record(0).get_i64(0), Ok(Some(7)));
        assert_eq!(batch.record(0).get(1), Ok(Value::Decimal("19.99".into())));
        let err = batch.record(0).get_bool(0).expect_err("not a boolean");
        assert_eq!(err.to_string(), "record 0, field \"id\": 7 is not a boolean");
    }

    #[test]
    fn encoded_rows_are_written_in_place() {
        let mut b = RecordBatchBuilder::with_capacity(schema(2), 64);
        let mut values = [Some("a"), None].into_iter();
        b.push_encoded(|_, out| Ok(values.next().flatten().map(|v| out.put_slice(v.as_bytes())).is_some()))
            .expect("fits");
        let err = b.push_encoded(|_, out| {
            out.put_slice(b"half");
            Err(DecodeError("bad".into()))
        });
        assert_eq!(err.map_err(|e| (e.field, e.record, e.reason)), Err(("f0".into(), 1, "bad".into())));
        let batch = b.finish();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.record(0).raw_values().collect::<Vec<_>>(), vec![Some(&b"a"[..]), None]);
    }

    #[test]
    fn undecodable_values_name_field_and_record() {
        let schema = Arc::new(Schema { fields: vec![Field { name: "at".into(), field_type: FieldType::Timestamp }] });
        let mut b = RecordBatchBuilder::with_capacity(schema, 64);
        b.push_values([Some(&b"\x01\x02"[..])]);
        let batch = b.finish();
        let err = batch.record(0).get(0).expect_err("two bytes are no timestamp");
        assert_eq!((err.field.as_str(), err.record), ("at", 0));
    }
}
