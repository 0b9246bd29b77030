//! Verified delivery: once a run's writes are done, the records it wrote are read back from
//! the destination by identity — every one up to `MODEL_SYNC_VERIFY_RECORDS`, a random sample
//! of that many above it — and compared with what it sent. A record that reads back different
//! (a trigger rewrote it, a column cut it, it vanished) is a record error of the run and is
//! sent again by the next one.

use std::{collections::HashMap, time::Instant};

use bytes::BytesMut;
use serde::Serialize;
use syncline_core::{
    connector::{BatchWriter, ConnectorError, Operation, Operations, WriteBatch},
    record::RecordBatch,
};
use xxhash_rust::xxh3::xxh3_64;

use super::{
    changes::{self, ChunkKind},
    load::Layout,
};
use crate::Services;

/// A chunk the load stage wrote, with the records the destination rejected in it.
pub(crate) struct Written {
    pub(crate) key: String,
    pub(crate) rejected: Vec<usize>,
}

/// What verifying a run found and cost, as the execution shows it (`verification`).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Verified {
    /// Records read back.
    pub(crate) checked: u64,
    pub(crate) mismatched: u64,
    /// Whether only a sample of the written records was read back.
    pub(crate) sampled: bool,
    pub(crate) seconds: f64,
    /// Why the destination could not verify, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unverified: Option<String>,
}

/// The records verification found wrong: (identity, message) to record as errors, and the
/// identity keys of upserts to send again (with whether each was new).
#[derive(Default)]
pub(crate) struct Found {
    pub(crate) errors: Vec<(String, String)>,
    pub(crate) resend: HashMap<Vec<u8>, bool>,
}

/// Verifies the `written` chunks (`total` records written in all) through `writer`.
pub(crate) async fn verify(
    services: &Services,
    layout: &Layout,
    writer: &mut dyn BatchWriter,
    written: &[Written],
    total: u64,
) -> Result<(Verified, Found), ConnectorError> {
    let started = Instant::now();
    let limit = services.verify_records;
    let mut verified = Verified { sampled: total > limit, ..Verified::default() };
    let mut found = Found::default();
    if layout.identity.is_none() {
        verified.unverified = Some("the sync has no identity to read records back by".into());
        return Ok((verified, found));
    }
    if limit == 0 {
        verified.unverified = Some("verification is off (MODEL_SYNC_VERIFY_RECORDS=0)".into());
        return Ok((verified, found));
    }
    for chunk in written {
        let bytes = services.store.get(&chunk.key).await.map_err(|e| ConnectorError::transient(e.to_string()))?;
        let chunk_records = changes::decode(bytes, &layout.schema, &layout.key_schema)
            .map_err(|e| ConnectorError::permanent(format!("{}: {e}", chunk.key)))?;
        let (kind, records) = (chunk_records.kind, &chunk_records.records);
        let picked: Vec<usize> = (0..records.len())
            .filter(|i| chunk.rejected.binary_search(i).is_err())
            .filter(|i| !verified.sampled || xxh3_64(records.record(*i).as_bytes()) % total < limit)
            .collect();
        if picked.is_empty() {
            continue;
        }
        let operations = match kind {
            ChunkKind::Deletes => Operations::All(Operation::Delete),
            ChunkKind::Upserts => Operations::Each(
                picked
                    .iter()
                    .map(|i| if chunk_records.inserts[*i] { Operation::Insert } else { Operation::Update })
                    .collect(),
            ),
        };
        let batch = WriteBatch { records: subset(records, &picked)?, operations };
        let Some(mismatches) = writer.verify(&batch).await? else {
            verified.unverified = Some("the destination cannot read records back".into());
            return Ok((verified, found));
        };
        verified.checked += picked.len() as u64;
        verified.mismatched += mismatches.len() as u64;
        for mismatch in mismatches {
            let Some(at) = picked.get(mismatch.index) else {
                return Err(ConnectorError::permanent(format!(
                    "the destination verified record {} of a batch of {}",
                    mismatch.index,
                    picked.len()
                )));
            };
            let mut key = Vec::new();
            let name = layout.name(&records.record(*at), kind == ChunkKind::Deletes, &mut key);
            found.errors.push((name.clone(), format!("{name}: verification: {}", mismatch.kind)));
            if kind == ChunkKind::Upserts {
                found.resend.insert(key, chunk_records.inserts[*at]);
            }
        }
    }
    verified.seconds = started.elapsed().as_secs_f64();
    Ok((verified, found))
}

/// The records of `records` at `picked`, as a batch of their own.
fn subset(records: &RecordBatch, picked: &[usize]) -> Result<RecordBatch, ConnectorError> {
    if picked.len() == records.len() {
        return Ok(records.clone());
    }
    let mut data = BytesMut::new();
    for i in picked {
        data.extend_from_slice(records.record(*i).as_bytes());
    }
    RecordBatch::from_tuples(records.schema().clone(), data.freeze())
        .map_err(|e| ConnectorError::permanent(e.to_string()))
}
