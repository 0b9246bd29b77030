//! The load stage: reads change chunks back from the payload store and writes them to the
//! destination, recording counts, rejected records and progress after every chunk.

use std::{collections::HashMap, sync::Arc};

use syncline_core::{
    connector::BatchWriter,
    executions::{self, Counts, Lease},
    record::{Schema, Value},
};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::{
    Services,
    changes::{self, Chunk, ChunkKind},
    extract::Progress,
    pipeline::Stop,
};

/// What the load stage needs to know about the records.
pub(crate) struct Layout {
    pub(crate) schema: Arc<Schema>,
    pub(crate) key_schema: Arc<Schema>,
    pub(crate) has_identity: bool,
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
}

impl Loader<'_> {
    /// Loads chunks as they arrive until the extract stage is done or a stop is signalled.
    pub(crate) async fn run(
        &self,
        mut writer: Box<dyn BatchWriter>,
        mut chunks: mpsc::Receiver<String>,
        mut stop: watch::Receiver<Option<Stop>>,
        counts: &mut Counts,
    ) -> Result<LoadEnd, String> {
        let mut rejected = HashMap::new();
        loop {
            if let Some(signal) = *stop.borrow() {
                return Ok(LoadEnd::Stopped(signal));
            }
            let key = tokio::select! {
                key = chunks.recv() => key,
                _ = stop.changed() => continue,
            };
            let Some(key) = key else { break };
            let bytes = self.services.store.get(&key).await.map_err(|e| e.to_string())?;
            let layout = self.layout;
            let chunk =
                changes::decode(bytes, &layout.schema, &layout.key_schema).map_err(|e| format!("{key}: {e}"))?;
            match chunk.kind {
                ChunkKind::Upserts => self.upsert(writer.as_mut(), &chunk, counts, &mut rejected).await?,
                ChunkKind::Deletes => {
                    writer.delete(&chunk.records).await.map_err(|e| e.message)?;
                    let n = chunk.records.len() as i64;
                    (counts.changed, counts.deleted, counts.written) =
                        (counts.changed + n, counts.deleted + n, counts.written + n);
                }
            }
            self.progress.add_to(counts);
            let lease = executions::record_progress(&self.services.pool, self.execution_id, self.worker, counts).await;
            match lease.map_err(|e| e.to_string())? {
                Lease::Held => {}
                Lease::CancelRequested => return Ok(LoadEnd::Stopped(Stop::Cancel)),
                Lease::Lost => return Ok(LoadEnd::Stopped(Stop::Lost)),
            }
        }
        Ok(LoadEnd::Drained(rejected.into_iter().collect()))
    }

    /// Writes an upsert chunk and records the records the destination rejected.
    async fn upsert(
        &self,
        writer: &mut dyn BatchWriter,
        chunk: &Chunk,
        counts: &mut Counts,
        rejected: &mut HashMap<Vec<u8>, bool>,
    ) -> Result<(), String> {
        let all_new = chunk.inserts.iter().all(|insert| *insert);
        let failures = writer.write(&chunk.records, all_new).await.map_err(|e| e.message)?;
        let mut failed = vec![false; chunk.records.len()];
        let mut errors = Vec::with_capacity(failures.len());
        let identity = &self.layout.schema.fields[0];
        for failure in failures {
            failed[failure.index] = true;
            let (name, message) = match self.layout.has_identity {
                true => {
                    let key = chunk.records.record(failure.index).value(0).unwrap_or_default();
                    rejected.insert(key.to_vec(), chunk.inserts[failure.index]);
                    let value = Value::decode(identity.field_type, Some(key)).to_string();
                    (value.clone(), format!("{}={value}: {}", identity.name, failure.message))
                }
                false => {
                    let name = format!("record {}", counts.changed as usize + failure.index + 1);
                    (name.clone(), format!("{name}: {}", failure.message))
                }
            };
            errors.push((name, message));
        }
        executions::record_errors(&self.services.pool, self.execution_id, &errors).await.map_err(|e| e.to_string())?;
        for (insert, failed) in chunk.inserts.iter().zip(&failed) {
            match (failed, insert) {
                (true, _) => counts.rejected += 1,
                (false, true) => counts.inserted += 1,
                (false, false) => counts.updated += 1,
            }
        }
        counts.changed += chunk.records.len() as i64;
        counts.written += failed.iter().filter(|f| !**f).count() as i64;
        Ok(())
    }
}
