//! Change chunks: the records an execution must write, handed from the extract stage to the
//! load stage through the payload store.
//!
//! A chunk file is `u8 kind` (`U` upserts, `D` deletes), `u32 record count`, for upserts one
//! op byte per record (`I` insert, `U` update), then the encoded record tuples.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use syncline_core::record::{RecordBatch, RecordError, Schema};

/// What a chunk asks the destination to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    Upserts,
    Deletes,
}

/// A decoded chunk.
#[derive(Debug)]
pub struct Chunk {
    pub kind: ChunkKind,
    /// For upserts: whether each record is new to the destination (`true`) or an update.
    pub inserts: Vec<bool>,
    pub records: RecordBatch,
}

/// Encodes an upsert chunk from records and their insert flags.
pub fn encode_upserts(inserts: &[bool], tuples: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + inserts.len() + tuples.len());
    out.put_u8(b'U');
    out.put_u32(inserts.len() as u32);
    out.extend(inserts.iter().map(|i| if *i { b'I' } else { b'U' }));
    out.put_slice(tuples);
    out.freeze()
}

/// Encodes a delete chunk from one-field key tuples.
pub fn encode_deletes(count: usize, tuples: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + tuples.len());
    out.put_u8(b'D');
    out.put_u32(count as u32);
    out.put_slice(tuples);
    out.freeze()
}

/// Decodes a chunk; `schema` is the record schema (deletes use `key_schema`).
pub fn decode(mut bytes: Bytes, schema: &Arc<Schema>, key_schema: &Arc<Schema>) -> Result<Chunk, RecordError> {
    if bytes.remaining() < 5 {
        return Err(RecordError::Truncated);
    }
    let kind = bytes.get_u8();
    let count = bytes.get_u32() as usize;
    let (kind, inserts, schema) = match kind {
        b'U' => {
            if bytes.remaining() < count {
                return Err(RecordError::Truncated);
            }
            let ops = bytes.split_to(count);
            (ChunkKind::Upserts, ops.iter().map(|op| *op == b'I').collect(), schema)
        }
        _ => (ChunkKind::Deletes, Vec::new(), key_schema),
    };
    let records = RecordBatch::from_tuples(schema.clone(), bytes)?;
    if records.len() != count {
        return Err(RecordError::Truncated);
    }
    Ok(Chunk { kind, inserts, records })
}

#[cfg(test)]
mod tests {
    use syncline_core::record::{Field, FieldType, RecordBatchBuilder};

    use super::*;

    #[test]
    fn round_trips_both_kinds() {
        let schema = Arc::new(Schema { fields: vec![Field { name: "id".into(), field_type: FieldType::Int64 }] });
        let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 64);
        builder.push_values([Some(&7i64.to_be_bytes()[..])]);
        builder.push_values([Some(&9i64.to_be_bytes()[..])]);
        let batch = builder.finish();
        let chunk = decode(encode_upserts(&[true, false], batch.data()), &schema, &schema).expect("upserts");
        assert_eq!((chunk.kind, chunk.inserts, chunk.records.len()), (ChunkKind::Upserts, vec![true, false], 2));
        let chunk = decode(encode_deletes(2, batch.data()), &schema, &schema).expect("deletes");
        assert_eq!((chunk.kind, chunk.records.len()), (ChunkKind::Deletes, 2));
        assert!(decode(encode_deletes(3, batch.data()), &schema, &schema).is_err());
    }
}
