//! Dropping the replication slots of deleted bulk syncs: a slot nobody reads keeps WAL at the
//! source forever. Every worker looks now and then at `capture_slots` rows whose bulk sync is
//! gone, drops the slot and publication through the (still existing) source connection and
//! deletes the row; a row whose connection is gone too is only deleted, with a warning.

use std::time::Duration;

use syncline_connectors::postgres::{
    PostgresConfig,
    cdc::{Capture, Names},
};
use syncline_core::connector::ConnectorError;
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    Services,
    connections::{self, state},
};

/// How often a worker looks for slots to drop.
const EVERY: Duration = Duration::from_secs(5);

/// Sweeps until `stop` turns true.
pub async fn sweep_until(services: &Services, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopped = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => true,
            _ = interval.tick() => false,
        };
        if stopped {
            return;
        }
        if let Err(e) = sweep(services).await {
            tracing::warn!(error = %e.message, "could not drop the slots of deleted bulk syncs");
        }
    }
}

/// Drops the slot of every deleted bulk sync once (rows locked, so workers share the work).
async fn sweep(services: &Services) -> Result<(), ConnectorError> {
    let mut client = services.pool.get().await.map_err(state)?;
    let tx = client.transaction().await.map_err(state)?;
    let rows = tx
        .query(
            "select s.bulk_sync_id, s.slot, s.publication, c.id is not null as connected,
                    c.type as slot_type, c.configuration as slot_config, c.secrets as slot_secrets
             from capture_slots s left join connections c on c.id = s.connection_id
             where not exists (select 1 from bulk_syncs b where b.id = s.bulk_sync_id)
             for update of s skip locked",
            &[],
        )
        .await
        .map_err(state)?;
    for row in &rows {
        let sync_id: Uuid = row.try_get("bulk_sync_id").map_err(state)?;
        let names = Names {
            slot: row.try_get("slot").map_err(state)?,
            publication: row.try_get("publication").map_err(state)?,
        };
        if row.try_get("connected").map_err(state)? {
            let (_, config) = connections::open(services, row, "slot")?;
            let config: PostgresConfig = serde_json::from_value(config)
                .map_err(|e| ConnectorError::config(format!("connection postgresql: {e}")))?;
            let ctx = services.connector.child();
            let _cancel = ctx.cancel.clone().drop_guard();
            Capture::connect(&ctx, &config, names.clone()).await?.remove().await?;
            tracing::info!(%sync_id, slot = %names.slot, "dropped the replication slot of a deleted bulk sync");
        } else {
            let slot = &names.slot;
            tracing::warn!(%sync_id, %slot, "the connection of a deleted bulk sync's slot is gone: drop the slot by hand");
        }
        tx.execute("delete from capture_slots where bulk_sync_id = $1", &[&sync_id]).await.map_err(state)?;
    }
    tx.commit().await.map_err(state)
}
