//! Model syncs: read a model, diff it against what the sync delivered last time, and write the
//! changes to the destination (see [`pipeline`]). A completed run commits the sync's new diff
//! state with the execution.

mod changes;
mod console;
mod extract;
mod load;
mod pipeline;
mod plan;
mod prepare;
pub mod record_log;
mod review;
mod snapshot;
mod sort;
mod verify;

use serde_json::Value as Json;
use syncline_core::{
    db::{DbError, Transaction},
    executions::{self, Claim, Effects},
    sync::{changes_dir, snapshot_dir},
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    Services,
    kind::{JobKind, RunEnd, Stop},
};

/// The model sync job kind.
pub struct ModelSync;

/// What a completed model sync changes on its sync.
#[derive(Debug, Clone)]
pub enum SyncState {
    /// The run delivered: the diff state the next run starts from.
    Advanced(DiffState),
    /// A test run: nothing changes.
    Unchanged,
}

/// A sync's diff state after a run that delivered.
#[derive(Debug, Clone)]
pub struct DiffState {
    /// The new snapshot (`None` when the sync keeps none: no identity, or too many failures).
    pub snapshot: Option<String>,
    /// Identities the destination rejected, resent next time (or, without
    /// `auto_retry_record_errors`, once they change).
    pub retry_identities: Vec<Json>,
    /// The snapshot this one replaces, removed once committed.
    pub superseded: Option<String>,
}

#[async_trait::async_trait]
impl Effects for SyncState {
    async fn apply(&self, tx: &Transaction<'_>, sync_id: Uuid) -> Result<(), DbError> {
        let SyncState::Advanced(state) = self else { return Ok(()) };
        tx.execute(
            "update model_syncs set snapshot_path = $2, retry_identities = $3 where id = $1",
            &[&sync_id, &state.snapshot, &serde_json::json!(state.retry_identities)],
        )
        .await?;
        Ok(())
    }
}

impl JobKind for ModelSync {
    const KIND: &'static str = executions::MODEL_SYNC;
    type Effects = SyncState;

    fn run(
        services: &Services,
        claim: &Claim,
        worker: &str,
        stop: watch::Receiver<Option<Stop>>,
    ) -> impl Future<Output = RunEnd<SyncState>> + Send {
        pipeline::run(services, claim, worker, stop)
    }

    fn leftovers(claim: &Claim, kept: Option<&SyncState>) -> Vec<String> {
        let mut leftovers = vec![changes_dir(claim.execution_id)];
        match kept {
            Some(SyncState::Advanced(state)) => leftovers.extend(state.superseded.clone()),
            _ => leftovers.push(snapshot_dir(claim.subject_id, claim.execution_id)),
        }
        leftovers
    }
}
