//! A bulk sync execution from start to end: plan it (once: a coordinator that takes over after
//! a crash resumes the saved plan), start its partitions as jobs any worker runs — no more at
//! once than the sync's concurrency limit — and settle each schema when its partitions have all
//! committed, or fail it when one failed. Cancels of the whole execution or of one schema stop
//! their partitions and drop the shadow tables.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use syncline_core::{
    bulk::{BulkMode, StartOptions},
    connector::{BulkDestination, ConnectorError, Context, HeldSnapshot, Source},
    executions::{BULK_PARTITION, Claim, Outcome},
};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::{
    Settled, capture,
    plan::{Finish, Planner},
    settle::{self, Tallied, Tally},
    store::{self, PartitionState, SchemaEnd},
};
use crate::{
    Services, connections, console,
    kind::{RunEnd, Stop},
};

/// How often the coordinator looks at its partitions, besides when one commits.
const TICK: Duration = Duration::from_millis(100);

/// Runs the bulk execution `claim` until every schema ended or `stop` says otherwise.
pub async fn run(
    services: &Services,
    claim: &Claim,
    worker: &str,
    stop: watch::Receiver<Option<Stop>>,
) -> RunEnd<Settled> {
    match coordinate(services, claim, worker, stop).await {
        Ok(end) => end,
        Err(error) => RunEnd::Finished {
            outcome: Outcome::Failed { error: error.message, class: error.class },
            counts: Default::default(),
        },
    }
}

/// The connections of one run.
struct Ends {
    source: Arc<dyn Source>,
    destination: Arc<dyn BulkDestination>,
    /// The source's full configuration and the calls' context (for change capture).
    source_config: serde_json::Value,
    ctx: Context,
}

async fn coordinate(
    services: &Services,
    claim: &Claim,
    worker: &str,
    mut stop: watch::Receiver<Option<Stop>>,
) -> Result<RunEnd<Settled>, ConnectorError> {
    let (execution_id, sync_id) = (claim.execution_id, claim.subject_id);
    let ctx = services.connector.child();
    let _cancel = ctx.cancel.clone().drop_guard();
    let sync = store::sync(&services.pool, sync_id).await?;
    let (source, source_config) = connections::open(services, &sync.connections, "source")?;
    let (target, target_config) = connections::open(services, &sync.connections, "target")?;
    let ends = Ends {
        source: source.source(&ctx, &source_config)?,
        destination: target.bulk_destination(&ctx, &target_config)?,
        source_config,
        ctx,
    };
    let options: StartOptions = serde_json::from_value(claim.options.clone())
        .map_err(|e| ConnectorError::config(format!("start options: {e}")))?;
    let held = match store::planned(&services.pool, execution_id).await? {
        false => plan(services, &ends, (sync_id, &sync, &options), execution_id, None).await?,
        true => resume(services, &ends, (sync_id, &sync, &options), execution_id).await?,
    };
    let finishes = store::finishes(&services.pool, execution_id).await?;
    let partitions = store::partitions(&services.pool, execution_id).await?;
    let unstarted = finishes
        .keys()
        .filter(|schema_id| partitions.iter().all(|p| &p.schema_id != *schema_id || p.execution.is_none()))
        .cloned()
        .collect();
    let tallies = Tally::start((&ends.source, &ends.destination), &finishes, &unstarted).await?;
    let run = Run {
        services,
        ends,
        tallies: Mutex::new(tallies),
        execution_id,
        sync_id,
        finishes,
        limit: concurrency(&sync.spec, &options),
        organization_id: sync.organization_id,
    };
    let mut kept_alive = tokio::time::Instant::now();
    let mut commits = services.partition_commits.subscribe();
    loop {
        let stopped = *stop.borrow();
        if let Some(stopped) = stopped {
            if stopped == Stop::Cancel {
                run.cancel(None).await?;
            }
            return Ok(RunEnd::Stopped { stop: stopped, counts: Default::default() });
        }
        let mut running = Vec::new();
        for (schema_id, cancel_requested) in store::running(&services.pool, execution_id).await? {
            match cancel_requested {
                true => run.cancel(Some(&schema_id)).await?,
                false => running.push(schema_id),
            }
        }
        if running.is_empty() {
            break;
        }
        let ended = run.step(&running).await?;
        store::refresh_progress(&services.pool, execution_id).await?;
        if let Some(held) = &held
            && kept_alive.elapsed() >= KEEP_ALIVE
        {
            held.keep_alive().await?;
            kept_alive = tokio::time::Instant::now();
        }
        if ended {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => {}
            _ = committed(&mut commits, execution_id) => {}
        }
    }
    let (counts, failures, schemas) = store::outcome(&services.pool, execution_id).await?;
    tracing::info!(%execution_id, worker, schemas, failed = failures.len(), "bulk execution settled");
    if !failures.is_empty() && failures.len() >= schemas {
        let error = ConnectorError::permanent(failures.join("; "));
        return Ok(RunEnd::Finished { outcome: Outcome::Failed { error: error.message, class: error.class }, counts });
    }
    if capture::config(&sync, &run.ends.source_config)?.is_some() {
        capture::start(services, (sync_id, sync.organization_id), execution_id).await?;
    }
    Ok(RunEnd::Finished { outcome: Outcome::Completed(Settled), counts })
}

/// Returns when a partition of `execution_id` committed, or commits were missed.
async fn committed(commits: &mut broadcast::Receiver<String>, execution_id: Uuid) {
    let id = execution_id.to_string();
    loop {
        match commits.recv().await {
            Ok(committed) if committed == id => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            // No more notifications: the tick alone wakes the coordinator.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// Plans the schemas of the run (those in `only`, when given) and saves the plan. Returns the
/// source snapshot the partitions of its tables read at, which must be held until they
/// committed.
async fn plan(
    services: &Services,
    ends: &Ends,
    (sync_id, sync, options): (Uuid, &store::SyncRow, &StartOptions),
    execution_id: Uuid,
    only: Option<&[String]>,
) -> Result<Option<Box<dyn HeldSnapshot>>, ConnectorError> {
    let catalog = ends.source.discover().await?;
    let source_connection: Uuid = sync.connections.try_get("source_connection_id").map_err(connections::state)?;
    let keys = store::key_overrides(&services.pool, source_connection).await?;
    let mode = match ends.destination.modes().contains(&sync.mode) {
        true => sync.mode,
        false => {
            let message = format!("{} runs as snapshot: the destination keeps whole copies", sync.mode.as_str());
            console::log(&services.pool, execution_id, None, "info", &message).await;
            BulkMode::Snapshot
        }
    };
    let planner = Planner {
        shadow_mark: if only.is_none() { execution_id } else { Uuid::new_v4() },
        mode,
        spec: &sync.spec,
        options,
        catalog: &catalog,
        keys: &keys,
        source: ends.source.as_ref(),
        destination: ends.destination.as_ref(),
        partition_rows: services.partition_rows,
        held: Default::default(),
    };
    let mut schemas = store::schemas(&services.pool, sync_id).await?;
    schemas.retain(|s| only.is_none_or(|only| only.contains(&s.schema_id)));
    capture::prepare(&services.pool, &ends.ctx, (sync_id, sync), &ends.source_config, &schemas).await?;
    let planned = planner.plan(&schemas).await?;
    for schema in &planned {
        let message = match &schema.failure {
            Some(failure) => format!("{} cannot run: {failure}", schema.schema_id),
            None => {
                format!("{} planned: {} partition(s) into {}", schema.schema_id, schema.tasks.len(), schema.output_name)
            }
        };
        console::log(&services.pool, execution_id, Some(&schema.schema_id), "info", &message).await;
    }
    store::save_plan(&services.pool, execution_id, &planned).await?;
    Ok(planner.into_held())
}

/// Takes over a planned execution whose coordinator stopped. The source snapshot its
/// partitions read at ended with that coordinator: a table read in several slices that has
/// slices left to load is loaded again from the start, at a new snapshot, rather than from two
/// moments of the source (a row updated in between could be read twice or not at all).
async fn resume(
    services: &Services,
    ends: &Ends,
    run: (Uuid, &store::SyncRow, &StartOptions),
    execution_id: Uuid,
) -> Result<Option<Box<dyn HeldSnapshot>>, ConnectorError> {
    let stale = store::unshared(&services.pool, execution_id).await?;
    if stale.is_empty() {
        return Ok(None);
    }
    let finishes = store::finishes(&services.pool, execution_id).await?;
    for schema_id in &stale {
        let message = format!(
            "{schema_id}: the source snapshot its partitions read at ended with the previous coordinator; loading it again from the start"
        );
        console::log(&services.pool, execution_id, Some(schema_id), "warning", &message).await;
        store::cancel_partitions(&services.pool, execution_id, Some(schema_id)).await?;
        if let Some(shadow) = finishes.get(schema_id).and_then(|f| f.shadow.as_deref()) {
            ends.destination.drop_table(shadow).await?;
        }
    }
    store::forget(&services.pool, execution_id, &stale).await?;
    plan(services, ends, run, execution_id, Some(&stale)).await
}

/// How often the coordinator shows the source it still holds the run's snapshot.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// One coordinated execution.
struct Run<'a> {
    services: &'a Services,
    ends: Ends,
    execution_id: Uuid,
    sync_id: Uuid,
    /// How each planned schema ends, by schema.
    finishes: HashMap<String, Finish>,
    /// The counts of the schemas whose deletes are found by counting, taken while their
    /// partitions load.
    tallies: Mutex<HashMap<String, Tally>>,
    /// Most partitions loading at once.
    limit: usize,
    organization_id: Uuid,
}

impl Run<'_> {
    /// Looks at the partitions of the `running` schemas once: fails a schema whose partition
    /// failed, settles one whose partitions all committed, and starts waiting partitions.
    /// Returns whether a schema ended.
    async fn step(&self, running: &[String]) -> Result<bool, ConnectorError> {
        let partitions = store::partitions(&self.services.pool, self.execution_id).await?;
        let (mut in_flight, mut ended) = (0, false);
        let mut waiting = Vec::new();
        for schema_id in running {
            let Some(finish) = self.finishes.get(schema_id) else { continue };
            let parts: Vec<&PartitionState> = partitions.iter().filter(|p| &p.schema_id == schema_id).collect();
            if let Some(failed) = parts.iter().find(|p| matches!(p.execution.as_deref(), Some("failed" | "canceled"))) {
                let reason = failed.error.clone().unwrap_or_else(|| "it was canceled".into());
                self.fail(schema_id, finish, &format!("a partition failed: {reason}")).await?;
                ended = true;
            } else if parts.iter().all(|p| p.committed) {
                self.settle(schema_id, finish).await?;
                ended = true;
            } else {
                in_flight += parts.iter().filter(|p| !p.committed && p.execution.is_some()).count();
                waiting.extend(parts.into_iter().filter(|p| p.execution.is_none()));
            }
        }
        for partition in waiting.into_iter().take(self.limit.saturating_sub(in_flight)) {
            let started = store::start_partition(&self.services.pool, partition.id, self.organization_id).await?;
            if let Some(id) = started
                && let Err(e) = self.services.queues.enqueue(BULK_PARTITION, id).await
            {
                // The partition stays queued; the scheduler pushes it again.
                tracing::warn!(execution_id = %id, error = %e, "cannot queue a partition");
            }
        }
        Ok(ended)
    }

    /// Settles a schema whose partitions all committed; a failure that is not retryable fails it.
    async fn settle(&self, schema_id: &str, finish: &Finish) -> Result<(), ConnectorError> {
        let (source, destination) = (self.ends.source.as_ref(), self.ends.destination.as_ref());
        let tally = self.tallies.lock().unwrap_or_else(|e| e.into_inner()).remove(schema_id);
        let tallied = match tally {
            Some(tally) => tally.finish().await?,
            None => Tallied::default(),
        };
        let ends = (source, destination, tallied);
        let end = match settle::settle(self.services, ends, self.execution_id, schema_id, finish).await {
            Ok(end) => end,
            Err(e) if e.class.is_retryable() => return Err(e),
            Err(e) => return self.fail(schema_id, finish, &e.message).await,
        };
        let message = format!("{schema_id} completed ({} rows deleted)", end.deleted);
        console::log(&self.services.pool, self.execution_id, Some(schema_id), "info", &message).await;
        store::end_schema(&self.services.pool, (self.sync_id, self.execution_id), schema_id, end).await
    }

    /// Fails `schema_id`: stops its partitions and drops its shadow table.
    async fn fail(&self, schema_id: &str, finish: &Finish, message: &str) -> Result<(), ConnectorError> {
        store::cancel_partitions(&self.services.pool, self.execution_id, Some(schema_id)).await?;
        self.drop_shadow(finish).await;
        let line = format!("{schema_id} failed: {message}");
        console::log(&self.services.pool, self.execution_id, Some(schema_id), "error", &line).await;
        let end = SchemaEnd { status: "failed", message: Some(message.to_owned()), deleted: 0, state: None };
        store::end_schema(&self.services.pool, (self.sync_id, self.execution_id), schema_id, end).await
    }

    /// Cancels the running schemas (or only `only`).
    async fn cancel(&self, only: Option<&str>) -> Result<(), ConnectorError> {
        store::cancel_partitions(&self.services.pool, self.execution_id, only).await?;
        for (schema_id, _) in store::running(&self.services.pool, self.execution_id).await? {
            if only.is_some_and(|s| s != schema_id) {
                continue;
            }
            if let Some(finish) = self.finishes.get(&schema_id) {
                self.drop_shadow(finish).await;
            }
            let end =
                SchemaEnd { status: "canceled", message: Some("canceled by a user".into()), deleted: 0, state: None };
            store::end_schema(&self.services.pool, (self.sync_id, self.execution_id), &schema_id, end).await?;
        }
        Ok(())
    }

    /// Drops a schema's shadow table; failing only leaves it behind.
    async fn drop_shadow(&self, finish: &Finish) {
        if let Some(shadow) = &finish.shadow
            && let Err(e) = self.ends.destination.drop_table(shadow).await
        {
            tracing::warn!(%shadow, error = %e.message, "could not drop a shadow table");
        }
    }
}

/// Partitions running at once: the sync's `concurrency_limit` (`resync_concurrency_limit` for
/// resyncs), unlimited when unset.
fn concurrency(spec: &serde_json::Value, options: &StartOptions) -> usize {
    let field = if options.resync_mode.is_some() { "resync_concurrency_limit" } else { "concurrency_limit" };
    spec[field].as_u64().filter(|n| *n > 0).map_or(usize::MAX, |n| n as usize)
}
