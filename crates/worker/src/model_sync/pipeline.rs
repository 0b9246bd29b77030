//! One model sync execution: extract → diff → load, pipelined.
//!
//! The extract stage reads the model sorted by identity, merges it against the previous
//! snapshot, writes the records that changed as chunk files to the payload store and writes
//! the new snapshot beside them. The load stage reads each chunk back and writes it to the
//! destination, recording counts and per-record failures after every chunk. The two stages
//! run concurrently; a bounded channel of chunk keys keeps memory to a few batches.

use std::sync::Arc;

use serde_json::{Value as Json, json};
use syncline_core::{
    connector::{BatchWriter, ConnectorError, ReadRequest, Readable, WriteRequest},
    executions::{self, Claim, Counts, Outcome},
    record::{Schema, key::KeyLayout},
    sync::SyncSpec,
};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

use super::{
    SyncState,
    extract::{Diffing, Extractor, Input, Progress, Sending},
    load::{Layout, LoadEnd, Loader},
    plan::{self, Plan, RetryIdentity},
    snapshot::{Differ, SnapshotReader, SnapshotWriter},
    sort::{RUN_BYTES, Sorter},
};
use crate::{
    Services,
    abort::AbortOnDrop,
    kind::{RunEnd, Stop},
};

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

/// Runs the execution until it finishes or `stop` says otherwise. A stop ends the run at once,
/// wherever it is: dropping it closes its connections, which asks the source and destination
/// to stop what they were doing, and a batch not yet committed is never committed.
pub async fn run(
    services: &Services,
    claim: &Claim,
    worker: &str,
    stop: watch::Receiver<Option<Stop>>,
) -> RunEnd<SyncState> {
    let mut counts = Counts::default();
    let mut signal = stop.clone();
    let stopped = tokio::select! {
        // A run that finished as the stop came is kept: its writes are done.
        biased;
        end = execute(services, claim, worker, stop, &mut counts) => Err(end),
        stop = signal.wait_for(Option::is_some) => Ok(stop.ok().and_then(|s| *s).unwrap_or(Stop::Lost)),
    };
    match stopped {
        Ok(stop) => RunEnd::Stopped { stop, counts },
        Err(end) => end,
    }
}

async fn execute(
    services: &Services,
    claim: &Claim,
    worker: &str,
    stop: watch::Receiver<Option<Stop>>,
    counts: &mut Counts,
) -> RunEnd<SyncState> {
    let Claim { execution_id, subject_id: sync_id, resync, .. } = *claim;
    let progress = Arc::new(Progress::default());
    let failed = |error: ConnectorError, counts: Counts| RunEnd::Finished {
        outcome: Outcome::Failed { error: error.message, class: error.class },
        counts,
    };
    // The run's own context: whichever way the run ends, its connectors' calls are cancelled.
    let ctx = services.connector.child();
    let _cancel = ctx.cancel.clone().drop_guard();
    let plan = match plan::load(services, &ctx, sync_id).await {
        Ok(plan) => plan,
        Err(error) => return failed(error, *counts),
    };
    match plan.source.estimate_rows(&Readable::Model(plan.model.clone())).await {
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
        Err(error) => return failed(error, *counts),
    };
    let Prepared { layout, writer, extract, chunks } = prepared;
    let _abort = AbortOnDrop(extract.abort_handle());
    let loader = Loader { services, execution_id, worker, layout: &layout, progress: &progress };
    let load_span =
        tracing::info_span!("load", records_written = tracing::field::Empty, requests = tracing::field::Empty);
    let loaded = loader.run(writer, chunks, stop, counts).instrument(load_span.clone()).await;
    load_span.record("records_written", counts.written).record("requests", ctx.metrics.requests());
    match loaded {
        Ok(LoadEnd::Drained(failures)) => match extract.await {
            Ok(Ok(snapshot)) => {
                progress.add_to(counts);
                let retry: Vec<Json> = failures
                    .iter()
                    .map(|(key, insert)| json!(RetryIdentity { key: hex::encode(key), insert: *insert }))
                    .collect();
                let keep = retry.len() <= MAX_RETRY_IDENTITIES;
                let outcome = Outcome::Completed(SyncState {
                    snapshot: if keep { snapshot } else { None },
                    retry_identities: if keep { retry } else { vec![] },
                    superseded: plan.snapshot_path.clone(),
                });
                RunEnd::Finished { outcome, counts: *counts }
            }
            Ok(Err(error)) => failed(error, *counts),
            Err(e) => failed(ConnectorError::permanent(format!("the extract stage crashed: {e}")), *counts),
        },
        Ok(LoadEnd::Stopped(stop)) => {
            extract.abort();
            RunEnd::Stopped { stop, counts: *counts }
        }
        Err(error) => {
            extract.abort();
            // An extract error usually explains why the chunks stopped coming: prefer it.
            let error = match extract.await {
                Ok(Err(extract_error)) => extract_error,
                _ => error,
            };
            failed(error, *counts)
        }
    }
}

struct Prepared {
    layout: Layout,
    writer: Box<dyn BatchWriter>,
    extract: tokio::task::JoinHandle<Result<Option<String>, ConnectorError>>,
    chunks: mpsc::Receiver<String>,
}

/// A failure of the payload store while preparing (may clear by itself).
fn transient(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::transient(e.to_string())
}

/// Opens the source read and the destination writer and starts the extract stage.
async fn prepare(
    services: &Services,
    plan: &Plan,
    execution_id: Uuid,
    sync_id: Uuid,
    resync: bool,
    progress: Arc<Progress>,
) -> Result<Prepared, ConnectorError> {
    let spec = &plan.spec;
    let identity: Vec<String> = spec.identity_mappings().iter().map(|i| i.source.field.clone()).collect();
    if spec.mode.requires_identity() && identity.is_empty() {
        return Err(ConnectorError::config(format!("mode {} needs an identity", spec.mode.as_str())));
    }
    let object = spec.target.object.clone().ok_or_else(|| ConnectorError::config("the sync has no target object"))?;
    let (sources, targets): (Vec<String>, Vec<String>) = spec.columns().into_iter().unzip();
    if sources.is_empty() {
        return Err(ConnectorError::config("the sync maps no fields"));
    }
    let mut request =
        ReadRequest::new(Readable::Model(plan.model.clone()), sources, services.batch_rows, services.batch_bytes);
    request.order_by = identity.clone();
    // What the definition asks was checked when it was stored; field types are not needed again.
    let invalid = |e: syncline_core::sync::filter::Invalid| ConnectorError::config(e.to_string());
    request.filter = spec.model_filter(|_| None).map_err(invalid)?;
    let shaping = spec.shaping(|_| None, |_| None).map_err(invalid)?;
    let reading = plan.source.read(request).await?;
    let schema = reading.schema.clone();
    let key = match identity.is_empty() {
        true => None,
        false => Some(KeyLayout::new(&schema, &identity).map_err(ConnectorError::config)?),
    };
    let write_request = WriteRequest {
        object: object.clone(),
        mode: spec.mode,
        schema: schema.clone(),
        targets: targets.clone(),
        identity: key.as_ref().map(|k| k.positions().collect()).unwrap_or_default(),
        shaping,
    };
    let key_schema = Arc::new(write_request.key_schema());
    let writer = plan.destination.writer(write_request).await?;
    let fingerprint = fingerprint(spec, &object, &targets, &schema);
    let diffing = match &key {
        Some(_) if spec.mode.rewrites_everything() => None,
        Some(layout) => {
            let old = match (&plan.snapshot_path, resync) {
                (Some(dir), false) => {
                    SnapshotReader::open(&services.store, dir, &fingerprint).await.map_err(transient)?
                }
                _ => None,
            };
            Some(Diffing {
                differ: Differ::new(old, plan.retry.clone()).await.map_err(transient)?,
                layout: layout.clone(),
                snapshot: SnapshotWriter::new(services.store.clone(), snapshot_dir(sync_id, execution_id)),
                key: Vec::new(),
                last_key: None,
            })
        }
        None => None,
    };
    let input = match (&key, reading.sorted) {
        (Some(layout), false) => {
            let sorter = Sorter {
                store: services.store.clone(),
                dir: format!("{}/sort", changes_dir(execution_id)),
                layout: layout.clone(),
                schema: schema.clone(),
                run_bytes: RUN_BYTES,
                batch_rows: services.batch_rows,
            };
            Input::Sorting(sorter, reading.events)
        }
        _ => Input::Stream(reading.events),
    };
    let (tx, chunks) = mpsc::channel(2);
    let extractor = Extractor {
        store: services.store.clone(),
        dir: format!("{}/changes", changes_dir(execution_id)),
        mode: spec.mode,
        sending: match (spec.sync_all_records, spec.skip_initial_backfill && plan.snapshot_path.is_none() && !resync) {
            (_, true) => Sending::Nothing,
            (true, false) => Sending::Everything,
            (false, false) => Sending::Changes,
        },
        batch_rows: services.batch_rows,
        fingerprint,
        tx,
        progress,
        pool: services.pool.clone(),
        execution_id,
        seq: 0,
    };
    let span =
        tracing::info_span!("extract", records_read = tracing::field::Empty, records_changed = tracing::field::Empty);
    let extract = tokio::spawn(extractor.run(input, diffing).instrument(span));
    let layout = Layout { schema, key_schema, identity: key };
    Ok(Prepared { layout, writer, extract, chunks })
}

/// The version of the snapshot's key format (identity keys of `syncline_core::record::key`).
const KEY_FORMAT: &str = "keys-v2";

/// Identifies the mapping, the values it writes and the key format a snapshot was taken under
/// (a change of any of them makes the next run write every record again). Model filters are
/// left out: records they stop selecting are diffed as gone.
fn fingerprint(spec: &SyncSpec, object: &str, targets: &[String], schema: &Schema) -> String {
    let writes = (&spec.fields, &spec.override_fields, &spec.overrides, &spec.target_filters);
    let description = serde_json::json!([KEY_FORMAT, spec.mode.as_str(), object, targets, schema, writes]).to_string();
    format!("{:016x}", xxh3_64(description.as_bytes()))
}
