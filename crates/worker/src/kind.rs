//! Job kinds: what the worker runs. Every kind goes through the same life — claim, lease, run
//! (again after a transient failure), outcome applied in one transaction — in [`crate::job`];
//! a kind only says how to run one execution and what its outcome changes.

use syncline_core::{
    db::{DbError, Transaction},
    executions::{Claim, Counts, Effects, Outcome},
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::Services;

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
pub enum RunEnd<E> {
    /// The run is over, one way or another.
    Finished { outcome: Outcome<E>, counts: Counts },
    /// A stop ended the run before it finished.
    Stopped { stop: Stop, counts: Counts },
    /// The run recorded a plan that needs a user's approval before it writes; what it prepared
    /// is kept for the run that carries the plan out.
    Waiting { counts: Counts },
}

/// One kind of job: a folder of the worker (`model_sync/`, …).
pub trait JobKind: Send + Sync + 'static {
    /// The kind's name: its queue, and the `kind` of its executions.
    const KIND: &'static str;

    /// Whether a run holds one of its organization's slots of the process (see
    /// [`crate::slots`]); a kind that mostly waits on others' work does not.
    const TAKES_SLOT: bool = true;

    /// What a completed execution changes on its subject.
    type Effects: Effects + std::fmt::Debug;

    /// Runs the claimed execution once, until it finishes or `stop` says otherwise. A stop ends
    /// the run at once, wherever it is, and nothing not yet committed is committed.
    fn run(
        services: &Services,
        claim: &Claim,
        worker: &str,
        stop: watch::Receiver<Option<Stop>>,
    ) -> impl Future<Output = RunEnd<Self::Effects>> + Send;

    /// Payload prefixes the execution wrote that nothing reads once it ended: everything it
    /// wrote when it did not complete; what `kept` does not keep when it did.
    fn leftovers(claim: &Claim, kept: Option<&Self::Effects>) -> Vec<String>;
}

/// The effects of a kind whose end changes nothing on its subject (a capture, a delivery).
#[derive(Debug, Clone, Copy)]
pub struct Unchanged;

#[async_trait::async_trait]
impl Effects for Unchanged {
    async fn apply(&self, _: &Transaction<'_>, _: Uuid) -> Result<(), DbError> {
        Ok(())
    }
}
