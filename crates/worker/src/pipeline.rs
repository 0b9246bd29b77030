//! One model sync execution: extract → diff → load, pipelined.
//!
//! The extract stage reads the model sorted by identity, merges it against the previous
//! snapshot, writes the records that changed as chunk files to the payload store and writes
//! the new snapshot beside them. The load stage reads each chunk back and writes it to the
//! destination, recording counts and per-record failures after every chunk. The two stages
//! run concurrently; a bounded channel of chunk keys keeps memory to a few batches.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value as Json, json};
use syncline_core::{
    connector::{BatchStream, BatchWriter, SyncMode, WriteRequest},
    executions::{self, Counts, Lease, Outcome},
    record::{Field, KeyOrder, Record, RecordBatchBuilder, Schema, Value},
};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

use crate::{
    Services,
    changes::{self, ChunkKind, UpsertChunk},
    plan::{self, Plan, RetryIdentity},
    snapshot::{Change, Differ, SnapshotReader, SnapshotWriter},
};

/// Why an execution stopped before finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A user asked to cancel.
    Cancel,
    /// Another worker owns the execution now.
    Lost,
    /// This worker is shutting down.
    Shutdown,
}

/// How a run ended.
#[derive(Debug)]
pub enum RunEnd {
    /// The run is over; `superseded` is the snapshot a completed run replaces.
    Finished {
        outcome: Outcome,
        counts: Counts,
        superseded: Option<String>,
    },
    Stopped {
        stop: Stop,
        counts: Counts,
    },
}

/// Where an execution keeps its change chunks.
pub fn changes_dir(execution_id: Uuid) -> String {
    format!("executions/{execution_id}")
}

/// Where an execution writes the sync's new snapshot.
pub fn snapshot_dir(sync_id: Uuid, execution_id: Uuid) -> String {
    format!("syncs/{sync_id}/snapshots/{execution_id}")
}

/// Most identities remembered for resending; past this the next run resends everything.
const MAX_RETRY_IDENTITIES: usize = 10_000;

/// Counters the extract stage shares with the load stage.
#[derive(Default)]
struct Progress {
    read: AtomicI64,
    /// Records the model itself got wrong (NULL or repeated identity).
    rejected: AtomicI64,
}

/// What the load stage needs to know about the records.
struct Layout {
    schema: Arc<Schema>,
    key_schema: Arc<Schema>,
    has_identity: bool,
}

/// Runs the execution until it finishes or `stop` says otherwise.
pub async fn run(
    services: &Services,
    execution_id: Uuid,
    sync_id: Uuid,
    resync: bool,
    worker: &str,
    stop: watch::Receiver<Option<Stop>>,
) -> RunEnd {
    let progress = Arc::new(Progress::default());
    let mut counts = Counts::default();
    let failed = |error: String, counts: Counts| RunEnd::Finished {
        outcome: Outcome::Failed { error },
        counts,
        superseded: None,
    };
    let plan = match plan::load(services, sync_id).await {
        Ok(plan) => plan,
        Err(error) => return failed(error, counts),
    };
    match plan.source.estimate_rows(&plan.model).await {
        Ok(Some(estimate)) => {
            if let Err(e) = executions::record_estimate(&services.pool, execution_id, worker, estimate as i64).await {
                tracing::debug!(%execution_id, error = %e, "could not record the row estimate");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(%execution_id, error = %e, "the source gave no row estimate"),
    }
    let prepared = match prepare(services, &plan, execution_id, sync_id, resync, progress.clone()).await {
        Ok(prepared) => prepared,
        Err(error) => return failed(error, counts),
    };
    let Prepared { layout, writer, extract, chunks } = prepared;
    match load(services, execution_id, worker, &layout, writer, chunks, stop, &progress, &mut counts).await {
        Ok(LoadEnd::Drained(failures)) => match extract.await {
            Ok(Ok(snapshot)) => {
                progress.add_to(&mut counts);
                let retry: Vec<Json> = failures
                    .iter()
                    .map(|(key, insert)| json!(RetryIdentity { key: hex::encode(key), insert: *insert }))
                    .collect();
                let keep = retry.len() <= MAX_RETRY_IDENTITIES;
                let outcome = Outcome::Completed {
                    snapshot: if keep { snapshot } else { None },
                    retry_identities: if keep { retry } else { vec![] },
                };
                RunEnd::Finished { outcome, counts, superseded: plan.snapshot_path.clone() }
            }
            Ok(Err(error)) => failed(error, counts),
            Err(e) => failed(format!("extract stage crashed: {e}"), counts),
        },
        Ok(LoadEnd::Stopped(stop)) => {
            extract.abort();
            RunEnd::Stopped { stop, counts }
        }
        Err(error) => {
            extract.abort();
            // An extract error usually explains why the chunks stopped coming: prefer it.
            let error = match extract.await {
                Ok(Err(extract_error)) => extract_error,
                _ => error,
            };
            failed(error, counts)
        }
    }
}

struct Prepared {
    layout: Layout,
    writer: Box<dyn BatchWriter>,
    extract: tokio::task::JoinHandle<Result<Option<String>, String>>,
    chunks: mpsc::Receiver<String>,
}

/// Opens the source stream and the destination writer and starts the extract stage.
async fn prepare(
    services: &Services,
    plan: &Plan,
    execution_id: Uuid,
    sync_id: Uuid,
    resync: bool,
    progress: Arc<Progress>,
) -> Result<Prepared, String> {
    let spec = &plan.spec;
    if spec.mode.requires_identity() && spec.identity.is_none() {
        return Err(format!("mode {} needs an identity", spec.mode.as_str()));
    }
    let object = spec.target.object.clone().ok_or("the sync has no target object")?;
    let (sources, targets): (Vec<String>, Vec<String>) = spec.columns().into_iter().unzip();
    if sources.is_empty() {
        return Err("the sync maps no fields".into());
    }
    let identity = spec.identity.as_ref().map(|i| i.source.field.clone());
    let request = syncline_core::connector::ReadRequest {
        model: plan.model.clone(),
        fields: sources,
        order_by: identity.clone(),
        batch_rows: services.batch_rows,
        batch_bytes: services.batch_bytes,
    };
    let (schema, stream) = plan.source.read(request).await.map_err(|e| e.message)?;
    let key_order = match identity.is_some() {
        true => Some(schema.fields[0].field_type.key_order().ok_or_else(|| {
            format!("identity field {:?} has type {}, which cannot identify records (use an integer, text, uuid, date or timestamp field)",
                schema.fields[0].name, schema.fields[0].field_type.postgres_name())
        })?),
        false => None,
    };
    let write_request = WriteRequest {
        object: object.clone(),
        mode: spec.mode,
        schema: schema.clone(),
        targets: targets.clone(),
        identity: identity.as_ref().map(|_| 0),
    };
    let writer = plan.destination.writer(write_request).await.map_err(|e| e.message)?;
    let fingerprint = fingerprint(spec.mode, &object, &targets, &schema);
    let old = match (&plan.snapshot_path, key_order, resync) {
        (Some(dir), Some(order), false) => {
            SnapshotReader::open(&services.store, dir, order, &fingerprint).await.map_err(|e| e.to_string())?
        }
        _ => None,
    };
    let differ = match key_order {
        Some(order) => Some((Differ::new(old, order, plan.retry.clone()).await.map_err(|e| e.to_string())?, order)),
        None => None,
    };
    let key_schema = Arc::new(Schema { fields: schema.fields.iter().take(1).cloned().collect::<Vec<Field>>() });
    let (tx, chunks) = mpsc::channel(2);
    let extractor = Extractor {
        store: services.store.clone(),
        dir: format!("{}/changes", changes_dir(execution_id)),
        snapshot_dir: snapshot_dir(sync_id, execution_id),
        mode: spec.mode,
        batch_rows: services.batch_rows,
        fingerprint,
        tx,
        progress,
        pool: services.pool.clone(),
        execution_id,
        seq: 0,
    };
    let extract = tokio::spawn(extractor.run(stream, differ, schema.clone()));
    let layout = Layout { schema, key_schema, has_identity: identity.is_some() };
    Ok(Prepared { layout, writer, extract, chunks })
}

/// Identifies the mapping a snapshot was taken under.
fn fingerprint(mode: SyncMode, object: &str, targets: &[String], schema: &Schema) -> String {
    let description = serde_json::json!([mode.as_str(), object, targets, schema]).to_string();
    format!("{:016x}", xxh3_64(description.as_bytes()))
}

struct Extractor {
    store: syncline_core::payload::PayloadStore,
    dir: String,
    snapshot_dir: String,
    mode: SyncMode,
    batch_rows: usize,
    fingerprint: String,
    tx: mpsc::Sender<String>,
    progress: Arc<Progress>,
    pool: syncline_core::db::DbPool,
    execution_id: Uuid,
    seq: usize,
}

impl Progress {
    /// Copies the shared counters into `counts`.
    fn add_to(&self, counts: &mut Counts) {
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
    async fn run(
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
                self.send_deletes(&mut deleted, &schema).await?;
            }
        }
        let Some(mut diffing) = diffing else { return Ok(None) };
        if self.mode == SyncMode::Replace {
            diffing.differ.remaining(&mut deleted).await.map_err(|e| e.to_string())?;
            self.send_deletes(&mut deleted, &schema).await?;
        }
        let snapshot =
            diffing.snapshot.finish(diffing.order, self.fingerprint.clone()).await.map_err(|e| e.to_string())?;
        Ok(Some(snapshot))
    }

    async fn send_deletes(&mut self, deleted: &mut Vec<Bytes>, schema: &Arc<Schema>) -> Result<(), String> {
        if deleted.is_empty() {
            return Ok(());
        }
        let key_schema = Arc::new(Schema { fields: schema.fields.iter().take(1).cloned().collect() });
        let mut builder = RecordBatchBuilder::with_capacity(key_schema, deleted.len() * 16);
        for key in deleted.iter() {
            builder.push_values([Some(&key[..])]);
        }
        let count = builder.len();
        let batch = builder.finish();
        deleted.clear();
        self.send(changes::encode_deletes(count, batch.data())).await
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

enum LoadEnd {
    /// Every chunk was loaded; these identities were rejected by the destination.
    Drained(Vec<(Vec<u8>, bool)>),
    Stopped(Stop),
}

/// Loads chunks as they arrive until the extract stage is done or a stop is signalled.
#[allow(clippy::too_many_arguments)]
async fn load(
    services: &Services,
    execution_id: Uuid,
    worker: &str,
    layout: &Layout,
    mut writer: Box<dyn BatchWriter>,
    mut chunks: mpsc::Receiver<String>,
    mut stop: watch::Receiver<Option<Stop>>,
    progress: &Progress,
    counts: &mut Counts,
) -> Result<LoadEnd, String> {
    let mut rejected: HashMap<Vec<u8>, bool> = HashMap::new();
    loop {
        if let Some(signal) = *stop.borrow() {
            return Ok(LoadEnd::Stopped(signal));
        }
        let key = tokio::select! {
            key = chunks.recv() => key,
            _ = stop.changed() => continue,
        };
        let Some(key) = key else { break };
        let bytes = services.store.get(&key).await.map_err(|e| e.to_string())?;
        let chunk = changes::decode(bytes, &layout.schema, &layout.key_schema).map_err(|e| format!("{key}: {e}"))?;
        match chunk.kind {
            ChunkKind::Upserts => {
                let all_new = chunk.inserts.iter().all(|insert| *insert);
                let failures = writer.write(&chunk.records, all_new).await.map_err(|e| e.message)?;
                let mut failed = vec![false; chunk.records.len()];
                let mut errors = Vec::with_capacity(failures.len());
                for failure in failures {
                    failed[failure.index] = true;
                    let record = chunk.records.record(failure.index);
                    let identity = match layout.has_identity {
                        true => {
                            let key = record.value(0).unwrap_or_default();
                            rejected.insert(key.to_vec(), chunk.inserts[failure.index]);
                            Value::decode(layout.schema.fields[0].field_type, Some(key)).to_string()
                        }
                        false => format!("record {}", counts.changed as usize + failure.index + 1),
                    };
                    errors.push((
                        identity.clone(),
                        format!("{}={identity}: {}", layout.schema.fields[0].name, failure.message),
                    ));
                }
                executions::record_errors(&services.pool, execution_id, &errors).await.map_err(|e| e.to_string())?;
                for (insert, failed) in chunk.inserts.iter().zip(&failed) {
                    match (failed, insert) {
                        (true, _) => counts.rejected += 1,
                        (false, true) => counts.inserted += 1,
                        (false, false) => counts.updated += 1,
                    }
                }
                counts.changed += chunk.records.len() as i64;
                counts.written += failed.iter().filter(|f| !**f).count() as i64;
            }
            ChunkKind::Deletes => {
                writer.delete(&chunk.records).await.map_err(|e| e.message)?;
                counts.changed += chunk.records.len() as i64;
                counts.deleted += chunk.records.len() as i64;
                counts.written += chunk.records.len() as i64;
            }
        }
        progress.add_to(counts);
        match executions::record_progress(&services.pool, execution_id, worker, counts)
            .await
            .map_err(|e| e.to_string())?
        {
            Lease::Held => {}
            Lease::CancelRequested => return Ok(LoadEnd::Stopped(Stop::Cancel)),
            Lease::Lost => return Ok(LoadEnd::Stopped(Stop::Lost)),
        }
    }
    Ok(LoadEnd::Drained(rejected.into_iter().collect()))
}
