//! Ending a schema once all its partitions committed: reconcile the counts, put a shadow table
//! in place (after counting, or carrying over as soft-deleted, the rows the source no longer
//! has) or sweep the live table with the source's keys, and move the cursor.

use std::{collections::HashMap, sync::Arc};

use futures::StreamExt;
use syncline_core::{
    connector::{BulkDestination, ConnectorError, Keys, ReadEvent, ReadRequest, Readable, Source},
    record::{Field, Schema},
};
use uuid::Uuid;

use super::{
    plan::{Finish, advanced},
    store::{self, SchemaEnd},
};
use crate::Services;

/// A count of a source stream's rows in progress.
pub type SourceRows = tokio::task::JoinHandle<Result<Option<u64>, ConnectorError>>;

/// Starts counting the source rows of each schema whose deleted rows are found by comparing
/// counts (see [`sweep`]), so the count is ready when its partitions committed.
pub fn count_sources(source: &Arc<dyn Source>, finishes: &HashMap<String, Finish>) -> HashMap<String, SourceRows> {
    finishes
        .iter()
        .filter(|(_, f)| f.deletes && f.shadow.is_none() && f.soft_delete.is_none())
        .map(|(schema_id, finish)| {
            let (source, stream) = (source.clone(), finish.stream.clone());
            (schema_id.clone(), tokio::spawn(async move { source.count(&stream).await }))
        })
        .collect()
}

/// Settles `schema_id` of `execution_id`, given the source's row count if one was taken during
/// the run; an error that is not retryable fails the schema.
pub async fn settle(
    services: &Services,
    (source, destination, source_rows): (&dyn Source, &dyn BulkDestination, Option<u64>),
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
        Some(shadow) => {
            if finish.add_key {
                destination.add_key(shadow, &finish.key).await?;
            }
            let deleted = match finish.deletes && destination.columns(&finish.table).await?.is_some() {
                true => destination.retire(&finish.table, shadow, &finish.key, finish.soft_delete.as_deref()).await?,
                false => 0,
            };
            destination.swap(shadow, &finish.table).await?;
            deleted
        }
        None if finish.deletes => sweep(services, (source, source_rows), destination, finish).await?,
        None => 0,
    };
    Ok(SchemaEnd {
        status: "completed",
        message: None,
        deleted: deleted as i64,
        state: finish.advance.then(|| advanced(finish.cursor.clone(), &totals.cursors)),
    })
}

/// Deletes (or soft-deletes) the rows of the live table whose key the source no longer has.
/// The table holds every key the source has (it was loaded whole, then kept up with what moved
/// past the cursor), so when both hold as many rows nothing was deleted and the keys need not
/// be compared. The source's count may be one taken while the partitions loaded: a row deleted
/// meanwhile is then found by the next run's counts.
async fn sweep(
    services: &Services,
    (source, source_rows): (&dyn Source, Option<u64>),
    destination: &dyn BulkDestination,
    finish: &Finish,
) -> Result<u64, ConnectorError> {
    if finish.soft_delete.is_none() {
        let at_source = match source_rows {
            Some(rows) => Some(rows),
            None => source.count(&finish.stream).await?,
        };
        if at_source == Some(destination.count(&finish.table).await?) {
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
