//! How change capture writes one change set: per table, the last change of each key, then a
//! truncate (a sweep with no keys), the deletes by key and the upserts, with the columns of the
//! load's saved plan. An update that left large (TOASTed, unchanged) values out changes only the
//! columns it sent: such rows are grouped by the columns they have, and each group updates the
//! existing rows in those columns only ([`LoadMode::Update`]). A row with values left out that
//! the destination does not have cannot be written: the capture fails saying so.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use syncline_connectors::postgres::cdc::{Cell, Change, ChangeKind, ChangeSet, Table};
use syncline_core::{
    connector::{BulkDestination, ConnectorError, Keys, LoadMode, LoadRequest},
    record::{Field, RecordBatch, RecordBatchBuilder, Schema, Value},
};
use uuid::Uuid;

use super::plan::{Finish, Task};

/// Applies a change set table by table; returns how many changes it held.
pub async fn apply(
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

/// A row's values in the load's column order; `None` for a large value an update left out.
type Partial = Vec<Option<Value>>;

/// The last change of each key of one table in a change set.
#[derive(Default)]
struct Pending {
    truncate: bool,
    /// By key (as text): the key's values, and the row to write or `None` to delete.
    rows: HashMap<String, (Vec<Value>, Option<Partial>)>,
    /// The types of the written columns and of the key columns.
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
        let typed = |positions: &[usize], names: &[String]| -> Vec<Field> {
            positions
                .iter()
                .zip(names)
                .map(|(&p, name)| Field { name: name.clone(), field_type: table.fields[p].field_type.clone() })
                .collect()
        };
        self.fields = typed(&positions, &task.columns);
        self.key_fields = typed(&key_positions, &finish.key);
        let written = |row: &[Cell]| -> (Vec<Value>, Partial) {
            let values = positions.iter().map(|&p| sent(&row[p])).collect();
            let key = key_positions.iter().map(|&p| sent(&row[p]).unwrap_or(Value::Null)).collect();
            (key, values)
        };
        match &change.kind {
            ChangeKind::Insert(row) => {
                let (key, values) = written(row);
                self.rows.insert(format!("{key:?}"), (key, Some(values)));
            }
            ChangeKind::Update { row, old_key } => {
                if let Some(old) = old_key {
                    let key = reorder(table, old, &key_positions);
                    self.rows.insert(format!("{key:?}"), (key, None));
                }
                let (key, mut values) = written(row);
                let id = format!("{key:?}");
                // A value left out is the one an earlier change of this set wrote, if any.
                if let Some((_, Some(earlier))) = self.rows.get(&id) {
                    for (value, earlier) in values.iter_mut().zip(earlier) {
                        if value.is_none() {
                            value.clone_from(earlier);
                        }
                    }
                }
                self.rows.insert(id, (key, Some(values)));
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

    /// Writes the table's changes: a truncate, then the deletes, then the rows: whole ones
    /// upserted, those with values left out updating the columns they have.
    async fn write(
        self,
        destination: &dyn BulkDestination,
        (finish, _): &(Finish, Task),
    ) -> Result<(), ConnectorError> {
        let key_schema = Arc::new(Schema { fields: self.key_fields.clone() });
        let soft_delete = finish.soft_delete.as_deref();
        if self.truncate {
            destination
                .delete_keys(
                    &finish.table,
                    (Box::pin(futures::stream::empty()), key_schema.clone(), Keys::Unlisted),
                    soft_delete,
                )
                .await?;
        }
        let deletes = batch(&key_schema, self.rows.values().filter(|(_, row)| row.is_none()).map(|(key, _)| key))?;
        if !deletes.is_empty() {
            let keys = Box::pin(futures::stream::iter([Ok(deletes)]));
            destination.delete_keys(&finish.table, (keys, key_schema, Keys::Listed), soft_delete).await?;
        }
        // By the columns each row has.
        let mut groups: BTreeMap<Vec<bool>, Vec<Vec<Value>>> = BTreeMap::new();
        for values in self.rows.values().filter_map(|(_, row)| row.as_ref()) {
            let has = values.iter().map(Option::is_some).collect();
            groups.entry(has).or_default().push(values.iter().flatten().cloned().collect());
        }
        for (has, rows) in groups {
            let whole = has.iter().all(|h| *h);
            let fields = self.fields.iter().zip(&has).filter(|(_, h)| **h).map(|(f, _)| f.clone()).collect();
            let mode = if whole { LoadMode::Upsert } else { LoadMode::Update };
            let changed = load(destination, finish, (Arc::new(Schema { fields }), mode), &rows).await?;
            if !whole && changed < rows.len() as u64 {
                return Err(ConnectorError::permanent(format!(
                    "an update of {} left a large value out (TOAST) of a row the destination does not have: set \
                     REPLICA IDENTITY FULL on the table and resync the sync",
                    finish.stream
                )));
            }
        }
        Ok(())
    }
}

/// Loads `rows` (values in `schema` order) into the table of `finish` in one transaction;
/// returns how many rows it wrote (changed, for [`LoadMode::Update`]).
async fn load(
    destination: &dyn BulkDestination,
    finish: &Finish,
    (schema, mode): (Arc<Schema>, LoadMode),
    rows: &[Vec<Value>],
) -> Result<u64, ConnectorError> {
    let records = batch(&schema, rows.iter())?;
    let request = LoadRequest {
        table: finish.table.clone(),
        schema,
        key: finish.key.clone(),
        mode,
        marker: Uuid::new_v4(),
        soft_delete: finish.soft_delete.clone(),
    };
    let mut loader = destination.load(request).await?;
    loader.write(&records).await?;
    Ok(loader.commit().await?.rows)
}

/// The value a cell sent, `None` for a large value left out.
fn sent(cell: &Cell) -> Option<Value> {
    match cell {
        Cell::Value(v) => Some(v.clone()),
        Cell::Unchanged => None,
    }
}

/// A key in the table's key order, put in `key_positions` (field positions) order.
fn reorder(table: &Table, key: &[Value], key_positions: &[usize]) -> Vec<Value> {
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
