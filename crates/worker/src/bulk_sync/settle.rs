//! Ending a schema once all its partitions committed: reconcile the counts, put a shadow table
//! in place (after counting, or carrying over as soft-deleted, the rows the source no longer
//! has) or sweep the live table with the source's keys, and move the cursor.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use futures::StreamExt;
use syncline_core::{
    connector::{BulkDestination, ConnectorError, Keys, ReadEvent, ReadRequest, Readable, Source},
    record::{Field, Schema},
};
use tokio::{sync::Semaphore, task::JoinHandle};
use uuid::Uuid;

use super::{
    plan::{Finish, advanced},
    store::{self, SchemaEnd},
};
use crate::Services;

/// The counts that tell whether the source deleted rows of a schema whose deletes are found
/// by counting (see [`sweep`]), taken while its partitions load so they are ready when the
/// partitions committed: the source's rows, and the table's before the run when the
/// destination can count them from a moment and no partition had started. A schema's counts
/// run one at a time, and a few schemas' at once, beside the loads rather than in their way;
/// a run of many schemas holds a few snapshots open, not one connection per table.
pub struct Tally(JoinHandle<Result<Tallied, ConnectorError>>);

/// Schemas counted at once.
const COUNTING_AT_ONCE: usize = 2;
/// Schemas whose table is counted from before the run; the others' are counted once loaded.
const COUNTED_FROM_BEFORE: usize = 8;

/// What [`Tally`] counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tallied {
    pub source: Option<u64>,
    /// The table's rows before the run.
    pub destination: Option<u64>,
}

impl Tally {
    /// Starts the counts of the schemas of `finishes` that need them; the table's count is
    /// taken only for the schemas in `unstarted`, from before any of their partitions may commit.
    pub async fn start(
        (source, destination): (&Arc<dyn Source>, &Arc<dyn BulkDestination>),
        finishes: &HashMap<String, Finish>,
        unstarted: &HashSet<String>,
    ) -> Result<HashMap<String, Tally>, ConnectorError> {
        let mut tallies = HashMap::new();
        let turns = Arc::new(Semaphore::new(COUNTING_AT_ONCE));
        for (schema_id, finish) in finishes {
            if !(finish.deletes && finish.shadow.is_none() && finish.soft_delete.is_none()) {
                continue;
            }
            let before = match unstarted.contains(schema_id) && tallies.len() < COUNTED_FROM_BEFORE {
                true => destination.count_from_now(&finish.table).await?,
                false => None,
            };
            let (source, stream, turns) = (source.clone(), finish.stream.clone(), turns.clone());
            let counting = tokio::spawn(async move {
                let _turn = turns.acquire_owned().await.map_err(|e| ConnectorError::transient(e.to_string()))?;
                let source = source.count(&stream).await?;
                let destination = match before {
                    Some(before) => Some(before.await?),
                    None => None,
                };
                Ok(Tallied { source, destination })
            });
            tallies.insert(schema_id.clone(), Tally(counting));
        }
        Ok(tallies)
    }

    /// Waits for the counts.
    pub async fn finish(self) -> Result<Tallied, ConnectorError> {
        self.0.await.map_err(|e| ConnectorError::transient(format!("counting: {e}")))?
    }
}

/// Settles `schema_id` of `execution_id`, given the counts taken during the run; an error that
/// is not retryable fails the schema.
pub async fn settle(
    services: &Services,
    (source, destination, tallied): (&dyn Source, &dyn BulkDestination, Tallied),
    execution_id: Uuid,
    schema_id: &str,
    finish: &Finish,
) -> Result<SchemaEnd<'static>, ConnectorError> {
    let totals = store::totals(&services.pool, execution_id, schema_id).await?;
    let accounted = totals.written + totals.rejected + totals.skipped;
    if totals.read != accounted {
        return Err(ConnectorError::permanent(format!(
            "rows do not reconcile: {} read, but {} written + {} rejected + {} skipped",
            totals.read, totals.written, totals.rejected, totals.skipped
        )));
    }
    let deleted = match &finish.shadow {
        Some(shadow) => swap_in(services, destination, (execution_id, schema_id), (shadow, finish)).await?,
        None if finish.deletes => {
            // The table's rows now: those before the run and those the run added.
            let now = tallied.destination.zip(totals.added).map(|(before, added)| before + added as u64);
            sweep(services, (source, tallied.source), (destination, now), finish).await?
        }
        None => 0,
    };
    Ok(SchemaEnd {
        status: "completed",
        message: None,
        deleted: deleted as i64,
        state: finish.advance.then(|| advanced(finish.cursor.clone(), &totals.cursors)),
    })
}

/// Puts a schema's loaded shadow in place of its table, once keyed and its deletes counted
/// (or carried over as soft-deleted); returns the rows deleted. The swap's start is recorded
/// first, so a coordinator that takes over a schema stopped in between finishes the swap, or
/// finds it done, rather than looking for a shadow that is now the table.
async fn swap_in(
    services: &Services,
    destination: &dyn BulkDestination,
    (execution_id, schema_id): (Uuid, &str),
    (shadow, finish): (&str, &Finish),
) -> Result<u64, ConnectorError> {
    let deleted = match store::swap_started(&services.pool, execution_id, schema_id).await? {
        Some(deleted) if destination.swapped(shadow).await? => return Ok(deleted as u64),
        Some(deleted) => deleted as u64,
        None => {
            if finish.add_key {
                destination.add_key(shadow, &finish.key).await?;
            }
            let deleted = match finish.deletes && destination.columns(&finish.table).await?.is_some() {
                true => destination.retire(&finish.table, shadow, &finish.key, finish.soft_delete.as_deref()).await?,
                false => 0,
            };
            store::start_swap(&services.pool, execution_id, schema_id, deleted as i64).await?;
            deleted
        }
    };
    destination.swap(shadow, &finish.table).await?;
    Ok(deleted)
}

/// Deletes (or soft-deletes) the rows of the live table whose key the source no longer has.
/// The table holds every key the source has (it was loaded whole, then kept up with what moved
/// past the cursor), so when both hold as many rows nothing was deleted and the keys need not
/// be compared. The source's count may be one taken while the partitions loaded: a row deleted
/// meanwhile is then found by the next run's counts. The table's count is counted when not
/// given.
async fn sweep(
    services: &Services,
    (source, source_rows): (&dyn Source, Option<u64>),
    (destination, table_rows): (&dyn BulkDestination, Option<u64>),
    finish: &Finish,
) -> Result<u64, ConnectorError> {
    if finish.soft_delete.is_none() {
        let at_source = match source_rows {
            Some(rows) => Some(rows),
            None => source.count(&finish.stream).await?,
        };
        let at_destination = match table_rows {
            Some(rows) => rows,
            None => destination.count(&finish.table).await?,
        };
        if at_source == Some(at_destination) {
            return Ok(0);
        }
    }
    let request = ReadRequest::new(
        Readable::Stream(finish.stream.clone()),
        finish.key_fields.clone(),
        services.batch_rows,
        services.batch_bytes,
    );
    let reading = source.read(request).await?;
    let fields = reading
        .schema
        .fields
        .iter()
        .zip(&finish.key)
        .map(|(f, column)| Field { name: column.clone(), field_type: f.field_type.clone() })
        .collect();
    let key_schema = Arc::new(Schema { fields });
    let schema = key_schema.clone();
    let keys = reading
        .events
        .filter_map(move |event| {
            let schema = schema.clone();
            async move {
                match event {
                    Ok(ReadEvent::Batch(batch)) => Some(Ok(batch.with_schema(schema))),
                    Ok(ReadEvent::Checkpoint(_)) => None,
                    Err(e) => Some(Err(e)),
                }
            }
        })
        .boxed();
    destination.delete_keys(&finish.table, (keys, key_schema, Keys::Unlisted), finish.soft_delete.as_deref()).await
}
