//! Dropping the event store's partitions once every route delivered them and they are older
//! than the retention (`EVENTS_RETENTION_HOURS`): each worker sweeps now and then, and a
//! partition is dropped whole ([`syncline_core::events::store::drop_done`]).

use std::time::Duration;

use tokio::sync::watch;

use crate::Services;

/// How often a worker sweeps.
const EVERY: Duration = Duration::from_secs(10);

/// Sweeps until `stop` turns true.
pub async fn sweep_until(services: &Services, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = interval.tick() => {}
        }
        match syncline_core::events::store::drop_done(&services.pool, services.event_delivery.retention).await {
            Ok(dropped) if !dropped.is_empty() => tracing::info!(?dropped, "dropped delivered event partitions"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not drop delivered event partitions"),
        }
    }
}
