//! The worker role: pulls jobs off one Redis queue per job kind and runs them.
//!
//! Workers are stateless. Any number can run; each claims executions in Postgres, so a job
//! delivered twice runs once, and an execution whose worker died is taken over once its lease
//! expires. On SIGTERM a worker stops taking jobs and hands its running executions back.
//! Workers also drop the replication slots of deleted bulk syncs ([`capture_slots`]), send the
//! log events of event streams ([`notifications`]) and drop delivered event partitions
//! ([`event_retention`]).

mod abort;
mod alerts;
mod bulk_sync;
mod capture_slots;
mod connections;
mod console;
mod event_delivery;
mod event_retention;
mod job;
mod kind;
mod model_sync;
mod notifications;
mod read_ahead;
mod rounds;
mod slots;

use std::{sync::Arc, time::Duration};

use apalis::prelude::{BackendExt, Event, EventListenerExt, Strategy, WorkerBuilder, WorkerBuilderExt};
use syncline_core::{connector::Context, crypto::SecretBox, db::DbPool, payload::PayloadStore, queue::Queues};
use tokio::sync::broadcast;
use tracing::{error, info};

/// What every job handler shares.
#[derive(Clone)]
pub struct Services {
    pub pool: DbPool,
    pub store: PayloadStore,
    /// Where record logs go (`EXECUTION_LOG_BUCKET`, else the payload store).
    pub record_logs: PayloadStore,
    pub secrets: SecretBox,
    pub queues: Queues,
    /// Where connections may go and the deadlines of calls to customer systems.
    pub connector: Context,
    /// Slots of this process one organization may hold at once.
    pub slots: Arc<slots::OrganizationSlots>,
    pub heartbeat: Duration,
    /// Upper bounds of one record batch.
    pub batch_rows: usize,
    pub batch_bytes: usize,
    /// How many written records a model sync reads back to verify (see
    /// [`syncline_core::config::Settings::verify_records`]).
    pub verify_records: u64,
    /// About how many rows one partition of a bulk sync's table holds.
    pub partition_rows: u64,
    /// The most WAL, in MB, a bulk sync's replication slot may hold.
    pub max_retained_wal_mb: u64,
    /// How event routes deliver.
    pub event_delivery: syncline_core::config::EventDelivery,
    /// Where log events of event streams are posted.
    pub slack: syncline_core::config::SlackSettings,
    /// Where sync error emails go out, if anywhere.
    pub smtp: Option<syncline_core::config::SmtpSettings>,
    /// How long an execution runs before it is emailed as running long (`LONGSYNC_THRESHOLD`).
    pub long_sync: Option<Duration>,
    /// Syncline's public base URL (`POLYTOMIC_URL`), which emails link to.
    pub public_url: url::Url,
    /// The ids of the bulk executions one of whose partitions just committed (on any worker),
    /// from the state database's [`PARTITION_COMMITS`] channel.
    pub partition_commits: tokio::sync::broadcast::Sender<String>,
}

/// The state database's notification channel of committed bulk partitions.
pub const PARTITION_COMMITS: &str = "bulk_partition_commits";

impl Services {
    /// How long an execution stays claimed without a renewal: three heartbeats.
    pub fn lease(&self) -> Duration {
        self.heartbeat * 3
    }
}

pub use slots::OrganizationSlots;

/// Default record-batch bounds: large enough to amortise round trips, small enough to keep a
/// worker's memory to a few tens of megabytes whatever the table size.
pub const BATCH_ROWS: usize = 50_000;
pub const BATCH_BYTES: usize = 16 << 20;

/// How often an idle worker asks Redis for work besides when woken by a job queued
/// ([`Queues::wakes`](syncline_core::queue::Queues::wakes)): what a missed wake may cost.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Runs a worker until `shutdown` resolves, then drains: running executions are handed back.
/// Each job kind has its own queue and its own `concurrency` slots.
pub async fn run(
    services: Services,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let services = Arc::new(services);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });
    let sweeper = services.clone();
    let sweep_stop = stop_rx.clone();
    let sweep = tokio::spawn(async move { capture_slots::sweep_until(&sweeper, sweep_stop).await });
    let sender = services.clone();
    let send_stop = stop_rx.clone();
    let send = tokio::spawn(async move { notifications::send_until(&sender, send_stop).await });
    let mailer = services.clone();
    let mail_stop = stop_rx.clone();
    let mail = tokio::spawn(async move { alerts::send_until(&mailer, mail_stop).await });
    let dropper = services.clone();
    let drop_stop = stop_rx.clone();
    let retention = tokio::spawn(async move { event_retention::sweep_until(&dropper, drop_stop).await });
    let wakes = services.queues.wakes();
    let routes = services.event_delivery.routes;
    tokio::try_join!(
        run_kind::<model_sync::ModelSync>(services.clone(), concurrency, &wakes, stop_rx.clone()),
        run_kind::<bulk_sync::BulkSync>(services.clone(), concurrency, &wakes, stop_rx.clone()),
        run_kind::<bulk_sync::BulkPartition>(services.clone(), concurrency, &wakes, stop_rx.clone()),
        run_kind::<bulk_sync::BulkCdc>(services.clone(), concurrency, &wakes, stop_rx.clone()),
        run_kind::<event_delivery::EventDelivery>(services, routes, &wakes, stop_rx),
    )?;
    let _ = tokio::join!(sweep, send, mail, retention);
    info!("worker stopped");
    Ok(())
}

/// Runs the worker of job kind `K` until `stop` turns true; it polls its queue when `wakes`
/// names its kind, and every [`POLL_INTERVAL`].
async fn run_kind<K: kind::JobKind>(
    services: Arc<Services>,
    concurrency: usize,
    wakes: &broadcast::Sender<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let name = syncline_core::queue::worker_name(K::KIND);
    info!(worker = %name, kind = K::KIND, concurrency, "worker started");
    let queue = services.queues.of(K::KIND)?.clone();
    let strategy = Strategy::new().stream(queued::<K>(wakes.subscribe())).interval(POLL_INTERVAL);
    let worker = WorkerBuilder::new(name)
        .backend(queue.poll_with_strategy(strategy))
        .data(services)
        .concurrency(concurrency)
        .on_event(|ctx, event| match event {
            Event::Error(e) => error!(worker = %ctx.name(), error = %e, "job failed"),
            _ => tracing::debug!(worker = %ctx.name(), ?event, "worker event"),
        })
        .build(job::handle::<K>);
    worker
        .run_until(async move {
            let _ = stop.wait_for(|stop| *stop).await;
            Ok::<(), std::io::Error>(())
        })
        .await?;
    Ok(())
}

/// Yields when a job of kind `K` was queued. A wake waiting to be taken stands for every job
/// queued meanwhile: one poll fetches them.
fn queued<K: kind::JobKind>(mut wakes: broadcast::Receiver<String>) -> futures::channel::mpsc::Receiver<()> {
    let (mut wake, woken) = futures::channel::mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            match wakes.recv().await {
                Ok(kind) if kind != K::KIND => continue,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
            if wake.try_send(()).is_err_and(|e| e.is_disconnected()) {
                return;
            }
        }
    });
    woken
}
