//! The extract stage: reads the model in identity order (sorting it first when the source
//! cannot), merges it against the previous snapshot, and writes the records to deliver as
//! change chunks and the new snapshot.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use bytes::Bytes;
use futures::StreamExt;
use syncline_core::{
    connector::{ConnectorError, ReadEvent, SyncMode},
    db::DbPool,
    executions::{self, Counts},
    payload::PayloadStore,
    record::{
        Record, RecordBatch,
        key::{KeyError, KeyLayout},
    },
};
use tokio::sync::mpsc;
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

use super::{
    changes::{self, UpsertChunk},
    review::Tally,
    snapshot::{Change, Differ, SnapshotWriter},
    sort::{Sorted, Sorter},
};

type Events = futures::stream::BoxStream<'static, Result<ReadEvent, ConnectorError>>;

/// The records to diff, in identity order: as the source sends them, or sorted by the worker
/// (which reads the whole source first, inside the extract stage).
pub(crate) enum Input {
    Stream(Events),
    Sorting(Sorter, Events),
    Sorted(Sorted),
}

impl Input {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        match self {
            Input::Sorting(..) => {
                let Input::Sorting(sorter, events) =
                    std::mem::replace(self, Input::Stream(futures::stream::empty().boxed()))
                else {
                    unreachable!("matched above")
                };
                *self = Input::Sorted(sorter.sort(events).await?);
                Box::pin(self.next_batch()).await
            }
            Input::Sorted(sorted) => sorted.next_batch().await,
            Input::Stream(events) => loop {
                match events.next().await.transpose()? {
                    Some(ReadEvent::Batch(batch)) => return Ok(Some(batch)),
                    Some(ReadEvent::Checkpoint(_)) => continue,
                    None => return Ok(None),
                }
            },
        }
    }
}

/// A failure of the payload store or the state database while extracting (may clear by itself).
fn transient(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::transient(e.to_string())
}

/// Counters the extract stage shares with the load stage.
#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) read: AtomicI64,
    /// Records the model itself got wrong (NULL or repeated identity).
    pub(crate) rejected: AtomicI64,
}

/// What the extract stage produced: the new snapshot (`None` when the sync keeps none) and
/// the tally of the changes it sent.
pub(crate) struct Extracted {
    pub(crate) snapshot: Option<String>,
    pub(crate) tally: Tally,
}

/// The extract stage: reads the model, diffs it and writes change chunks and the snapshot.
pub(crate) struct Extractor {
    pub(crate) store: PayloadStore,
    pub(crate) dir: String,
    pub(crate) mode: SyncMode,
    pub(crate) sending: Sending,
    /// The target field of each record field, for the samples of the tally.
    pub(crate) targets: Arc<[String]>,
    pub(crate) tally: Tally,
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
pub(crate) struct Diffing {
    pub(crate) differ: Differ,
    pub(crate) layout: KeyLayout,
    pub(crate) snapshot: SnapshotWriter,
    pub(crate) key: Vec<u8>,
    pub(crate) last_key: Option<Vec<u8>>,
    /// The run reads some of the model's records (a start naming identities): the entries of
    /// the others are kept in the new snapshot as they were, not taken as gone.
    pub(crate) partial: bool,
}

impl Diffing {
    /// Classifies a record by its identity; NULL and repeated identities are rejected. The
    /// previous entries found gone on the way are appended to `gone` (kept instead in a partial
    /// run).
    async fn classify(&mut self, record: Record<'_>, gone: &mut Vec<(Bytes, u64)>) -> Result<Verdict, ConnectorError> {
        match self.layout.encode(&record, &mut self.key) {
            Ok(()) => {}
            Err(e @ KeyError::Null(_)) => return Ok(Verdict::Rejected("null".into(), e.to_string())),
            Err(e) => return Ok(Verdict::Rejected(format!("record {}", record.index() + 1), e.to_string())),
        }
        let key = &self.key;
        if let Some(last) = &mut self.last_key {
            match last.as_slice().cmp(key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    let identity = self.layout.display(key);
                    let message =
                        format!("{identity}: the model has this identity more than once; the first record was synced");
                    return Ok(Verdict::Rejected(identity, message));
                }
                std::cmp::Ordering::Greater => {
                    return Err(ConnectorError::permanent("the source returned records out of identity order"));
                }
            }
            last.clear();
            last.extend_from_slice(key);
        } else {
            self.last_key = Some(key.clone());
        }
        let hash = xxh3_64(record.as_bytes());
        let from = gone.len();
        let change = self.differ.classify(key, hash, gone).await.map_err(transient)?;
        if self.partial {
            self.keep(gone.drain(from..)).await?;
        }
        self.snapshot.push(&self.key, hash).await.map_err(transient)?;
        Ok(Verdict::Changed(change))
    }

    /// Writes previous entries into the new snapshot unchanged (their records stay rejected if
    /// they were).
    async fn keep(&mut self, entries: impl Iterator<Item = (Bytes, u64)>) -> Result<(), ConnectorError> {
        for (key, hash) in entries {
            self.differ.unread(&key);
            self.snapshot.push(&key, hash).await.map_err(transient)?;
        }
        Ok(())
    }
}

/// Whether `mode` writes a record with `change`, and if so whether it is new to the
/// destination; `every` writes unchanged records too.
fn delivery(mode: SyncMode, change: Change, every: bool) -> Option<bool> {
    let change = match change {
        Change::Unchanged if every => Change::Update,
        change => change,
    };
    match (mode, change) {
        (_, Change::Unchanged) | (SyncMode::Create, Change::Update) => None,
        (SyncMode::Update, _) => Some(false),
        (SyncMode::Append | SyncMode::Snapshot, _) => Some(true),
        (_, change) => Some(change == Change::Insert),
    }
}

/// Which records a run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sending {
    /// Those that changed since the last run.
    Changes,
    /// Every record (`sync_all_records`).
    Everything,
    /// None: the run only remembers the model's records (`skip_initial_backfill`).
    Nothing,
}

impl Extractor {
    /// Reads, diffs and writes change chunks; returns the new snapshot's directory and the
    /// tally of what the chunks ask. The current span gets the numbers of records read and
    /// changed.
    pub(crate) async fn run(
        mut self,
        mut input: Input,
        mut diffing: Option<Diffing>,
    ) -> Result<Extracted, ConnectorError> {
        // Records to delete from the destination: in replace mode those gone from the model,
        // in remove mode those it lists; `vanished` gathers the former as the diff finds them.
        let mut deleted: Vec<Bytes> = Vec::new();
        let mut vanished: Vec<(Bytes, u64)> = Vec::new();
        let deletes = self.sending != Sending::Nothing;
        let mut changed = 0;
        while let Some(batch) = input.next_batch().await? {
            let before = self.progress.read.fetch_add(batch.len() as i64, Ordering::Relaxed) as usize;
            let mut chunk = UpsertChunk::with_capacity(batch.data().len());
            let mut rejected = Vec::new();
            for record in batch.records() {
                let change = match &mut diffing {
                    Some(diffing) => match diffing.classify(record, &mut vanished).await? {
                        Verdict::Changed(change) => change,
                        Verdict::Rejected(identity, message) => {
                            rejected.push((identity, message));
                            continue;
                        }
                    },
                    None => Change::Insert,
                };
                let delivered = match self.sending {
                    Sending::Nothing => None,
                    sending => delivery(self.mode, change, sending == Sending::Everything),
                };
                let identity = || match &diffing {
                    Some(diffing) => diffing.layout.display(&diffing.key),
                    None => format!("record {}", before + record.index() + 1),
                };
                match (delivered, &diffing) {
                    (None, _) => self.tally.unchanged += 1,
                    (Some(_), Some(diffing)) if self.mode == SyncMode::Remove => {
                        self.tally.delete(identity);
                        deleted.push(Bytes::copy_from_slice(&diffing.key))
                    }
                    (Some(insert), _) => {
                        self.tally.upsert(insert, identity, &record, &self.targets);
                        chunk.push(record.as_bytes(), insert)
                    }
                }
            }
            if let Some(diffing) = &diffing
                && self.mode == SyncMode::Replace
                && deletes
            {
                self.gone(&diffing.layout, vanished.drain(..), &mut deleted);
            }
            vanished.clear();
            if !rejected.is_empty() {
                self.progress.rejected.fetch_add(rejected.len() as i64, Ordering::Relaxed);
                executions::record_errors(&self.pool, self.execution_id, &rejected).await.map_err(transient)?;
            }
            if !chunk.is_empty() {
                changed += chunk.len();
                self.send(chunk.finish()).await?;
            }
            if let Some(diffing) = &diffing
                && deleted.len() >= self.batch_rows
            {
                self.send_deletes(&diffing.layout, &mut deleted).await?
            }
        }
        let span = tracing::Span::current();
        span.record("records_read", self.progress.read.load(Ordering::Relaxed)).record("records_changed", changed);
        let Some(mut diffing) = diffing else { return Ok(Extracted { snapshot: None, tally: self.tally }) };
        if diffing.partial || (self.mode == SyncMode::Replace && deletes) {
            diffing.differ.remaining(&mut vanished).await.map_err(transient)?;
        }
        match diffing.partial {
            true => diffing.keep(vanished.drain(..)).await?,
            false => self.gone(&diffing.layout, vanished.drain(..), &mut deleted),
        }
        self.send_deletes(&diffing.layout, &mut deleted).await?;
        let snapshot = diffing.snapshot.finish(self.fingerprint.clone()).await.map_err(transient)?;
        Ok(Extracted { snapshot: Some(snapshot), tally: self.tally })
    }

    /// Takes previous entries the model no longer has as records to delete.
    fn gone(&mut self, layout: &KeyLayout, entries: impl Iterator<Item = (Bytes, u64)>, deleted: &mut Vec<Bytes>) {
        for (key, _) in entries {
            self.tally.delete(|| layout.display(&key));
            deleted.push(key);
        }
    }

    async fn send_deletes(&mut self, layout: &KeyLayout, deleted: &mut Vec<Bytes>) -> Result<(), ConnectorError> {
        if deleted.is_empty() {
            return Ok(());
        }
        let chunk = changes::encode_deletes(layout, deleted)
            .map_err(|e| ConnectorError::permanent(format!("snapshot: {e}")))?;
        deleted.clear();
        self.send(chunk).await
    }

    async fn send(&mut self, chunk: Bytes) -> Result<(), ConnectorError> {
        let key = format!("{}/{:06}.bin", self.dir, self.seq);
        self.seq += 1;
        self.store.put(&key, chunk).await.map_err(transient)?;
        // A closed channel means the load stage stopped; it reports why.
        let _ = self.tx.send(key).await;
        Ok(())
    }
}
