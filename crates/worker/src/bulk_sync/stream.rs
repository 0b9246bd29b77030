//! A bulk sync's change capture (kind `bulk_cdc`), started by a completed load: polls the sync's
//! slot in micro-batches, keeps the last change of each table and key, applies them to the
//! destination (a truncate, then deletes by key, then upserts), and confirms the slot only once
//! every table committed. A killed worker's successor gets the unconfirmed changes again and
//! applies them idempotently. Before applying, [`wal_guard`] checks the WAL the slot holds.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use syncline_connectors::postgres::cdc::{Capture, Cell, Change, ChangeKind, ChangeSet, Lsn, Names};
use syncline_core::{
    connector::{BulkDestination, ConnectorError, LoadMode, LoadRequest},
    executions::{Claim, Counts, Outcome},
    record::{Field, RecordBatch, RecordBatchBuilder, Schema, Value},
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    Streamed, capture,
    plan::{Finish, Task},
    store, wal_guard,
};
use crate::{
    Services, connections,
    kind::{RunEnd, Stop},
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
) -> RunEnd<Streamed> {
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
        store::log(&services.pool, claim.execution_id, None, level, &message).await;
    }
    match stopped {
        Ok(stop) => RunEnd::Stopped { stop, counts },
        Err(Ok(())) => RunEnd::Finished { outcome: Outcome::Completed(Streamed), counts },
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
    store::log(pool, claim.execution_id, None, "info", &started).await;
    let mut summary = Summary::default();
    loop {
        match store::active(pool, sync_id).await? {
            None => return Ok(()),
            Some(false) => {
                let paused = format!(
                    "capture paused at LSN {position}: the bulk sync was deactivated (the slot keeps the changes \
                     until it is activated again)"
                );
                store::log(pool, claim.execution_id, None, "info", &paused).await;
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
            store::log(pool, claim.execution_id, None, "info", &line).await;
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

/// Applies a change set table by table; returns how many changes it held.
async fn apply(
    destination: &dyn BulkDestination,
    targets: &HashMap<String, (Finish, Task)>,
    set: &ChangeSet,
) -> Result<usize, ConnectorError> {
    let mut tables: HashMap<&str, Pending> = HashMap::new();
    let mut count = 0;
    for change in set.changes() {
        let Some(target) = targets.get(&change.table.name) else { continue };
        tables.entry(&change.table.name).or_default().push(target, change)?;
        count += 1;
    }
    for (name, pending) in tables {
        pending.write(destination, &targets[name]).await?;
    }
    Ok(count)
}

/// The last change of each key of one table in a change set.
#[derive(Default)]
struct Pending {
    truncate: bool,
    /// By key (as text): the key's values, and the row to upsert or `None` to delete.
    rows: HashMap<String, (Vec<Value>, Option<Vec<Value>>)>,
    /// The types of the upserted columns and of the key columns.
    fields: Vec<Field>,
    key_fields: Vec<Field>,
}

impl Pending {
    fn push(&mut self, (finish, task): &(Finish, Task), change: &Change) -> Result<(), ConnectorError> {
        let table = &change.table;
        let position = |name: &str| {
            table.fields.iter().position(|f| f.name == name).ok_or_else(|| {
                ConnectorError::config(format!("column {name:?} of {} is not captured: resync the sync", table.name))
            })
        };
        let positions: Vec<usize> = task.fields.iter().map(|f| position(f)).collect::<Result<_, _>>()?;
        let key_positions: Vec<usize> = finish.key_fields.iter().map(|f| position(f)).collect::<Result<_, _>>()?;
        self.fields = positions
            .iter()
            .map(|&p| table.fields[p].field_type.clone())
            .zip(&task.columns)
            .map(|(t, c)| Field { name: c.clone(), field_type: t })
            .collect();
        self.key_fields = key_positions
            .iter()
            .map(|&p| table.fields[p].field_type.clone())
            .zip(&finish.key)
            .map(|(t, c)| Field { name: c.clone(), field_type: t })
            .collect();
        let upsert = |row: &[Cell]| -> Result<(Vec<Value>, Vec<Value>), ConnectorError> {
            let values = positions
                .iter()
                .map(|&p| match &row[p] {
                    Cell::Value(v) => Ok(v.clone()),
                    Cell::Unchanged => Err(ConnectorError::permanent(format!(
                        "an update of {} left a large value out (TOAST): set REPLICA IDENTITY FULL on the table",
                        table.name
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let key: Vec<Value> = key_positions.iter().map(|&p| values_at(row, p)).collect();
            Ok((key, values))
        };
        match &change.kind {
            ChangeKind::Insert(row) => {
                let (key, values) = upsert(row)?;
                self.rows.insert(format!("{key:?}"), (key, Some(values)));
            }
            ChangeKind::Update { row, old_key } => {
                if let Some(old) = old_key {
                    let key = reorder(table, old, &key_positions);
                    self.rows.insert(format!("{key:?}"), (key, None));
                }
                let (key, values) = upsert(row)?;
                self.rows.insert(format!("{key:?}"), (key, Some(values)));
            }
            ChangeKind::Delete { key } => {
                let key = reorder(table, key, &key_positions);
                self.rows.insert(format!("{key:?}"), (key, None));
            }
            ChangeKind::Truncate => {
                self.rows.clear();
                self.truncate = true;
            }
        }
        Ok(())
    }

    /// Writes the table's changes: a truncate, then the deletes, then the upserts.
    async fn write(
        self,
        destination: &dyn BulkDestination,
        (finish, _): &(Finish, Task),
    ) -> Result<(), ConnectorError> {
        let key_schema = Arc::new(Schema { fields: self.key_fields.clone() });
        let soft_delete = finish.soft_delete.as_deref();
        if self.truncate {
            destination
                .sweep(&finish.table, Box::pin(futures::stream::empty()), key_schema.clone(), soft_delete)
                .await?;
        }
        let deletes = batch(&key_schema, self.rows.values().filter(|(_, row)| row.is_none()).map(|(key, _)| key))?;
        if !deletes.is_empty() {
            let keys = Box::pin(futures::stream::iter([Ok(deletes)]));
            destination.delete(&finish.table, keys, key_schema, soft_delete).await?;
        }
        let schema = Arc::new(Schema { fields: self.fields });
        let upserts = batch(&schema, self.rows.values().filter_map(|(_, row)| row.as_ref()))?;
        if !upserts.is_empty() {
            let request = LoadRequest {
                table: finish.table.clone(),
                schema,
                key: finish.key.clone(),
                mode: LoadMode::Upsert,
                marker: Uuid::new_v4(),
                soft_delete: finish.soft_delete.clone(),
            };
            let mut loader = destination.load(request).await?;
            loader.write(&upserts).await?;
            loader.commit().await?;
        }
        Ok(())
    }
}

/// The value of field `p` of a row (a key field, never left out).
fn values_at(row: &[Cell], p: usize) -> Value {
    match &row[p] {
        Cell::Value(v) => v.clone(),
        Cell::Unchanged => Value::Null,
    }
}

/// A key in the table's key order, put in `key_positions` (field positions) order.
fn reorder(table: &syncline_connectors::postgres::cdc::Table, key: &[Value], key_positions: &[usize]) -> Vec<Value> {
    key_positions
        .iter()
        .map(|p| table.key.iter().position(|k| k == p).map_or(Value::Null, |i| key[i].clone()))
        .collect()
}

/// One batch of `rows` (values in `schema` order).
fn batch<'r>(schema: &Arc<Schema>, rows: impl Iterator<Item = &'r Vec<Value>>) -> Result<RecordBatch, ConnectorError> {
    let mut builder = RecordBatchBuilder::with_capacity(schema.clone(), 1 << 16);
    for row in rows {
        builder.push_row(row).map_err(|e| ConnectorError::permanent(e.to_string()))?;
    }
    Ok(builder.finish())
}
