//! Verified delivery: the records a run wrote are read back from the destination by identity
//! and compared with what it sent. A record that reads back different (a trigger rewrote it, a
//! column cut it, it vanished) is a record error of the run and is sent again by the next one.
//!
//! Verification follows the load stage on a connection of its own: each chunk is checked
//! while the next is written (in snapshot mode, whose writes nobody sees before the end, once
//! all are). Every record is checked while the run has written at most
//! `MODEL_SYNC_VERIFY_RECORDS`; the chunks past that wait for the run's total and are checked
//! as a hash-chosen sample of that many records.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde::Serialize;
use syncline_core::connector::{ConnectorError, Operation, Operations, Verifier, WriteBatch};
use tokio::sync::mpsc;
use xxhash_rust::xxh3::xxh3_64;

use super::{
    changes::{self, ChunkKind},
    load::Layout,
};
use crate::{Services, abort::AbortOnDrop};

/// A chunk the load stage wrote, with the records the destination rejected in it.
pub(crate) struct Written {
    pub(crate) key: String,
    pub(crate) records: u64,
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
    /// Time spent reading back and comparing, most of it while the run was still writing.
    pub(crate) seconds: f64,
    /// Time the run waited for verification after its last write.
    pub(crate) waited_seconds: f64,
    /// Why the destination could not verify, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unverified: Option<String>,
}

impl Verified {
    /// A run that was not verified, and why.
    pub(crate) fn not(why: impl Into<String>) -> Self {
        Self { unverified: Some(why.into()), ..Self::default() }
    }
}

/// The records verification found wrong: (identity, message) to record as errors, and the
/// identity keys of upserts to send again (with whether each was new).
#[derive(Default)]
pub(crate) struct Found {
    pub(crate) errors: Vec<(String, String)>,
    pub(crate) resend: HashMap<Vec<u8>, bool>,
}

/// What the load stage tells its verification.
pub(crate) enum Message {
    Written(Written),
    /// The writes are done (committed, in snapshot mode), `total` records in all.
    Finished {
        total: u64,
    },
}

/// The verification of a run, following its load stage.
pub(crate) enum Follower {
    /// The run is not verified, for this reason.
    Off(String),
    On {
        tx: mpsc::UnboundedSender<Message>,
        task: tokio::task::JoinHandle<Result<(Verified, Found), ConnectorError>>,
        _abort: AbortOnDrop,
    },
}

impl Follower {
    /// Follows the writes with `verifier`; one that could not open leaves the run unverified.
    pub(crate) fn start(
        services: &Services,
        layout: &Layout,
        verifier: Result<Box<dyn Verifier>, String>,
        whole_run: bool,
    ) -> Self {
        let verifier = match verifier {
            Ok(verifier) => verifier,
            Err(why) => return Self::Off(why),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let check = Check {
            services: services.clone(),
            layout: layout.clone(),
            verifier,
            verified: Verified::default(),
            found: Found::default(),
            busy: Duration::ZERO,
        };
        let task = tokio::spawn(check.follow(rx, whole_run));
        let abort = AbortOnDrop(task.abort_handle());
        Self::On { tx, task, _abort: abort }
    }

    /// Hands a written chunk over.
    pub(crate) fn written(&self, written: Written) {
        if let Self::On { tx, .. } = self {
            let _ = tx.send(Message::Written(written));
        }
    }

    /// Waits for the verification of the run's `total` written records.
    pub(crate) async fn finish(self, total: u64) -> Result<(Verified, Found), ConnectorError> {
        let (tx, task, _abort) = match self {
            Self::Off(why) => return Ok((Verified::not(why), Found::default())),
            Self::On { tx, task, _abort } => (tx, task, _abort),
        };
        let waiting = Instant::now();
        let _ = tx.send(Message::Finished { total });
        let (mut verified, found) =
            task.await.map_err(|e| ConnectorError::permanent(format!("verification stopped: {e}")))??;
        verified.waited_seconds = waiting.elapsed().as_secs_f64();
        Ok((verified, found))
    }
}

/// The verification task's state.
struct Check {
    services: Services,
    layout: Layout,
    verifier: Box<dyn Verifier>,
    verified: Verified,
    found: Found,
    busy: Duration,
}

impl Check {
    async fn follow(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Message>,
        whole_run: bool,
    ) -> Result<(Verified, Found), ConnectorError> {
        let limit = self.services.verify_records;
        let (mut written, mut waiting) = (0, Vec::new());
        while let Some(message) = rx.recv().await {
            match message {
                Message::Written(chunk) => {
                    written += chunk.records;
                    match whole_run || written > limit {
                        true => waiting.push(chunk),
                        false => self.chunk(&chunk, None).await?,
                    }
                }
                Message::Finished { total } => {
                    self.verified.sampled = total > limit;
                    let sample = self.verified.sampled.then_some((limit, total));
                    for chunk in waiting.drain(..) {
                        self.chunk(&chunk, sample).await?;
                    }
                    break;
                }
            }
        }
        self.verified.seconds = self.busy.as_secs_f64();
        Ok((self.verified, self.found))
    }

    /// Checks the records of `chunk` it did not reject: all, or with `sample` = (limit, total)
    /// those whose hash falls in the share limit/total.
    async fn chunk(&mut self, chunk: &Written, sample: Option<(u64, u64)>) -> Result<(), ConnectorError> {
        let started = Instant::now();
        let layout = &self.layout;
        // Read again from the store rather than kept from the load stage: a verification that
        // falls behind the writes holds no chunks in memory.
        let bytes = self.services.store.get(&chunk.key).await.map_err(|e| ConnectorError::transient(e.to_string()))?;
        let chunk_records = changes::decode(bytes, &layout.schema, &layout.key_schema)
            .map_err(|e| ConnectorError::permanent(format!("{}: {e}", chunk.key)))?;
        let (kind, records) = (chunk_records.kind, &chunk_records.records);
        let picked: Vec<usize> = (0..records.len())
            .filter(|i| chunk.rejected.binary_search(i).is_err())
            .filter(|i| sample.is_none_or(|(limit, total)| xxh3_64(records.record(*i).as_bytes()) % total < limit))
            .collect();
        if picked.is_empty() {
            return Ok(());
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
        let batch = WriteBatch { records: records.select(&picked), operations };
        let mismatches = self.verifier.verify(&batch).await?;
        self.verified.checked += picked.len() as u64;
        self.verified.mismatched += mismatches.len() as u64;
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
            self.found.errors.push((name.clone(), format!("{name}: verification: {}", mismatch.kind)));
            if kind == ChunkKind::Upserts {
                self.found.resend.insert(key, chunk_records.inserts[*at]);
            }
        }
        self.busy += started.elapsed();
        Ok(())
    }
}
