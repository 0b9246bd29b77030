//! A bulk sync's change capture (kind `bulk_cdc`), started by a completed load: polls the sync's
//! slot in micro-batches, applies each to the destination ([`apply`]), and confirms the slot
//! only once every table committed. A killed worker's successor gets the unconfirmed changes
//! again and applies them idempotently. Before applying, [`wal_guard`] checks the WAL the slot
//! holds. A deactivated sync's capture ends, keeping its slot, and resumes from the confirmed
//! position when the sync is activated again.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use syncline_connectors::postgres::cdc::{Capture, Lsn, Names};
use syncline_core::{
    connector::ConnectorError,
    executions::{Claim, Counts, Outcome},
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{apply::apply, capture, store, wal_guard};
use crate::{
    Services, connections, console,
    kind::{RunEnd, Stop, Unchanged},
};

/// Most `pgoutput` messages of one micro-batch.
const MAX_MESSAGES: usize = 20_000;
/// The wait after a poll that found nothing.
const IDLE: Duration = Duration::from_millis(200);
/// How often at most the console log sums up the changes applied.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// The start options of a capture: the completed load whose plan maps its tables.
#[derive(Debug, Serialize, Deserialize)]
pub struct StreamOptions {
    pub execution_id: Uuid,
}

/// Streams the claimed sync's changes until `stop` says otherwise, the sync is deactivated or
/// gone. How it starts, pauses and ends goes to its console log.
pub async fn run(
    services: &Services,
    claim: &Claim,
    _worker: &str,
    mut stop: watch::Receiver<Option<Stop>>,
) -> RunEnd<Unchanged> {
    let mut counts = Counts::default();
    let stopped = tokio::select! {
        biased;
        end = stream(services, claim, &mut counts) => Err(end),
        stop = stop.wait_for(Option::is_some) => Ok(stop.ok().and_then(|s| *s).unwrap_or(Stop::Lost)),
    };
    let line = match &stopped {
        Ok(Stop::Cancel) => Some(("info", "capture canceled".to_owned())),
        Ok(Stop::Shutdown) => Some(("info", "capture handed back: the worker is shutting down".to_owned())),
        Ok(Stop::Lost) | Err(Ok(())) => None,
        Err(Err(error)) => Some(("error", format!("capture failed: {}", error.message))),
    };
    if let Some((level, message)) = line {
        console::log(&services.pool, claim.execution_id, None, level, &message).await;
    }
    match stopped {
        Ok(stop) => RunEnd::Stopped { stop, counts },
        Err(Ok(())) => RunEnd::Finished { outcome: Outcome::Completed(Unchanged), counts },
        Err(Err(error)) => {
            RunEnd::Finished { outcome: Outcome::Failed { error: error.message, class: error.class }, counts }
        }
    }
}

async fn stream(services: &Services, claim: &Claim, counts: &mut Counts) -> Result<(), ConnectorError> {
    let (sync_id, pool) = (claim.subject_id, &services.pool);
    let options: StreamOptions = serde_json::from_value(claim.options.clone())
        .map_err(|e| ConnectorError::config(format!("capture options: {e}")))?;
    let sync = match store::sync(pool, sync_id).await {
        Err(e) if e.class == syncline_core::connector::ErrorClass::NotFound => return Ok(()),
        sync => sync?,
    };
    let ctx = services.connector.child();
    let _cancel = ctx.cancel.clone().drop_guard();
    let (_, source_config) = connections::open(services, &sync.connections, "source")?;
    let Some(config) = capture::config(&sync, &source_config)? else { return Ok(()) };
    let (target, target_config) = connections::open(services, &sync.connections, "target")?;
    let destination = target.bulk_destination(&ctx, &target_config)?;
    let targets = store::capture_targets(pool, options.execution_id).await?;
    let capture = Capture::connect(&ctx, &config, Names::for_bulk_sync(sync_id)).await?;
    let mut position = capture.confirmed().await?;
    let started = match store::recorded_position(pool, sync_id).await? {
        Some(_) => format!("capture resumed from LSN {position}"),
        None => format!("capture started at LSN {position}"),
    };
    console::log(pool, claim.execution_id, None, "info", &started).await;
    let mut summary = Summary::default();
    loop {
        match store::active(pool, sync_id).await? {
            None => return Ok(()),
            Some(false) => {
                let paused = format!(
                    "capture paused at LSN {position}: the bulk sync was deactivated (the slot keeps the changes \
                     until it is activated again)"
                );
                console::log(pool, claim.execution_id, None, "info", &paused).await;
                return Ok(());
            }
            Some(true) => {}
        }
        let set = match capture.poll(MAX_MESSAGES).await {
            Err(e) if store::active(pool, sync_id).await?.is_none() => {
                tracing::info!(%sync_id, error = %e.message, "the bulk sync is gone: capture ends");
                return Ok(());
            }
            set => set?,
        };
        let Some(end) = set.end else {
            tokio::time::sleep(IDLE).await;
            continue;
        };
        if !set.transactions.is_empty() {
            wal_guard::check(services, &capture, sync_id).await?;
        }
        let changes = apply(destination.as_ref(), &targets, &set).await?;
        capture.confirm(end).await?;
        position = end;
        let time = set.transactions.last().map(|t| t.committed_at);
        store::record_position(pool, sync_id, (end, set.highwater, time), changes as i64).await?;
        counts.read += changes as i64;
        counts.written += changes as i64;
        if let Some(line) = summary.add(changes, end) {
            console::log(pool, claim.execution_id, None, "info", &line).await;
        }
        if set.transactions.is_empty() {
            tokio::time::sleep(IDLE).await;
        }
    }
}

/// The console log's summary of the changes applied, at most once every [`SUMMARY_EVERY`].
struct Summary {
    applied: usize,
    since: Instant,
}

impl Default for Summary {
    fn default() -> Self {
        Self { applied: 0, since: Instant::now() }
    }
}

impl Summary {
    /// Counts `changes` applied up to `position`; the summary line when one is due.
    fn add(&mut self, changes: usize, position: Lsn) -> Option<String> {
        self.applied += changes;
        if self.applied == 0 || self.since.elapsed() < SUMMARY_EVERY {
            return None;
        }
        let line = format!("applied {} changes up to LSN {position}", self.applied);
        *self = Self::default();
        Some(line)
    }
}
