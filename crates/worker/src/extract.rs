//! The extract stage: reads the model in identity order, merges it against the previous
//! snapshot, and writes the records to deliver as change chunks and the new snapshot.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use bytes::Bytes;
use futures::StreamExt;
use syncline_core::{
    connector::{BatchStream, SyncMode},
    db::DbPool,
    executions::{self, Counts},
    payload::PayloadStore,
    record::{Field, KeyOrder, Record, Schema, Value},
};
use tokio::sync::mpsc;
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

use crate::{
    changes::{self, UpsertChunk},
    snapshot::{Change, Differ, SnapshotWriter},
};

/// Counters the extract stage shares with the load stage.
#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) read: AtomicI64,
    /// Records the model itself got wrong (NULL or repeated identity).
    pub(crate) rejected: AtomicI64,
}

/// The extract stage: reads the model, diffs it and writes change chunks and the snapshot.
pub(crate) struct Extractor {
    pub(crate) store: PayloadStore,
    pub(crate) dir: String,
    pub(crate) snapshot_dir: String,
    pub(crate) mode: SyncMode,
    pub(crate) batch_rows: usize,
    pub(crate) fingerprint: String,
    pub(crate) tx: mpsc::Sender<String>,
    pub(crate) progress: Arc<Progress>,
    pub(crate) pool: DbPool,
    pub(crate) execution_id: Uuid,
    pub(crate) seq: usize,
}

impl Progress {
    /// Copies the shared counters into `counts`.
    pub(crate) fn add_to(&self, counts: &mut Counts) {
        counts.read = self.read.load(Ordering::Relaxed);
        counts.errors = counts.rejected + self.rejected.load(Ordering::Relaxed);
    }
}

/// How a record takes part in this run.
enum Verdict {
    Changed(Change),
    /// The model itself is wrong about this record: its identity and the reason.
    Rejected(String, String),
}

/// The diff state of one run: the previous snapshot being merged, the new one being written.
struct Diffing {
    differ: Differ,
    order: KeyOrder,
    snapshot: SnapshotWriter,
    last_key: Option<Vec<u8>>,
}

impl Diffing {
    /// Classifies a record by its identity (field 0); NULL and repeated identities are rejected.
    async fn classify(
        &mut self,
        record: Record<'_>,
        identity: &Field,
        deleted: &mut Vec<Bytes>,
    ) -> Result<Verdict, String> {
        let Some(key) = record.value(0) else {
            return Ok(Verdict::Rejected(
                "null".into(),
                format!("{} is null: every record needs an identity", identity.name),
            ));
        };
        if let Some(last) = &mut self.last_key {
            match self.order.compare(last, key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    let value = Value::decode(identity.field_type, Some(key)).to_string();
                    let message = format!(
                        "{}={value}: the model has this identity more than once; the first record was synced",
                        identity.name
                    );
                    return Ok(Verdict::Rejected(value, message));
                }
                std::cmp::Ordering::Greater => return Err("the source returned records out of identity order".into()),
            }
            last.clear();
            last.extend_from_slice(key);
        } else {
            self.last_key = Some(key.to_vec());
        }
        let hash = xxh3_64(record.as_bytes());
        self.snapshot.push(key, hash).await.map_err(|e| e.to_string())?;
        Ok(Verdict::Changed(self.differ.classify(key, hash, deleted).await.map_err(|e| e.to_string())?))
    }
}

/// Whether `mode` writes a record with `change`, and if so whether it is new to the destination.
fn delivery(mode: SyncMode, change: Change) -> Option<bool> {
    match (mode, change) {
        (_, Change::Unchanged) | (SyncMode::Create, Change::Update) => None,
        (SyncMode::Update, _) => Some(false),
        (SyncMode::Append, _) => Some(true),
        (_, change) => Some(change == Change::Insert),
    }
}

impl Extractor {
    /// Reads, diffs and writes change chunks; returns the new snapshot's directory.
    pub(crate) async fn run(
        mut self,
        mut stream: BatchStream,
        differ: Option<(Differ, KeyOrder)>,
        schema: Arc<Schema>,
    ) -> Result<Option<String>, String> {
        let mut diffing = differ.map(|(differ, order)| Diffing {
            differ,
            order,
            snapshot: SnapshotWriter::new(self.store.clone(), self.snapshot_dir.clone()),
            last_key: None,
        });
        let identity = &schema.fields[0];
        let mut deleted: Vec<Bytes> = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| e.message)?;
            self.progress.read.fetch_add(batch.len() as i64, Ordering::Relaxed);
            let mut chunk = UpsertChunk::with_capacity(batch.data().len());
            let mut rejected = Vec::new();
            for record in batch.records() {
                let change = match &mut diffing {
                    Some(diffing) => match diffing.classify(record, identity, &mut deleted).await? {
                        Verdict::Changed(change) => change,
                        Verdict::Rejected(identity, message) => {
                            rejected.push((identity, message));
                            continue;
                        }
                    },
                    None => Change::Insert,
                };
                if let Some(insert) = delivery(self.mode, change) {
                    chunk.push(record.as_bytes(), insert);
                }
            }
            if !rejected.is_empty() {
                self.progress.rejected.fetch_add(rejected.len() as i64, Ordering::Relaxed);
                executions::record_errors(&self.pool, self.execution_id, &rejected).await.map_err(|e| e.to_string())?;
            }
            if !chunk.is_empty() {
                self.send(chunk.finish()).await?;
            }
            if self.mode != SyncMode::Replace {
                deleted.clear();
            } else if deleted.len() >= self.batch_rows {
                self.send_deletes(&mut deleted).await?;
            }
        }
        let Some(mut diffing) = diffing else { return Ok(None) };
        if self.mode == SyncMode::Replace {
            diffing.differ.remaining(&mut deleted).await.map_err(|e| e.to_string())?;
            self.send_deletes(&mut deleted).await?;
        }
        let snapshot =
            diffing.snapshot.finish(diffing.order, self.fingerprint.clone()).await.map_err(|e| e.to_string())?;
        Ok(Some(snapshot))
    }

    async fn send_deletes(&mut self, deleted: &mut Vec<Bytes>) -> Result<(), String> {
        if deleted.is_empty() {
            return Ok(());
        }
        let chunk = changes::encode_deletes(deleted);
        deleted.clear();
        self.send(chunk).await
    }

    async fn send(&mut self, chunk: Bytes) -> Result<(), String> {
        let key = format!("{}/{:06}.bin", self.dir, self.seq);
        self.seq += 1;
        self.store.put(&key, chunk).await.map_err(|e| e.to_string())?;
        // A closed channel means the load stage stopped; it reports why.
        let _ = self.tx.send(key).await;
        Ok(())
    }
}
