//! One partition of a bulk sync: read its slice of the source table and load it into the
//! destination in one destination transaction marked with the partition's id. Committing the
//! partition in Syncline (with its counts) is the run's outcome, so a partition is loaded once
//! even when its worker dies: a retry that finds the marker at the destination only records it.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use serde_json::Value as Json;
use syncline_core::{
    connector::{ConnectorError, Cursor, LoadRequest, ReadEvent, ReadRequest, Readable},
    db::{DbError, Transaction},
    executions::{self, Claim, Counts, Effects, Lease, Outcome},
    record::{Field, RecordBatch, Schema, Value},
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{plan::Task, store};
use crate::{
    Services, connections,
    kind::{RunEnd, Stop},
    read_ahead::read_ahead,
};

/// What a loaded partition records: its counts and the highest tracking value it read.
#[derive(Debug, Clone, Default)]
pub struct PartitionLoaded {
    pub rows_read: i64,
    pub rows_written: i64,
    pub rows_skipped: i64,
    /// How many rows the table did not hold before, when the destination told.
    pub rows_added: Option<i64>,
    pub checkpoint: Option<Json>,
    pub worker: String,
}

#[async_trait::async_trait]
impl Effects for PartitionLoaded {
    async fn apply(&self, tx: &Transaction<'_>, partition_id: Uuid) -> Result<(), DbError> {
        let row = tx
            .query_opt(
                "update bulk_partitions set status = 'committed', rows_read = $2, rows_written = $3, rows_skipped = $4,
                    rows_added = $5, checkpoint = $6, worker = $7, committed_at = now()
                 where id = $1 and status <> 'committed' returning execution_id, schema_id",
                &[
                    &partition_id,
                    &self.rows_read,
                    &self.rows_written,
                    &self.rows_skipped,
                    &self.rows_added,
                    &self.checkpoint,
                    &self.worker,
                ],
            )
            .await?;
        if let Some(row) = row {
            let (execution_id, schema_id): (Uuid, String) = (row.try_get(0)?, row.try_get(1)?);
            tx.execute(
                "update bulk_schema_executions set rows_written = rows_written + $3, rows_skipped = rows_skipped + $4,
                    partitions_committed = partitions_committed + 1, updated_at = now()
                 where execution_id = $1 and schema_id = $2",
                &[&execution_id, &schema_id, &self.rows_written, &self.rows_skipped],
            )
            .await?;
            // Wakes the execution's coordinator when this commits.
            tx.execute("select pg_notify($1, $2)", &[&crate::PARTITION_COMMITS, &execution_id.to_string()]).await?;
        }
        Ok(())
    }
}

/// Batches read ahead of the one being written.
const READ_AHEAD: usize = 4;
/// Bounds of a partition's batches: small, so the destination starts writing soon after the
/// slice's first rows arrive and never waits long for the next ones.
const BATCH_ROWS: usize = 8192;
const BATCH_BYTES: usize = 2 << 20;

/// How often a partition records how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Loads the claimed partition until it commits or `stop` says otherwise.
pub async fn run(
    services: &Services,
    claim: &Claim,
    worker: &str,
    mut stop: watch::Receiver<Option<Stop>>,
) -> RunEnd<PartitionLoaded> {
    let mut counts = Counts::default();
    let stopped = tokio::select! {
        biased;
        end = load(services, claim, worker, &mut counts) => Err(end),
        stop = stop.wait_for(Option::is_some) => Ok(stop.ok().and_then(|s| *s).unwrap_or(Stop::Lost)),
    };
    match stopped {
        Ok(stop) => RunEnd::Stopped { stop, counts },
        Err(Ok(loaded)) => {
            let counts = Counts {
                read: loaded.rows_read,
                written: loaded.rows_written,
                inserted: loaded.rows_written,
                ..counts
            };
            RunEnd::Finished { outcome: Outcome::Completed(loaded), counts }
        }
        Err(Err(error)) => {
            RunEnd::Finished { outcome: Outcome::Failed { error: error.message, class: error.class }, counts }
        }
    }
}

async fn load(
    services: &Services,
    claim: &Claim,
    worker: &str,
    counts: &mut Counts,
) -> Result<PartitionLoaded, ConnectorError> {
    let partition_id = claim.subject_id;
    let loaded = |rows: u64| PartitionLoaded {
        rows_read: rows as i64,
        rows_written: rows as i64,
        worker: worker.to_owned(),
        ..PartitionLoaded::default()
    };
    let Some((task, _, sync_id)) = store::partition(&services.pool, partition_id).await? else {
        return Ok(loaded(0));
    };
    let ctx = services.connector.child();
    let _cancel = ctx.cancel.clone().drop_guard();
    let sync = store::sync(&services.pool, sync_id).await?;
    let (source, source_config) = connections::open(services, &sync.connections, "source")?;
    let (target, target_config) = connections::open(services, &sync.connections, "target")?;
    let source = source.source(&ctx, &source_config)?;
    let destination = target.bulk_destination(&ctx, &target_config)?;
    // Only a partition claimed again can have been loaded before its commit was recorded.
    if claim.attempt > 1
        && let Some(rows) = destination.loaded(&task.table, partition_id).await?
    {
        tracing::info!(%partition_id, rows, "partition was loaded before; recording it");
        return Ok(loaded(rows));
    }
    let mut request = ReadRequest::new(
        Readable::Stream(task.stream.clone()),
        task.fields.clone(),
        services.batch_rows.min(BATCH_ROWS),
        services.batch_bytes.min(BATCH_BYTES),
    );
    request.slice = Some(task.slice.clone()).filter(|s| !s.is_null());
    request.snapshot = task.snapshot.clone();
    if let (Some(after), Some(tracking)) = (&task.after, task.tracking) {
        // The partition commits all it read at once and tracks the highest value itself.
        let field = task.fields[tracking].clone();
        request.cursor = Some(Cursor { field, after: Some(after.clone()), ordered: false });
    }
    let reading = source.read(request).await?;
    let schema = Arc::new(renamed(&reading.schema, &task));
    let mut events = read_ahead(reading.events, READ_AHEAD);
    let mut loader = destination
        .load(LoadRequest {
            table: task.table.clone(),
            schema: schema.clone(),
            key: task.key.clone(),
            mode: task.load.into(),
            marker: partition_id,
            soft_delete: task.soft_delete.clone(),
        })
        .await?;
    let mut highest: Option<Value> = None;
    let mut reported = tokio::time::Instant::now();
    let mut room = task.limit.unwrap_or(u64::MAX);
    while let Some(event) = events.next().await {
        let ReadEvent::Batch(batch) = event? else { continue };
        let batch = match batch.len() as u64 > room {
            true => batch.truncated(room as usize),
            false => batch,
        };
        room -= batch.len() as u64;
        if let Some(index) = task.tracking {
            track(&batch, index, &mut highest)?;
        }
        counts.read += batch.len() as i64;
        loader.write(&batch.with_schema(schema.clone())).await?;
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = tokio::time::Instant::now();
            match executions::record_progress(&services.pool, claim.execution_id, worker, counts).await {
                Ok(Lease::Lost) => return Err(ConnectorError::transient("the partition's lease was lost")),
                Ok(_) => {}
                Err(e) => tracing::debug!(%partition_id, error = %e, "could not record progress"),
            }
        }
        if room == 0 {
            break;
        }
    }
    let committed = loader.commit().await?;
    Ok(PartitionLoaded {
        rows_read: counts.read,
        rows_written: committed.rows as i64,
        rows_skipped: 0,
        rows_added: committed.added.map(|rows| rows as i64),
        checkpoint: highest.map(|v| v.to_json()),
        worker: worker.to_owned(),
    })
}

/// The read's schema with each field named as its destination column.
fn renamed(schema: &Schema, task: &Task) -> Schema {
    let fields = schema
        .fields
        .iter()
        .zip(&task.columns)
        .map(|(f, column)| Field { name: column.clone(), field_type: f.field_type.clone() })
        .collect();
    Schema { fields }
}

/// Raises `highest` to the largest value of field `index` in `batch`.
fn track(batch: &RecordBatch, index: usize, highest: &mut Option<Value>) -> Result<(), ConnectorError> {
    for record in batch.records() {
        let value = record.get(index).map_err(|e| ConnectorError::permanent(e.to_string()))?;
        let higher = match (&value, highest.as_ref()) {
            (Value::Null, _) => false,
            (_, None) => true,
            (Value::Int(v), Some(Value::Int(h))) => v > h,
            (Value::Date(v), Some(Value::Date(h))) => v > h,
            (Value::Timestamp(v), Some(Value::Timestamp(h))) => v > h,
            (Value::TimestampTz(v), Some(Value::TimestampTz(h))) => v > h,
            _ => false,
        };
        if higher {
            *highest = Some(value);
        }
    }
    Ok(())
}
