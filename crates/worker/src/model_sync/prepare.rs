//! Setting a run up: the source read (filtered, restricted to the records a start names, in
//! identity order), the destination writer, the diff against the last snapshot, and the
//! extract stage started on its own task.

use std::sync::Arc;

use syncline_core::{
    connector::{BatchWriter, ConnectorError, IdentityFunction, Matching, ReadRequest, Readable, WriteRequest},
    record::{Schema, key::KeyLayout},
    sync::{SyncSpec, changes_dir, filter::Predicate, snapshot_dir},
};
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

use super::{
    console::{self, Stage},
    extract::{Diffing, Extracted, Extractor, Input, Progress, Sending},
    load::Layout,
    plan::Plan,
    review::Tally,
    snapshot::{Differ, Held, Rejected, SnapshotReader, SnapshotWriter},
    sort::{RUN_BYTES, Sorter},
};
use crate::Services;

/// A run ready to go: the extract stage started, chunk keys coming on `chunks`.
pub(super) struct Prepared {
    pub(super) layout: Layout,
    pub(super) writer: Box<dyn BatchWriter>,
    pub(super) extract: tokio::task::JoinHandle<Result<Extracted, ConnectorError>>,
    pub(super) chunks: mpsc::Receiver<String>,
    pub(super) fingerprint: String,
    /// Rejected records the diff held back because they did not change.
    pub(super) held: Held,
}

/// What a run reads and how it diffs.
pub(super) struct Reading<'a> {
    pub(super) execution_id: Uuid,
    pub(super) sync_id: Uuid,
    pub(super) resync: bool,
    /// Only the records a start named (`None`: every record of the model).
    pub(super) only: Option<Predicate>,
    pub(super) progress: Arc<Progress>,
    pub(super) plan: &'a Plan,
}

/// A failure of the payload store while preparing (may clear by itself).
fn transient(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::transient(e.to_string())
}

/// The model fields of a sync's identity.
pub(super) fn identity_fields(spec: &SyncSpec) -> Vec<String> {
    spec.identity_mappings().iter().map(|i| i.source.field.clone()).collect()
}

/// Opens the source read and the destination writer and starts the extract stage.
pub(super) async fn prepare(services: &Services, run: Reading<'_>) -> Result<Prepared, ConnectorError> {
    let Reading { execution_id, sync_id, resync, only, progress, plan } = run;
    let spec = &plan.spec;
    let identity = identity_fields(spec);
    if spec.mode.requires_identity() && identity.is_empty() {
        return Err(ConnectorError::config(format!("mode {} needs an identity", spec.mode.as_str())));
    }
    let sources: Vec<String> = spec.columns().into_iter().map(|(source, _)| source).collect();
    if sources.is_empty() {
        return Err(ConnectorError::config("the sync maps no fields"));
    }
    let mut request =
        ReadRequest::new(Readable::Model(plan.model.clone()), sources, services.batch_rows, services.batch_bytes);
    request.order_by = identity.clone();
    // What the definition asks was checked when it was stored; field types are not needed again.
    let filter = spec.model_filter(|_| None).map_err(|e| ConnectorError::config(e.to_string()))?;
    let partial = only.is_some();
    request.filter = match (filter, only) {
        (Some(filter), Some(only)) => Some(Predicate::All(vec![filter, only])),
        (filter, only) => filter.or(only),
    };
    let reading = plan.source.read(request).await?;
    let schema = reading.schema.clone();
    let (writer, layout, fingerprint) = open_writer(plan, schema.clone(), &identity).await?;
    let mut tally = Tally::default();
    let held = Held::default();
    let diffing = match &layout.identity {
        Some(_) if spec.mode.rewrites_everything() => None,
        Some(key) => {
            let old = match (&plan.snapshot_path, resync) {
                (Some(dir), false) => {
                    SnapshotReader::open(&services.store, dir, &fingerprint).await.map_err(transient)?
                }
                _ => None,
            };
            tally.delivered = old.as_ref().map_or(0, SnapshotReader::entries);
            let rejected =
                Rejected { identities: plan.retry.clone(), resend: plan.resends_rejected(), held: held.clone() };
            Some(Diffing {
                differ: Differ::new(old, rejected).await.map_err(transient)?,
                layout: key.clone(),
                snapshot: SnapshotWriter::new(services.store.clone(), snapshot_dir(sync_id, execution_id)),
                key: Vec::new(),
                last_key: None,
                partial,
            })
        }
        None => None,
    };
    let input = match (&layout.identity, reading.sorted) {
        (Some(key), false) => {
            let sorter = Sorter {
                store: services.store.clone(),
                dir: format!("{}/sort", changes_dir(execution_id)),
                layout: key.clone(),
                schema: schema.clone(),
                run_bytes: RUN_BYTES,
                batch_rows: services.batch_rows,
            };
            Input::Sorting(sorter, reading.events)
        }
        _ => Input::Stream(reading.events),
    };
    let (tx, chunks) = mpsc::channel(2);
    let first_run = plan.snapshot_path.is_none() && !resync;
    let extractor = Extractor {
        store: services.store.clone(),
        dir: format!("{}/changes", changes_dir(execution_id)),
        mode: spec.mode,
        sending: match (spec.sync_all_records, spec.skip_initial_backfill && first_run) {
            (_, true) => Sending::Nothing,
            (true, false) => Sending::Everything,
            (false, false) => Sending::Changes,
        },
        targets: spec.columns().into_iter().map(|(_, target)| target).collect(),
        tally,
        batch_rows: services.batch_rows,
        fingerprint: fingerprint.clone(),
        tx,
        progress: progress.clone(),
        pool: services.pool.clone(),
        execution_id,
        seq: 0,
    };
    let span =
        tracing::info_span!("extract", records_read = tracing::field::Empty, records_changed = tracing::field::Empty);
    let pool = services.pool.clone();
    let extract = tokio::spawn(
        async move {
            let extracted = extractor.run(input, diffing).await;
            if let Ok(Extracted { tally, .. }) = &extracted {
                console::note(&pool, execution_id, Stage::Extracted(&progress, tally)).await;
            }
            extracted
        }
        .instrument(span),
    );
    Ok(Prepared { layout, writer, extract, chunks, fingerprint, held })
}

/// Opens the destination writer for records of `schema` identified by the model fields
/// `identity`; returns it with the records' layout and the mapping's fingerprint.
pub(super) async fn open_writer(
    plan: &Plan,
    schema: Arc<Schema>,
    identity: &[String],
) -> Result<(Box<dyn BatchWriter>, Layout, String), ConnectorError> {
    let spec = &plan.spec;
    let object = spec.target.object.clone().ok_or_else(|| ConnectorError::config("the sync has no target object"))?;
    let targets: Vec<String> = spec.columns().into_iter().map(|(_, target)| target).collect();
    let key = match identity.is_empty() {
        true => None,
        false => Some(KeyLayout::new(&schema, identity).map_err(ConnectorError::config)?),
    };
    let shaping = spec.shaping(|_| None, |_| None).map_err(|e| ConnectorError::config(e.to_string()))?;
    let fingerprint = fingerprint(spec, &object, &targets, &schema);
    let request = WriteRequest {
        object,
        mode: spec.mode,
        schema: schema.clone(),
        targets,
        identity: key.as_ref().map(|k| k.positions().collect()).unwrap_or_default(),
        shaping,
        matching: Matching {
            functions: spec
                .identity_mappings()
                .iter()
                .map(|i| IdentityFunction::parse(&i.function).unwrap_or_default())
                .collect(),
            priority: spec.identities.as_ref().is_some_and(|i| i.strategy.as_deref() == Some("priority")),
        },
    };
    let key_schema = Arc::new(request.key_schema());
    let key_identity = match &key {
        Some(_) => {
            let names: Vec<String> = key_schema.fields.iter().map(|f| f.name.clone()).collect();
            Some(KeyLayout::new(&key_schema, &names).map_err(ConnectorError::config)?)
        }
        None => None,
    };
    let targets = request.targets.clone();
    let writer = plan.destination.writer(request).await?;
    Ok((writer, Layout { schema, key_schema, identity: key, key_identity, targets }, fingerprint))
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
