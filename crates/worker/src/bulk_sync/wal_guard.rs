//! The guard that keeps a capture from filling its source's disk: a slot holding more WAL than
//! `CDC_MAX_RETAINED_WAL_MB` is dropped with its publication, the sync's cursors are cleared so
//! its next run reloads the tables (and prepares a new slot), and the capture ends failed.

use syncline_connectors::postgres::cdc::Capture;
use syncline_core::connector::ConnectorError;
use uuid::Uuid;

use crate::{Services, connections::state};

/// Fails with the reason, after dropping the slot, when `capture` (of sync `sync_id`) holds too
/// much WAL.
pub async fn check(services: &Services, capture: &Capture, sync_id: Uuid) -> Result<(), ConnectorError> {
    let limit = services.max_retained_wal_mb;
    if capture.retained_bytes().await? <= limit << 20 {
        return Ok(());
    }
    capture.remove().await?;
    let client = services.pool.get().await.map_err(state)?;
    let clear = "update bulk_sync_schemas set state = state - 'cursor' where bulk_sync_id = $1";
    client.execute(clear, &[&sync_id]).await.map_err(state)?;
    client.execute("delete from capture_slots where bulk_sync_id = $1", &[&sync_id]).await.map_err(state)?;
    Err(ConnectorError::permanent(format!(
        "the replication slot held more than {limit} MB of WAL (CDC_MAX_RETAINED_WAL_MB); capture stopped and the slot \
         dropped; the next run reloads the tables"
    )))
}
