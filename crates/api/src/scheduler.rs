//! The scheduler role: starts due subjects of every job kind exactly once across any number of
//! replicas (reading the one `schedules` table), and re-enqueues executions whose job was lost
//! (a dead worker, a flushed Redis).

use std::time::Duration;

use syncline_core::{
    db::{DbError, DbPool},
    executions::{self, StartError},
    queue::Queues,
    schedule::{self, Due},
};
use tracing::{info, warn};
use uuid::Uuid;

/// How long an execution may wait in `queued` before its job is pushed again.
const STALE_QUEUED: Duration = Duration::from_secs(120);

/// Runs until `shutdown` resolves, checking every `tick`.
pub async fn run(pool: DbPool, queues: Queues, tick: Duration, shutdown: impl Future<Output = ()>) {
    info!("scheduler started");
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = interval.tick() => {
                if let Err(e) = run_due(&pool, &queues).await {
                    warn!(error = %e, "scheduling pass failed");
                }
                if let Err(e) = requeue_lost(&pool, &queues).await {
                    warn!(error = %e, "requeue pass failed");
                }
            }
        }
    }
    info!("scheduler stopped");
}

/// Starts every subject whose next run is due and moves its next run forward. Row locks with
/// `skip locked` make each due run start exactly once even with several schedulers.
pub async fn run_due(pool: &DbPool, queues: &Queues) -> Result<usize, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut started: Vec<(String, Uuid)> = Vec::new();
    let now = chrono::Utc::now();
    for due in schedule::lock_due(&tx).await? {
        let next = due.schedule.next_after(now);
        schedule::advance(&tx, &due, next).await?;
        let Due { kind, subject_id, organization_id, options, .. } = due;
        match executions::create(&tx, (&kind, subject_id, organization_id), "schedule", false, &options).await {
            Ok(id) => started.push((kind, id)),
            Err(StartError::AlreadyRunning) => {
                info!(%kind, %subject_id, "scheduled run skipped: the previous one is still running")
            }
            Err(StartError::Db(e)) => return Err(e),
        }
    }
    tx.commit().await?;
    for (kind, id) in &started {
        // If this push fails the execution stays queued and `requeue_lost` pushes it later.
        if let Err(e) = queues.enqueue(kind, *id).await {
            warn!(execution_id = %id, error = %e, "cannot enqueue scheduled execution");
        }
    }
    Ok(started.len())
}

async fn requeue_lost(pool: &DbPool, queues: &Queues) -> Result<(), DbError> {
    for (kind, id) in executions::reclaimable(pool, STALE_QUEUED).await? {
        info!(execution_id = %id, %kind, "re-enqueueing execution whose job was lost");
        if let Err(e) = queues.enqueue(&kind, id).await {
            warn!(execution_id = %id, error = %e, "cannot re-enqueue execution");
        }
    }
    Ok(())
}
