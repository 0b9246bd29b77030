//! The scheduler role: starts due syncs exactly once across any number of replicas, and
//! re-enqueues executions whose job was lost (a dead worker, a flushed Redis).

use std::time::Duration;

use syncline_core::{
    db::{DbError, DbPool},
    executions::{self, StartError},
    queue::{self, SyncQueue},
    sync::SyncSpec,
};
use tracing::{info, warn};
use uuid::Uuid;

use crate::store::{self, StoreError};

/// How long an execution may wait in `queued` before its job is pushed again.
const STALE_QUEUED: Duration = Duration::from_secs(120);

/// Runs until `shutdown` resolves, checking every `tick`.
pub async fn run(pool: DbPool, queue: SyncQueue, tick: Duration, shutdown: impl Future<Output = ()>) {
    info!("scheduler started");
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = interval.tick() => {
                if let Err(e) = run_due(&pool, &queue).await {
                    warn!(error = %e, "scheduling pass failed");
                }
                if let Err(e) = requeue_lost(&pool, &queue).await {
                    warn!(error = %e, "requeue pass failed");
                }
            }
        }
    }
    info!("scheduler stopped");
}

/// Starts every active sync whose next run is due and moves its next run forward. Row locks
/// with `skip locked` make each due run start exactly once even with several schedulers.
pub async fn run_due(pool: &DbPool, queue: &SyncQueue) -> Result<usize, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let due = store::syncs::lock_due(&tx).await?;
    let mut started: Vec<Uuid> = Vec::new();
    let now = chrono::Utc::now();
    for sync in due {
        let sync_id = sync.id;
        let next = serde_json::from_value::<SyncSpec>(sync.spec)
            .ok()
            .and_then(|spec| spec.schedule.next_after(now).ok().flatten());
        store::syncs::set_next_run(&tx, sync_id, next).await?;
        match executions::create(&tx, sync_id, sync.organization_id, "schedule", false).await {
            Ok(id) => started.push(id),
            Err(StartError::AlreadyRunning) => {
                info!(%sync_id, "scheduled run skipped: the previous one is still running")
            }
            Err(StartError::Db(e)) => return Err(e.into()),
        }
    }
    tx.commit().await?;
    for id in &started {
        // If this push fails the execution stays queued and `requeue_lost` pushes it later.
        if let Err(e) = queue::enqueue(queue, *id).await {
            warn!(execution_id = %id, error = %e, "cannot enqueue scheduled execution");
        }
    }
    Ok(started.len())
}

async fn requeue_lost(pool: &DbPool, queue: &SyncQueue) -> Result<(), DbError> {
    for id in executions::reclaimable(pool, STALE_QUEUED).await? {
        info!(execution_id = %id, "re-enqueueing execution whose job was lost");
        if let Err(e) = queue::enqueue(queue, id).await {
            warn!(execution_id = %id, error = %e, "cannot re-enqueue execution");
        }
    }
    Ok(())
}
