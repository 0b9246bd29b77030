//! The hook that starts change data capture for a bulk sync: before its load reads anything, a
//! `replicate` sync from a PostgreSQL connection with `change_detection` on gets its replication
//! slot and publication (for its enabled tables), so no change falls between the load and the
//! stream. The slot is recorded in `capture_slots` before it is created, so it is never lost
//! track of. A completed load then starts the sync's capture job ([`super::stream`]).

use serde_json::Value as Json;
use syncline_connectors::postgres::{
    PostgresConfig,
    cdc::{self, Capture, Names},
};
use syncline_core::{
    connector::{ConnectorError, Context},
    db::DbPool,
    executions,
};
use uuid::Uuid;

use super::{
    store::{SchemaRow, SyncRow},
    stream::StreamOptions,
};
use crate::{Services, connections::state};

/// The source's settings when sync `sync` captures changes: `replicate` mode from a PostgreSQL
/// connection (`source`, unsealed) whose `change_detection` is on.
pub fn config(sync: &SyncRow, source: &Json) -> Result<Option<PostgresConfig>, ConnectorError> {
    let source_type: String = sync.connections.try_get("source_type").map_err(state)?;
    if !cdc::captures(sync.mode, &source_type, source) {
        return Ok(None);
    }
    let config = serde_json::from_value(source.clone())
        .map_err(|e| ConnectorError::config(format!("connection postgresql: {e}")))?;
    Ok(Some(config))
}

/// Prepares sync `sync_id`'s slot and publication for its enabled `schemas` when it captures
/// changes. Repeatable: the publication follows the enabled tables.
pub async fn prepare(
    pool: &DbPool,
    ctx: &Context,
    (sync_id, sync): (Uuid, &SyncRow),
    source: &Json,
    schemas: &[SchemaRow],
) -> Result<(), ConnectorError> {
    let Some(config) = config(sync, source)? else { return Ok(()) };
    let connection_id: Uuid = sync.connections.try_get("source_connection_id").map_err(state)?;
    let names = Names::for_bulk_sync(sync_id);
    let client = pool.get().await.map_err(state)?;
    client
        .execute(
            "insert into capture_slots (bulk_sync_id, connection_id, slot, publication) values ($1, $2, $3, $4)
             on conflict (bulk_sync_id) do update set connection_id = excluded.connection_id",
            &[&sync_id, &connection_id, &names.slot, &names.publication],
        )
        .await
        .map_err(state)?;
    let tables: Vec<String> = schemas.iter().filter(|s| s.enabled).map(|s| s.schema_id.clone()).collect();
    Capture::connect(ctx, &config, names).await?.prepare(&tables).await?;
    Ok(())
}

/// Starts the capture of sync `sync_id` after its load `execution_id` completed, unless one
/// runs already.
pub async fn start(
    services: &Services,
    (sync_id, organization_id): (Uuid, Uuid),
    execution_id: Uuid,
) -> Result<(), ConnectorError> {
    let client = services.pool.get().await.map_err(state)?;
    let options = serde_json::to_value(StreamOptions { execution_id }).expect("options serialize");
    match executions::create(&client, (executions::BULK_CDC, sync_id, organization_id), "bulk_sync", false, &options)
        .await
    {
        Ok(id) => {
            if let Err(e) = services.queues.enqueue(executions::BULK_CDC, id).await {
                // The execution stays queued; the scheduler pushes it again.
                tracing::warn!(execution_id = %id, error = %e, "cannot queue a capture");
            }
            Ok(())
        }
        Err(executions::StartError::AlreadyRunning) => Ok(()),
        Err(executions::StartError::Db(e)) => Err(state(e)),
    }
}
