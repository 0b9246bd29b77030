//! The load stage: reads change chunks back from the payload store and writes them to the
//! destination, recording counts, rejected records and progress after every chunk.

use std::{collections::HashMap, sync::Arc};

use syncline_core::{
    connector::{BatchWriter, ConnectorError, Operation, Operations, Verifier, WriteBatch},
    executions::{self, Counts, Lease, Report},
    record::{Record, Schema, key::KeyLayout},
};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use tracing::Instrument;

use super::{
    changes::{self, Chunk, ChunkKind},
    extract::Progress,
    record_log::RecordLog,
    verify::{Follower, Found, Verified, Written},
};
use crate::{Services, kind::Stop};

/// What the load stage needs to know about the records.
#[derive(Clone)]
pub(crate) struct Layout {
    pub(crate) schema: Arc<Schema>,
    pub(crate) key_schema: Arc<Schema>,
    /// The identity, if the mode matches records on one.
    pub(crate) identity: Option<KeyLayout>,
    /// The identity of delete records (the key schema's fields).
    pub(crate) key_identity: Option<KeyLayout>,
    /// The target field of each record field.
    pub(crate) targets: Vec<String>,
}

impl Layout {
    /// The identity of `record` (a delete record when `deleted`) for people, or its position.
    pub(crate) fn name(&self, record: &Record<'_>, deleted: bool, key: &mut Vec<u8>) -> String {
        let by = if deleted { &self.key_identity } else { &self.identity };
        match by {
            Some(by) if by.encode(record, key).is_ok() => by.display(key),
            _ => format!("record {}", record.index() + 1),
        }
    }
}

/// A failure of the payload store or the state database while loading (may clear by itself).
fn transient(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::transient(e.to_string())
}

/// How the load stage ended.
pub(crate) enum LoadEnd {
    /// Every chunk was loaded; the destination rejected these identities (with whether each
    /// record was new to it).
    Drained(Vec<(Vec<u8>, bool)>),
    Stopped(Stop),
}

/// What the load stage works with.
pub(crate) struct Loader<'a> {
    pub(crate) services: &'a Services,
    pub(crate) execution_id: Uuid,
    pub(crate) worker: &'a str,
    pub(crate) layout: &'a Layout,
    pub(crate) progress: &'a Progress,
    /// Whether the writes share one transaction, committed when they are all done.
    pub(crate) whole_run: bool,
}

impl Loader<'_> {
    /// Loads chunks as they arrive until the extract stage is done or a stop is signalled.
    pub(crate) async fn run(
        &self,
        mut writer: Box<dyn BatchWriter>,
        mut chunks: mpsc::Receiver<String>,
        (mut stop, mut log): (watch::Receiver<Option<Stop>>, Option<RecordLog>),
        counts: &mut Counts,
    ) -> Result<LoadEnd, ConnectorError> {
        let mut rejected = HashMap::new();
        let verifier = self.verifier(writer.as_mut()).await;
        let follower = Follower::start(self.services, self.layout, verifier, self.whole_run);
        loop {
            if let Some(signal) = *stop.borrow() {
                return Ok(LoadEnd::Stopped(signal));
            }
            let key = tokio::select! {
                key = chunks.recv() => key,
                _ = stop.changed() => continue,
            };
            let Some(key) = key else { break };
            let bytes = self.services.store.get(&key).await.map_err(transient)?;
            let layout = self.layout;
            let chunk = changes::decode(bytes, &layout.schema, &layout.key_schema)
                .map_err(|e| ConnectorError::permanent(format!("{key}: {e}")))?;
            match chunk.kind {
                ChunkKind::Upserts => {
                    let records = chunk.records.len() as u64;
                    let failed = self.upsert(writer.as_mut(), chunk, counts, (&mut rejected, &mut log)).await?;
                    follower.written(Written { key, records, rejected: failed });
                }
                ChunkKind::Deletes => {
                    let batch = WriteBatch { records: chunk.records, operations: Operations::All(Operation::Delete) };
                    let failures = writer.write(&batch).await?;
                    if let Some(failure) = failures.first() {
                        return Err(ConnectorError::permanent(format!("a delete failed: {}", failure.message)));
                    }
                    let n = batch.records.len() as i64;
                    (counts.changed, counts.deleted, counts.written) =
                        (counts.changed + n, counts.deleted + n, counts.written + n);
                    if let Some(log) = &mut log {
                        let mut identity = Vec::new();
                        for record in batch.records.records() {
                            let name = self.layout.name(&record, true, &mut identity);
                            log.log("deletes", (name, "delete"), None, None).await?;
                        }
                    }
                    follower.written(Written { key, records: n as u64, rejected: vec![] });
                }
            }
            self.progress.add_to(counts);
            let lease = executions::record_progress(&self.services.pool, self.execution_id, self.worker, counts).await;
            match lease.map_err(transient)? {
                Lease::Held => {}
                Lease::CancelRequested => return Ok(LoadEnd::Stopped(Stop::Cancel)),
                Lease::Lost => return Ok(LoadEnd::Stopped(Stop::Lost)),
            }
        }
        writer.finish().await?;
        self.verified(follower, counts, (&mut rejected, &mut log)).await?;
        if let Some(log) = log {
            let index = serde_json::json!(log.finish().await?);
            executions::report(&self.services.pool, self.execution_id, self.worker, Report::RecordLogs, &index)
                .await
                .map_err(transient)?;
        }
        Ok(LoadEnd::Drained(rejected.into_iter().collect()))
    }

    /// The run's verifier, or why there is none.
    async fn verifier(&self, writer: &mut dyn BatchWriter) -> Result<Box<dyn Verifier>, String> {
        if self.layout.identity.is_none() {
            return Err("the sync has no identity to read records back by".into());
        }
        if self.services.verify_records == 0 {
            return Err("verification is off (MODEL_SYNC_VERIFY_RECORDS=0)".into());
        }
        match writer.verifier().await {
            Ok(Some(verifier)) => Ok(verifier),
            Ok(None) => Err("the destination cannot read records back".into()),
            Err(e) => {
                tracing::warn!(execution_id = %self.execution_id, error = %e, "could not open a verifier");
                Err(e.message)
            }
        }
    }

    /// Waits for the written records to be read back and records what differs as errors of
    /// the run, to be sent again; a destination that fails to answer leaves the run
    /// unverified, not failed.
    async fn verified(
        &self,
        follower: Follower,
        counts: &mut Counts,
        (rejected, log): (&mut HashMap<Vec<u8>, bool>, &mut Option<RecordLog>),
    ) -> Result<(), ConnectorError> {
        let span = tracing::info_span!("verify", checked = tracing::field::Empty, mismatched = tracing::field::Empty);
        let total = counts.written.max(0) as u64;
        let (verified, found) = match follower.finish(total).instrument(span.clone()).await {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(execution_id = %self.execution_id, error = %e, "could not verify the written records");
                (Verified::not(e.message), Found::default())
            }
        };
        span.record("checked", verified.checked).record("mismatched", verified.mismatched);
        executions::record_errors(&self.services.pool, self.execution_id, &found.errors).await.map_err(transient)?;
        // Records that did not arrive as sent count as rejected by the destination.
        counts.rejected += found.errors.len() as i64;
        rejected.extend(found.resend);
        if let Some(log) = log {
            for (identity, message) in &found.errors {
                log.log("errors", (identity.clone(), "verify"), None, Some(message)).await?;
            }
        }
        let summary = serde_json::json!(verified);
        executions::report(&self.services.pool, self.execution_id, self.worker, Report::Verification, &summary)
            .await
            .map_err(transient)
    }

    /// Writes an upsert chunk and records the records the destination rejected. A failure the
    /// destination reports for a record the chunk does not have is its mistake, and fails the run.
    /// Returns the positions of the records the destination rejected, in order.
    async fn upsert(
        &self,
        writer: &mut dyn BatchWriter,
        chunk: Chunk,
        counts: &mut Counts,
        (rejected, log): (&mut HashMap<Vec<u8>, bool>, &mut Option<RecordLog>),
    ) -> Result<Vec<usize>, ConnectorError> {
        let operations = match chunk.inserts.iter().all(|insert| *insert) {
            true => Operations::All(Operation::Insert),
            false => Operations::Each(
                chunk
                    .inserts
                    .iter()
                    .map(|insert| if *insert { Operation::Insert } else { Operation::Update })
                    .collect(),
            ),
        };
        let batch = WriteBatch { records: chunk.records, operations };
        let failures = writer.write(&batch).await?;
        let records = &batch.records;
        // The destination's message for each record it rejected.
        let mut failed: Vec<Option<String>> = vec![None; records.len()];
        let mut errors = Vec::with_capacity(failures.len());
        for failure in failures {
            let Some(record) = records.get(failure.index) else {
                return Err(ConnectorError::permanent(format!(
                    "the destination reported a failure for record {} of a batch of {}",
                    failure.index,
                    records.len()
                )));
            };
            if failed[failure.index].replace(failure.message.clone()).is_some() {
                continue;
            }
            let mut key = Vec::new();
            let (name, message) = match &self.layout.identity {
                Some(identity) if identity.encode(&record, &mut key).is_ok() => {
                    let name = identity.display(&key);
                    rejected.insert(key, chunk.inserts[failure.index]);
                    (name.clone(), format!("{name}: {}", failure.message))
                }
                _ => {
                    let name = format!("record {}", counts.changed as usize + failure.index + 1);
                    (name.clone(), format!("{name}: {}", failure.message))
                }
            };
            errors.push((name, message));
        }
        executions::record_errors(&self.services.pool, self.execution_id, &errors).await.map_err(transient)?;
        for (insert, failed) in chunk.inserts.iter().zip(&failed) {
            match (failed.is_some(), insert) {
                (true, _) => counts.rejected += 1,
                (false, true) => counts.inserted += 1,
                (false, false) => counts.updated += 1,
            }
        }
        if let Some(log) = log {
            let mut identity = Vec::new();
            for ((record, insert), failed) in records.records().zip(&chunk.inserts).zip(&failed) {
                let name = self.layout.name(&record, false, &mut identity);
                let operation = if *insert { "insert" } else { "update" };
                let (kind, error) = match failed {
                    Some(message) => ("errors", Some(message.as_str())),
                    None => (if *insert { "inserts" } else { "updates" }, None),
                };
                log.log(kind, (name, operation), Some((&record, &self.layout.targets)), error).await?;
            }
        }
        counts.changed += records.len() as i64;
        counts.written += failed.iter().filter(|f| f.is_none()).count() as i64;
        Ok(failed.iter().enumerate().filter(|(_, f)| f.is_some()).map(|(i, _)| i).collect())
    }
}
