//! Identity keys: a record's identity fields as one byte string whose byte order is the order
//! of the identity values, field by field (integers and times numerically, text and bytes
//! bytewise — the "C" collation). One field or several, every key compares with `memcmp`, so
//! snapshots, external sorts and diffs never need to know the identity's types.
//!
//! Per field: integers, dates, times and timestamps become 8 bytes, big-endian with the sign
//! bit flipped; booleans 1 byte; uuids their 16 bytes; text and bytes their bytes, escaped
//! (`00` → `00 FF`) and terminated by `00 00` unless the field is the last one.

use bytes::{BufMut, BytesMut};

use super::{FieldType, Record, Schema, Value};

/// Whether values of `ty` can be part of an identity.
pub fn supports(ty: &FieldType) -> bool {
    width(ty).is_some() || matches!(ty, FieldType::Bool | FieldType::Uuid | FieldType::Text | FieldType::Bytes)
}

/// The byte width of the signed integer encoding of `ty`, for the types ordered as integers.
fn width(ty: &FieldType) -> Option<usize> {
    match ty {
        FieldType::Int16 => Some(2),
        FieldType::Int32 | FieldType::Date => Some(4),
        FieldType::Int64 | FieldType::Time | FieldType::Timestamp | FieldType::TimestampTz => Some(8),
        _ => None,
    }
}

const SIGN: u64 = 1 << 63;

/// Why a record has no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An identity field is NULL.
    #[error("{0} is null: every record needs an identity")]
    Null(String),
    /// An identity field's bytes are not a value of its type.
    #[error("{0} is not a valid identity value")]
    Malformed(String),
}

/// Where a record's identity fields are and how to encode them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    /// Position in the record and name and type of each identity field, in key order.
    fields: Vec<(usize, String, FieldType)>,
}

impl KeyLayout {
    /// The layout of the identity `names` within `schema`; the error says which field is
    /// missing or cannot identify records.
    pub fn new(schema: &Schema, names: &[String]) -> Result<Self, String> {
        if names.is_empty() {
            return Err("an identity needs at least one field".into());
        }
        let fields = names
            .iter()
            .map(|name| {
                let index = schema.index_of(name).ok_or_else(|| format!("identity field {name:?} is not read"))?;
                let ty = schema.fields[index].field_type.clone();
                if !supports(&ty) {
                    return Err(format!(
                        "identity field {name:?} has type {}, which cannot identify records (use an integer, text, uuid, date or timestamp field)",
                        ty.postgres_name()
                    ));
                }
                Ok((index, name.clone(), ty))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { fields })
    }

    /// The schema of the identity fields alone, in key order.
    pub fn schema(&self) -> Schema {
        Schema {
            fields: self
                .fields
                .iter()
                .map(|(_, name, ty)| super::Field { name: name.clone(), field_type: ty.clone() })
                .collect(),
        }
    }

    /// Positions of the identity fields in the record.
    pub fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.fields.iter().map(|(i, _, _)| *i)
    }

    /// Writes the key of `record` into `out` (cleared first).
    pub fn encode(&self, record: &Record<'_>, out: &mut Vec<u8>) -> Result<(), KeyError> {
        out.clear();
        let last = self.fields.len() - 1;
        for (n, (index, name, ty)) in self.fields.iter().enumerate() {
            let raw = record.raw(*index).ok_or_else(|| KeyError::Null(name.clone()))?;
            match width(ty) {
                Some(w) if raw.len() == w => {
                    let mut buf = [if raw[0] & 0x80 != 0 { 0xff } else { 0 }; 8];
                    buf[8 - w..].copy_from_slice(raw);
                    out.extend_from_slice(&(u64::from_be_bytes(buf) ^ SIGN).to_be_bytes());
                }
                Some(_) => return Err(KeyError::Malformed(name.clone())),
                None if n == last || !matches!(ty, FieldType::Text | FieldType::Bytes) => out.extend_from_slice(raw),
                None => {
                    for b in raw {
                        out.push(*b);
                        if *b == 0 {
                            out.push(0xff);
                        }
                    }
                    out.extend_from_slice(&[0, 0]);
                }
            }
        }
        Ok(())
    }

    /// The identity fields' encoded values (PostgreSQL binary format) from a key.
    pub fn decode(&self, key: &[u8]) -> Result<Vec<Vec<u8>>, KeyError> {
        let malformed = |name: &str| KeyError::Malformed(name.to_owned());
        let mut rest = key;
        let last = self.fields.len() - 1;
        let mut values = Vec::with_capacity(self.fields.len());
        for (n, (_, name, ty)) in self.fields.iter().enumerate() {
            let (value, tail) = match (width(ty), ty) {
                (Some(w), _) => {
                    let bytes: [u8; 8] =
                        rest.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| malformed(name))?;
                    let v = (u64::from_be_bytes(bytes) ^ SIGN).to_be_bytes();
                    (v[8 - w..].to_vec(), &rest[8..])
                }
                (None, FieldType::Bool) => (rest.get(..1).ok_or_else(|| malformed(name))?.to_vec(), &rest[1..]),
                (None, FieldType::Uuid) => (rest.get(..16).ok_or_else(|| malformed(name))?.to_vec(), &rest[16..]),
                _ if n == last => (rest.to_vec(), &rest[rest.len()..]),
                _ => unescape(rest).ok_or_else(|| malformed(name))?,
            };
            values.push(value);
            rest = tail;
        }
        match rest.is_empty() {
            true => Ok(values),
            false => Err(malformed(&self.fields[last].1)),
        }
    }

    /// The key as one record of [`KeyLayout::schema`] (a binary tuple).
    pub fn tuple(&self, key: &[u8], out: &mut BytesMut) -> Result<(), KeyError> {
        let values = self.decode(key)?;
        out.put_i16(values.len() as i16);
        for value in values {
            out.put_i32(value.len() as i32);
            out.put_slice(&value);
        }
        Ok(())
    }

    /// The identity for people: `id=5` or `region=eu, id=5`.
    pub fn display(&self, key: &[u8]) -> String {
        let Ok(values) = self.decode(key) else { return format!("\\x{}", hex::encode(key)) };
        self.fields
            .iter()
            .zip(values)
            .map(|((_, name, ty), value)| match Value::decode(ty, Some(&value)) {
                Ok(value) => format!("{name}={value}"),
                Err(_) => format!("{name}=\\x{}", hex::encode(value)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Splits an escaped, terminated field off the front of `bytes`.
fn unescape(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match (bytes.get(i)?, bytes.get(i + 1)) {
            (0, Some(0)) => return Some((out, &bytes[i + 2..])),
            (0, Some(0xff)) => {
                out.push(0);
                i += 2;
            }
            (0, _) => return None,
            (b, _) => {
                out.push(*b);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::record::{Field, RecordBatchBuilder};

    fn layout(types: &[FieldType]) -> (Arc<Schema>, KeyLayout) {
        let fields: Vec<Field> =
            types.iter().enumerate().map(|(i, t)| Field { name: format!("k{i}"), field_type: t.clone() }).collect();
        let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
        let schema = Arc::new(Schema { fields });
        let layout = KeyLayout::new(&schema, &names).expect("layout");
        (schema, layout)
    }

    fn keys(types: &[FieldType], rows: &[Vec<Value>]) -> (KeyLayout, Vec<Vec<u8>>) {
        let (schema, layout) = layout(types);
        let mut b = RecordBatchBuilder::with_capacity(schema, 256);
        for row in rows {
            b.push_row(row).expect("row");
        }
        let batch = b.finish();
        let keys = batch
            .records()
            .map(|r| {
                let mut key = Vec::new();
                layout.encode(&r, &mut key).expect("key");
                key
            })
            .collect();
        (layout, keys)
    }

    #[test]
    fn key_order_is_value_order() {
        let text = |s: &str| Value::Text(s.into());
        let rows = vec![
            vec![Value::Int(-5), text("b")],
            vec![Value::Int(-5), text("b\0")],
            vec![Value::Int(-5), text("ba")],
            vec![Value::Int(3), text("")],
            vec![Value::Int(3), text("a")],
        ];
        let (_, k) = keys(&[FieldType::Int32, FieldType::Text], &rows);
        assert!(k.windows(2).all(|w| w[0] < w[1]), "{k:?}");
        let rows =
            vec![vec![text("a"), Value::Int(9)], vec![text("a\0"), Value::Int(1)], vec![text("ab"), Value::Int(0)]];
        let (layout, k) = keys(&[FieldType::Text, FieldType::Int64], &rows);
        assert!(k.windows(2).all(|w| w[0] < w[1]), "{k:?}");
        assert_eq!(layout.display(&k[1]), "k0=a\0, k1=1");
    }

    #[test]
    fn keys_decode_to_their_values() {
        let ts = chrono::DateTime::from_timestamp(1_700_000_000, 5_000).expect("ts");
        let row = vec![Value::TimestampTz(ts), Value::Text("x\0y".into()), Value::Bool(true), Value::Int(-1)];
        let types = [FieldType::TimestampTz, FieldType::Text, FieldType::Bool, FieldType::Int16];
        let (layout, k) = keys(&types, std::slice::from_ref(&row));
        let decoded = layout.decode(&k[0]).expect("decodes");
        let values: Vec<Value> =
            types.iter().zip(&decoded).map(|(t, v)| Value::decode(t, Some(v)).expect("value")).collect();
        assert_eq!(values, row);
        assert!(layout.decode(&k[0][..5]).is_err());
    }

    #[test]
    fn refuses_types_that_cannot_identify() {
        let schema = Schema { fields: vec![Field { name: "f".into(), field_type: FieldType::Float64 }] };
        assert!(KeyLayout::new(&schema, &["f".into()]).unwrap_err().contains("cannot identify"));
        assert!(KeyLayout::new(&schema, &["g".into()]).is_err());
    }
}
