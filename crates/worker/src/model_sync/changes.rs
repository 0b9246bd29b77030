//! Change chunks: the records an execution must write, handed from the extract stage to the
//! load stage through the payload store.
//!
//! A chunk file is `u8 kind` (`U` upserts, `D` deletes), `u32 record count`, `u32 length of the
//! tuples`, the encoded record tuples, then for upserts one op byte per record (`I` insert,
//! `U` update). A delete chunk's tuples hold the identity fields alone.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use syncline_core::record::{
    RecordBatch, RecordError, Schema,
    key::{KeyError, KeyLayout},
};

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

const HEADER_LEN: usize = 9;

/// Builds an upsert chunk record by record, copying each record once.
pub struct UpsertChunk {
    buf: BytesMut,
    ops: Vec<u8>,
}

impl UpsertChunk {
    /// An empty chunk with room for about `bytes` of records.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + bytes);
        buf.put_bytes(0, HEADER_LEN);
        Self { buf, ops: Vec::new() }
    }

    /// Appends an encoded record; `insert` says it is new to the destination.
    pub fn push(&mut self, tuple: &[u8], insert: bool) {
        self.buf.put_slice(tuple);
        self.ops.push(if insert { b'I' } else { b'U' });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The encoded chunk.
    pub fn finish(mut self) -> Bytes {
        let tuples_len = (self.buf.len() - HEADER_LEN) as u32;
        self.buf[0] = b'U';
        self.buf[1..5].copy_from_slice(&(self.ops.len() as u32).to_be_bytes());
        self.buf[5..9].copy_from_slice(&tuples_len.to_be_bytes());
        self.buf.put_slice(&self.ops);
        self.buf.freeze()
    }
}

/// Encodes a delete chunk: each identity key becomes a record of its identity fields.
pub fn encode_deletes(layout: &KeyLayout, keys: &[Bytes]) -> Result<Bytes, KeyError> {
    let mut out = BytesMut::with_capacity(HEADER_LEN + keys.iter().map(|k| 8 + k.len()).sum::<usize>());
    out.put_bytes(0, HEADER_LEN);
    for key in keys {
        layout.tuple(key, &mut out)?;
    }
    let tuples_len = (out.len() - HEADER_LEN) as u32;
    out[0] = b'D';
    out[1..5].copy_from_slice(&(keys.len() as u32).to_be_bytes());
    out[5..9].copy_from_slice(&tuples_len.to_be_bytes());
    Ok(out.freeze())
}

/// Decodes a chunk; `schema` is the record schema (deletes use `key_schema`).
pub fn decode(mut bytes: Bytes, schema: &Arc<Schema>, key_schema: &Arc<Schema>) -> Result<Chunk, RecordError> {
    if bytes.remaining() < HEADER_LEN {
        return Err(RecordError::Truncated);
    }
    let kind = bytes.get_u8();
    let count = bytes.get_u32() as usize;
    let tuples_len = bytes.get_u32() as usize;
    if bytes.remaining() < tuples_len {
        return Err(RecordError::Truncated);
    }
    let tuples = bytes.split_to(tuples_len);
    let (kind, inserts, schema) = match kind {
        b'U' if bytes.remaining() == count => {
            (ChunkKind::Upserts, bytes.iter().map(|op| *op == b'I').collect(), schema)
        }
        b'U' => return Err(RecordError::Truncated),
        _ => (ChunkKind::Deletes, Vec::new(), key_schema),
    };
    let records = RecordBatch::from_tuples(schema.clone(), tuples)?;
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
        let layout = KeyLayout::new(&schema, &["id".into()]).expect("layout");
        let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 64);
        builder.push_values([Some(&7i64.to_be_bytes()[..])]);
        builder.push_values([Some(&9i64.to_be_bytes()[..])]);
        let batch = builder.finish();
        let mut upserts = UpsertChunk::with_capacity(0);
        upserts.push(batch.record(0).as_bytes(), true);
        upserts.push(batch.record(1).as_bytes(), false);
        let chunk = decode(upserts.finish(), &schema, &schema).expect("upserts");
        assert_eq!((chunk.kind, chunk.inserts, chunk.records.len()), (ChunkKind::Upserts, vec![true, false], 2));
        let keys: Vec<Bytes> = batch
            .records()
            .map(|r| {
                let mut key = Vec::new();
                layout.encode(&r, &mut key).expect("key");
                Bytes::from(key)
            })
            .collect();
        let deletes = encode_deletes(&layout, &keys).expect("encodes");
        let chunk = decode(deletes.clone(), &schema, &schema).expect("deletes");
        assert_eq!((chunk.kind, chunk.records.len()), (ChunkKind::Deletes, 2));
        assert_eq!(chunk.records.record(1).raw(0), Some(&9i64.to_be_bytes()[..]));
        let mut truncated = deletes.to_vec();
        truncated.truncate(truncated.len() - 1);
        assert!(decode(Bytes::from(truncated), &schema, &schema).is_err());
    }
}
