//! Bulk syncs: whole tables from a source into a destination, cut into partitions that any
//! worker loads. Two job kinds: the execution of a bulk sync ([`BulkSync`], its coordinator)
//! and one partition of one of its schemas ([`BulkPartition`]); then, for syncs that capture
//! changes, the stream of those changes ([`BulkCdc`]). See `docs/ARCHITECTURE.md`.

mod apply;
mod capture;
mod coordinator;
mod partition;
mod plan;
mod settle;
mod store;
mod stream;
mod wal_guard;

use syncline_core::{
    db::{DbError, Transaction},
    executions::{self, Claim, Effects},
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    Services,
    kind::{JobKind, RunEnd, Stop, Unchanged},
};

/// The execution of a bulk sync: plans it, starts its partitions and settles its schemas.
pub struct BulkSync;

/// A bulk execution changes its sync as each schema settles, not at the end.
#[derive(Debug, Clone, Copy)]
pub struct Settled;

#[async_trait::async_trait]
impl Effects for Settled {
    async fn apply(&self, _: &Transaction<'_>, _: Uuid) -> Result<(), DbError> {
        Ok(())
    }
}

impl JobKind for BulkSync {
    const KIND: &'static str = executions::BULK_SYNC;
    /// It waits on its partitions, which take the organization's slots.
    const TAKES_SLOT: bool = false;
    type Effects = Settled;

    fn run(
        services: &Services,
        claim: &Claim,
        worker: &str,
        stop: watch::Receiver<Option<Stop>>,
    ) -> impl Future<Output = RunEnd<Settled>> + Send {
        coordinator::run(services, claim, worker, stop)
    }

    fn leftovers(_: &Claim, _: Option<&Settled>) -> Vec<String> {
        vec![]
    }
}

/// One partition of a bulk execution's schema.
pub struct BulkPartition;

impl JobKind for BulkPartition {
    const KIND: &'static str = executions::BULK_PARTITION;
    type Effects = partition::PartitionLoaded;

    fn run(
        services: &Services,
        claim: &Claim,
        worker: &str,
        stop: watch::Receiver<Option<Stop>>,
    ) -> impl Future<Output = RunEnd<partition::PartitionLoaded>> + Send {
        partition::run(services, claim, worker, stop)
    }

    fn leftovers(_: &Claim, _: Option<&partition::PartitionLoaded>) -> Vec<String> {
        vec![]
    }
}

/// The change capture of a bulk sync: streams its source's changes into the destination.
pub struct BulkCdc;

impl JobKind for BulkCdc {
    const KIND: &'static str = executions::BULK_CDC;
    /// It runs for as long as the sync exists: it would hold a slot for good.
    const TAKES_SLOT: bool = false;
    type Effects = Unchanged;

    fn run(
        services: &Services,
        claim: &Claim,
        worker: &str,
        stop: watch::Receiver<Option<Stop>>,
    ) -> impl Future<Output = RunEnd<Unchanged>> + Send {
        stream::run(services, claim, worker, stop)
    }

    fn leftovers(_: &Claim, _: Option<&Unchanged>) -> Vec<String> {
        vec![]
    }
}
