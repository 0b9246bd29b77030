//! The queue handler of every job kind: claim an execution, keep its lease, run it (again,
//! after a transient failure, said in its console log), and finish it with its outcome or hand
//! it back — whether the run ends, fails, or panics.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use apalis::prelude::{BoxDynError, Data, WorkerContext};
use futures::FutureExt;
use syncline_core::{
    connector::{ConnectorError, ErrorClass},
    executions::{self, Claim, Counts, Lease, Outcome},
    queue::Job,
    telemetry,
};
use tokio::sync::watch;
use tracing::{Instrument, info, warn};

use crate::{
    Services,
    abort::AbortOnDrop,
    console,
    kind::{JobKind, RunEnd, Stop},
};

/// Tries of one claim after a transient or rate-limited failure, before it fails for good.
const MAX_RETRIES: u32 = 3;
/// Waits before each retry (unless the system said how long to wait), doubling from the first.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait for a retry, whatever a system asks for.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How long a job whose organization holds all its slots waits before it is queued again.
const DEFER: Duration = Duration::from_secs(1);

/// Handles one delivery of a [`Job`] of kind `K`, in a span that continues the trace of
/// whoever enqueued it. Deliveries of an execution that another worker owns or that already
/// ended are acknowledged without doing anything. An execution whose organization already holds
/// its share of this worker's slots goes back to the queue.
pub async fn handle<K: JobKind>(
    job: Job,
    services: Data<Arc<Services>>,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("execution", kind = K::KIND, execution_id = %job.execution_id);
    telemetry::continue_trace(&span, job.trace.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    run_job::<K>(job, &services, worker).instrument(span).await
}

async fn run_job<K: JobKind>(job: Job, services: &Services, worker: WorkerContext) -> Result<(), BoxDynError> {
    let worker_name = worker.name().to_owned();
    let Some(organization) = executions::waiting_organization(&services.pool, job.execution_id).await? else {
        return Ok(());
    };
    let slot = match K::TAKES_SLOT {
        true => services.slots.take(organization).map(Some),
        false => Some(None),
    };
    let Some(_slot) = slot else {
        // Waiting here (not in a task of its own) keeps the delivery in flight: if this process
        // dies meanwhile, the queue hands the job to a live worker.
        tokio::time::sleep(DEFER).await;
        services.queues.enqueue(K::KIND, job.execution_id).await?;
        return Ok(());
    };
    let Some(claim) = executions::claim(&services.pool, job.execution_id, &worker_name, services.lease()).await? else {
        return Ok(());
    };
    info!(execution_id = %claim.execution_id, subject_id = %claim.subject_id, attempt = claim.attempt, "execution started");
    let (stop_tx, stop_rx) = watch::channel(None);
    let keeper =
        tokio::spawn(keep_lease(services.clone(), claim.execution_id, worker_name.clone(), worker.clone(), stop_tx));
    let keeper = AbortOnDrop(keeper.abort_handle());
    let end = run_with_retries::<K>(services, &claim, &worker_name, stop_rx).await;
    drop(keeper);
    settle::<K>(services, &claim, &worker_name, end).instrument(tracing::info_span!("commit")).await
}

/// Runs the execution, again after a retryable failure (bounded, with backoff that honours
/// the system's `retry_after`). A panic anywhere in the run ends it as a permanent failure.
async fn run_with_retries<K: JobKind>(
    services: &Services,
    claim: &Claim,
    worker: &str,
    mut stop: watch::Receiver<Option<Stop>>,
) -> RunEnd<K::Effects> {
    let mut backoff = FIRST_BACKOFF;
    for retry in 0.. {
        let run = AssertUnwindSafe(K::run(services, claim, worker, stop.clone())).catch_unwind();
        // `&*panic`: the payload inside the box (a `&Box<dyn Any>` is itself an `Any`, whose
        // message no downcast finds).
        let end = run.await.unwrap_or_else(|panic| crashed(&*panic));
        let class = match &end {
            RunEnd::Finished { outcome: Outcome::Failed { class, .. }, .. } if class.is_retryable() => *class,
            _ => return end,
        };
        if retry == MAX_RETRIES {
            return end;
        }
        if let Err(e) = executions::record_retry(&services.pool, claim.execution_id, worker, class).await {
            warn!(execution_id = %claim.execution_id, error = %e, "cannot record a retry");
            return end;
        }
        let wait = match class {
            ErrorClass::RateLimited { retry_after: Some(after) } => after.min(MAX_BACKOFF),
            _ => backoff,
        };
        backoff = (backoff * 2).min(MAX_BACKOFF);
        warn!(execution_id = %claim.execution_id, class = class.as_str(), retry = retry + 1, wait_ms = wait.as_millis() as u64,
              "run failed; trying again");
        let line = format!("trying again in {} s (retry {} of {MAX_RETRIES})", wait.as_secs_f64(), retry + 1);
        console::log(&services.pool, claim.execution_id, None, "warning", &line).await;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            stopped = stop.wait_for(Option::is_some) => {
                let stop = stopped.ok().and_then(|s| *s).unwrap_or(Stop::Lost);
                return RunEnd::Stopped { stop, counts: Counts::default() };
            }
        }
    }
    unreachable!("the loop returns")
}

/// The end of a run that panicked: a permanent failure naming the panic.
fn crashed<E>(panic: &(dyn std::any::Any + Send)) -> RunEnd<E> {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    let error = ConnectorError::permanent(format!("the run crashed: {what}"));
    RunEnd::Finished {
        outcome: Outcome::Failed { error: error.message, class: error.class },
        counts: Counts::default(),
    }
}

/// Records how the run ended (applying a completed run's effects in the same transaction) and
/// removes the payloads no run will read again.
async fn settle<K: JobKind>(
    services: &Services,
    claim: &Claim,
    worker_name: &str,
    end: RunEnd<K::Effects>,
) -> Result<(), BoxDynError> {
    let execution_id = claim.execution_id;
    let (outcome, counts) = match end {
        RunEnd::Finished { outcome, counts } => (outcome, counts),
        RunEnd::Stopped { stop: Stop::Cancel, counts } => (Outcome::Canceled, counts),
        RunEnd::Stopped { stop: Stop::Shutdown, .. } => {
            if executions::hand_back(&services.pool, execution_id, worker_name).await? {
                services.queues.enqueue(K::KIND, execution_id).await?;
                info!(%execution_id, "execution handed back for another worker");
            }
            return Ok(());
        }
        RunEnd::Stopped { stop: Stop::Lost, .. } => {
            warn!(%execution_id, "execution lease lost; another worker continues it");
            return Ok(());
        }
        RunEnd::Waiting { counts } => {
            if executions::wait_for_approval(&services.pool, execution_id, worker_name, &counts).await? {
                info!(%execution_id, "execution waits for its plan to be approved");
            }
            return Ok(());
        }
    };
    let owned = executions::finish(&services.pool, execution_id, worker_name, &counts, &outcome).await?;
    let kept = match &outcome {
        Outcome::Completed(effects) => {
            info!(%execution_id, inserted = counts.inserted, updated = counts.updated, deleted = counts.deleted,
                  errors = counts.errors, "execution completed");
            Some(effects)
        }
        Outcome::Failed { error, class } => {
            warn!(%execution_id, %error, class = class.as_str(), "execution failed");
            None
        }
        Outcome::Canceled => {
            info!(%execution_id, "execution canceled");
            None
        }
    };
    if owned {
        remove(services, &K::leftovers(claim, kept)).await;
    }
    Ok(())
}

/// Deletes payload prefixes no run needs any more; a failure only leaves garbage behind.
async fn remove(services: &Services, prefixes: &[String]) {
    for prefix in prefixes {
        if let Err(e) = services.store.delete_prefix(prefix).await {
            warn!(%prefix, error = %e, "could not remove old payloads");
        }
    }
}

/// Renews the lease every heartbeat and watches for cancels and this worker's shutdown.
async fn keep_lease(
    services: Services,
    execution_id: uuid::Uuid,
    worker_name: String,
    worker: WorkerContext,
    stop: watch::Sender<Option<Stop>>,
) {
    let mut renew = tokio::time::interval(services.heartbeat);
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = renew.tick() => match executions::renew(&services.pool, execution_id, &worker_name, services.lease()).await {
                Ok(Lease::Held) => {}
                Ok(Lease::CancelRequested) => { stop.send_replace(Some(Stop::Cancel)); }
                Ok(Lease::Lost) => { stop.send_replace(Some(Stop::Lost)); return; }
                Err(e) => warn!(%execution_id, error = %e, "could not renew the execution lease"),
            },
            _ = poll.tick() => if worker.is_shutting_down() && stop.borrow().is_none() {
                stop.send_replace(Some(Stop::Shutdown));
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_names_its_panic() {
        for payload in [
            std::panic::catch_unwind(|| panic!("boom {}", 1)).expect_err("panics"),
            std::panic::catch_unwind(|| panic!("static boom")).expect_err("panics"),
        ] {
            let end: RunEnd<()> = crashed(&*payload);
            let RunEnd::Finished { outcome: Outcome::Failed { error, class }, .. } = end else {
                panic!("a crash finishes the run")
            };
            assert!(error.starts_with("the run crashed: ") && error.contains("boom"), "{error}");
            assert_eq!(class, ErrorClass::Permanent);
        }
    }
}
