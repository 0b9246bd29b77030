//! One model sync execution: extract → diff → load, pipelined.
//!
//! The extract stage reads the model sorted by identity, merges it against the previous
//! snapshot, writes the records that changed as chunk files to the payload store and writes
//! the new snapshot beside them. The load stage reads each chunk back and writes it to the
//! destination, recording counts and per-record failures after every chunk. The two stages
//! run concurrently; a bounded channel of chunk keys keeps memory to a few batches.
//!
//! A run that is reviewed first — a `test` start, or a sync with blast-radius limits — lets the
//! extract stage finish before anything is written: its plan (counts and samples) is recorded
//! on the execution; a test ends there, a plan over the limits waits for approval keeping its
//! chunks (see [`super::review`]), and the approved run loads them without reading again.

use std::sync::Arc;

use serde_json::{Value as Json, json};
use syncline_core::{
    connector::{BatchWriter, ConnectorError, Readable, SyncMode},
    executions::{self, Claim, Counts, Outcome, Report},
    sync::StartOptions,
};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use uuid::Uuid;

use super::{
    DiffState, SyncState,
    console::{self, Stage},
    extract::{Extracted, Progress},
    load::{Layout, LoadEnd, Loader},
    plan::{self, Plan, RetryIdentity},
    prepare::{self, Prepared, Reading, identity_fields, open_writer},
    record_log::{self, RecordLog},
    review::{self, Kept},
    snapshot::Identity,
};
use crate::{
    Services,
    abort::AbortOnDrop,
    kind::{RunEnd, Stop},
};

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
    let end = match stopped {
        Ok(stop) => RunEnd::Stopped { stop, counts },
        Err(end) => end,
    };
    console::note(&services.pool, claim.execution_id, Stage::Ended(&end)).await;
    end
}

/// A failed run's end.
fn failed(error: ConnectorError, counts: Counts) -> RunEnd<SyncState> {
    RunEnd::Finished { outcome: Outcome::Failed { error: error.message, class: error.class }, counts }
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
    // The run's own context: whichever way the run ends, its connectors' calls are cancelled.
    let ctx = services.connector.child();
    let _cancel = ctx.cancel.clone().drop_guard();
    let plan = match plan::load(services, &ctx, sync_id).await {
        Ok(plan) => plan,
        Err(error) => return failed(error, *counts),
    };
    console::note(&services.pool, execution_id, Stage::Started(&plan)).await;
    if let Some(approved) = &claim.approved_plan {
        return carry_out(services, claim, worker, stop, counts, &plan, approved).await;
    }
    let options: StartOptions = match serde_json::from_value(claim.options.clone()) {
        Ok(options) => options,
        Err(e) => return failed(ConnectorError::config(format!("start options: {e}")), *counts),
    };
    let only = match options.restriction(&plan.spec) {
        Ok(only) => only,
        Err(e) => return failed(ConnectorError::config(e.to_string()), *counts),
    };
    record_estimate(services, &plan, execution_id, worker).await;
    let reading = Reading { execution_id, sync_id, resync, only, progress: progress.clone(), plan: &plan };
    let prepared = prepare::prepare(services, reading).await;
    let Prepared { layout, writer, mut extract, chunks, fingerprint, held } = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return failed(error, *counts),
    };
    let _abort = AbortOnDrop(extract.abort_handle());
    let reviewed = options.test || plan.spec.blast_radius.is_some();
    let (chunks, extracted) = match reviewed {
        false => (chunks, None),
        true => {
            let keys = drain(chunks).await;
            let extracted = match joined(&mut extract).await {
                Ok(extracted) => extracted,
                Err(error) => return failed(error, *counts),
            };
            progress.add_to(counts);
            let tally = &extracted.tally;
            let exceeded = match &plan.spec.blast_radius {
                Some(limits) => limits.exceeded(tally.delivered, tally.updates, tally.deletes),
                None => vec![],
            };
            let mut review = review::Plan { tally: tally.clone(), exceeded, test: options.test, kept: None };
            let waits = !options.test && !review.exceeded.is_empty();
            if waits {
                review.kept = Some(Kept {
                    schema: (*layout.schema).clone(),
                    identity: identity_fields(&plan.spec),
                    chunks: keys.clone(),
                    snapshot: extracted.snapshot.clone(),
                    superseded: plan.snapshot_path.clone(),
                    fingerprint,
                    read: counts.read,
                    rejected: counts.errors,
                    held: encoded(held.take()),
                });
            }
            let recorded = executions::report(&services.pool, execution_id, worker, Report::Plan, &json!(review)).await;
            if let Err(e) = recorded {
                return failed(ConnectorError::transient(format!("recording the plan: {e}")), *counts);
            }
            if options.test {
                return RunEnd::Finished { outcome: Outcome::Completed(SyncState::Unchanged), counts: *counts };
            }
            if waits {
                return RunEnd::Waiting { counts: *counts };
            }
            (filled(keys), Some(extracted))
        }
    };
    let loaded =
        load((services, &plan), claim, worker, (stop, counts), (&layout, writer, chunks), &progress, &ctx).await;
    match loaded {
        Ok(LoadEnd::Drained(failures)) => {
            let extracted = match extracted {
                Some(extracted) => Ok(extracted),
                None => joined(&mut extract).await,
            };
            match extracted {
                Ok(extracted) => {
                    progress.add_to(counts);
                    let snapshots = (extracted.snapshot, plan.snapshot_path.clone());
                    let rejected = encoded(failures.into_iter().chain(held.take()));
                    completed(services, (execution_id, &plan), snapshots, rejected, *counts).await
                }
                Err(error) => failed(error, *counts),
            }
        }
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

/// Carries out the plan a user approved: loads the chunks its run kept, without reading the
/// model again, unless the sync's mapping changed since.
async fn carry_out(
    services: &Services,
    claim: &Claim,
    worker: &str,
    stop: watch::Receiver<Option<Stop>>,
    counts: &mut Counts,
    plan: &Plan,
    approved: &Json,
) -> RunEnd<SyncState> {
    let kept = match serde_json::from_value::<review::Plan>(approved.clone()).map(|p| p.kept) {
        Ok(Some(kept)) => kept,
        _ => return failed(ConnectorError::permanent("the approved plan kept nothing to carry out"), *counts),
    };
    let (writer, layout, fingerprint) = match open_writer(plan, Arc::new(kept.schema), &kept.identity).await {
        Ok(opened) => opened,
        Err(error) => return failed(error, *counts),
    };
    if fingerprint != kept.fingerprint {
        let error = "the sync's mapping changed while its run waited for approval; start it again";
        return failed(ConnectorError::config(error), *counts);
    }
    let progress = Progress::default();
    progress.read.store(kept.read, std::sync::atomic::Ordering::Relaxed);
    progress.rejected.store(kept.rejected, std::sync::atomic::Ordering::Relaxed);
    let ctx = services.connector.child();
    let chunks = filled(kept.chunks);
    match load((services, plan), claim, worker, (stop, counts), (&layout, writer, chunks), &progress, &ctx).await {
        Ok(LoadEnd::Drained(failures)) => {
            progress.add_to(counts);
            let rejected = encoded(failures).into_iter().chain(kept.held).collect();
            completed(services, (claim.execution_id, plan), (kept.snapshot, kept.superseded), rejected, *counts).await
        }
        Ok(LoadEnd::Stopped(stop)) => RunEnd::Stopped { stop, counts: *counts },
        Err(error) => failed(error, *counts),
    }
}

/// Records the source's estimate of the model's records, if it has one.
async fn record_estimate(services: &Services, plan: &Plan, execution_id: Uuid, worker: &str) {
    match plan.source.estimate_rows(&Readable::Model(plan.model.clone())).await {
        Ok(Some(estimate)) => {
            console::note(&services.pool, execution_id, Stage::Estimated(estimate)).await;
            if let Err(e) = executions::record_estimate(&services.pool, execution_id, worker, estimate as i64).await {
                tracing::debug!(%execution_id, error = %e, "could not record the row estimate");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(%execution_id, error = %e, "the source gave no row estimate"),
    }
}

/// Runs the load stage over `chunks` in its span.
async fn load(
    (services, plan): (&Services, &Plan),
    claim: &Claim,
    worker: &str,
    (stop, counts): (watch::Receiver<Option<Stop>>, &mut Counts),
    (layout, writer, chunks): (&Layout, Box<dyn BatchWriter>, mpsc::Receiver<String>),
    progress: &Progress,
    ctx: &syncline_core::connector::Context,
) -> Result<LoadEnd, ConnectorError> {
    let whole_run = plan.spec.mode == SyncMode::Snapshot;
    let loader = Loader { services, execution_id: claim.execution_id, worker, layout, progress, whole_run };
    let log = plan.record_log_prefix.as_deref().map(|prefix| {
        let dir = record_log::dir(prefix, plan.organization_id, (claim.subject_id, claim.execution_id));
        RecordLog::new(services.record_logs.clone(), dir)
    });
    let span = tracing::info_span!("load", records_written = tracing::field::Empty, requests = tracing::field::Empty);
    let loaded = loader.run(writer, chunks, (stop, log), counts).instrument(span.clone()).await;
    span.record("records_written", counts.written).record("requests", ctx.metrics.requests());
    loaded
}

/// Identities as the sync stores them to retry.
fn encoded(identities: impl IntoIterator<Item = Identity>) -> Vec<RetryIdentity> {
    identities.into_iter().map(|(key, insert)| RetryIdentity { key: hex::encode(key), insert }).collect()
}

/// The end of a run that wrote everything: the new diff state, with the identities still
/// rejected (those the destination refused now, those the diff held back) to retry — too many,
/// and the next run resends everything. The console log says how the load went.
async fn completed(
    services: &Services,
    (execution_id, plan): (Uuid, &Plan),
    (snapshot, superseded): (Option<String>, Option<String>),
    rejected: Vec<RetryIdentity>,
    counts: Counts,
) -> RunEnd<SyncState> {
    let resend = plan.resends_rejected();
    console::note(&services.pool, execution_id, Stage::Loaded { counts: &counts, resend }).await;
    let keep = rejected.len() <= MAX_RETRY_IDENTITIES;
    if !keep {
        console::note(&services.pool, execution_id, Stage::Forgotten(rejected.len())).await;
    }
    let state = DiffState {
        snapshot: if keep { snapshot } else { None },
        retry_identities: if keep { rejected.iter().map(|r| json!(r)).collect() } else { vec![] },
        superseded,
    };
    RunEnd::Finished { outcome: Outcome::Completed(SyncState::Advanced(state)), counts }
}

/// Every chunk key the extract stage sends, until it is done.
async fn drain(mut chunks: mpsc::Receiver<String>) -> Vec<String> {
    let mut keys = Vec::new();
    while let Some(key) = chunks.recv().await {
        keys.push(key);
    }
    keys
}

/// A closed channel holding `keys`.
fn filled(keys: Vec<String>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(keys.len().max(1));
    for key in keys {
        tx.try_send(key).expect("the channel has room for every key");
    }
    rx
}

/// The extract stage's result once it ended.
async fn joined(
    extract: &mut tokio::task::JoinHandle<Result<Extracted, ConnectorError>>,
) -> Result<Extracted, ConnectorError> {
    extract.await.unwrap_or_else(|e| Err(ConnectorError::permanent(format!("the extract stage crashed: {e}"))))
}
