//! Planning a bulk sync execution: for each schema it runs, which fields go into which table,
//! whether the run reads everything (into a shadow table swapped in at the end) or only what
//! moved past the cursor (upserted into the live table), how it ends (swap, sweep of deleted
//! keys, new cursor), and the partitions the read is cut into.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use syncline_core::{
    bulk::{
        AutoAdd, BulkMode, DestinationConfig, FetchMode, ResyncMode, SchemaConfig, StartOptions, TEST_ROWS,
        destination_name,
    },
    connector::{BulkDestination, Catalog, ConnectorError, HeldSnapshot, LoadMode, Source, Stream, TableSpec},
    record::{Field, FieldType},
};
use uuid::Uuid;

use super::store::{SchemaRow, SchemaState};

/// How a partition's rows meet the table (the wire form of [`LoadMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Load {
    Append,
    Upsert,
}

impl From<Load> for LoadMode {
    fn from(load: Load) -> Self {
        match load {
            Load::Append => LoadMode::Append,
            Load::Upsert => LoadMode::Upsert,
        }
    }
}

/// What one partition reads and where it writes (`bulk_partitions.task`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub stream: String,
    /// The source fields read, in order.
    pub fields: Vec<String>,
    /// The destination column of each field, same order.
    pub columns: Vec<String>,
    /// The slice of the stream ([`Source::slices`]).
    pub slice: Json,
    /// The source snapshot every slice of the table is read at, when it is read in several.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Read only records whose tracking field is after this value.
    pub after: Option<Json>,
    /// The position in `fields` of the tracking field, whose highest value is checkpointed.
    pub tracking: Option<usize>,
    pub table: String,
    pub key: Vec<String>,
    pub load: Load,
    pub soft_delete: Option<String>,
    /// Most records to read (a test run).
    pub limit: Option<u64>,
}

/// How a schema ends once its partitions committed (`bulk_schema_executions.plan`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    /// The table readers see.
    pub table: String,
    /// The table the partitions filled, swapped in for `table` at the end.
    pub shadow: Option<String>,
    /// Whether rows whose key left the source are deleted (or soft-deleted): by comparing the
    /// shadow with the table before the swap, or by sweeping the table with the source's keys.
    pub deletes: bool,
    pub soft_delete: Option<String>,
    /// Source stream and key fields (read for a sweep) and the key's columns.
    pub stream: String,
    pub key_fields: Vec<String>,
    pub key: Vec<String>,
    /// Whether the shadow is loaded without its key, added once its partitions committed
    /// ([`BulkDestination::defers_keys`]).
    #[serde(default)]
    pub add_key: bool,
    /// The cursor the run started from, kept when nothing moved it; `None` with
    /// `advance: false` leaves the state alone (a test run).
    pub cursor: Option<Json>,
    pub advance: bool,
}

/// A schema of the execution: its partitions and how it ends, or why it cannot run.
pub struct PlannedSchema {
    pub schema_id: String,
    pub output_name: String,
    pub total: Option<u64>,
    pub tasks: Vec<Task>,
    pub finish: Option<Finish>,
    pub failure: Option<String>,
}

/// What planning needs besides the schemas.
pub struct Planner<'a> {
    /// Marks the names of shadow tables: the execution's id, or a fresh one when a schema is
    /// planned again (so a partition of the first plan can never load into the new shadow).
    pub shadow_mark: Uuid,
    pub mode: BulkMode,
    pub spec: &'a Json,
    pub options: &'a StartOptions,
    pub catalog: &'a Catalog,
    pub keys: &'a HashMap<String, Vec<String>>,
    pub source: &'a dyn Source,
    pub destination: &'a dyn BulkDestination,
    pub partition_rows: u64,
    /// The source snapshot the slices of the run's tables share, held when a table is first
    /// read in several.
    pub held: tokio::sync::OnceCell<Option<Box<dyn HeldSnapshot>>>,
}

/// How late a commit may become visible after rows with later tracking values: incremental
/// runs of timestamp cursors read again from this far before the saved cursor.
const LOOKBACK: chrono::Duration = chrono::Duration::minutes(5);

impl Planner<'_> {
    /// Plans every schema the run covers: enabled ones, or those the start named.
    pub async fn plan(&self, schemas: &[SchemaRow]) -> Result<Vec<PlannedSchema>, ConnectorError> {
        let mut planned = Vec::new();
        for schema in schemas {
            let named = self.options.schemas.is_empty() || self.options.schemas.contains(&schema.schema_id);
            if !schema.enabled || !named {
                continue;
            }
            let output_name = schema.config.output_name(&schema.schema_id, self.normalize());
            let mut plan = PlannedSchema {
                schema_id: schema.schema_id.clone(),
                output_name: output_name.clone(),
                total: None,
                tasks: vec![],
                finish: None,
                failure: None,
            };
            match self.plan_schema(schema, &output_name, &mut plan).await {
                Ok(()) => {}
                Err(e) if e.class.is_retryable() => return Err(e),
                Err(e) => plan.failure = Some(e.message),
            }
            planned.push(plan);
        }
        Ok(planned)
    }

    /// The source snapshot that slices share, held on first use (`None` when the source cannot).
    async fn shared_snapshot(&self) -> Result<Option<String>, ConnectorError> {
        let held = self.held.get_or_try_init(|| self.source.hold_snapshot()).await?;
        Ok(held.as_ref().map(|h| h.id().to_owned()))
    }

    /// The snapshot the plan's slices read at, to hold until they committed.
    pub fn into_held(self) -> Option<Box<dyn HeldSnapshot>> {
        self.held.into_inner().flatten()
    }

    fn destination_config(&self) -> DestinationConfig {
        serde_json::from_value(self.spec["destination_configuration"].clone()).unwrap_or_default()
    }

    fn normalize(&self) -> bool {
        self.spec["normalize_names"].as_str() != Some("disabled")
    }

    /// A name as the destination gets it (see [`destination_name`]).
    fn name(&self, name: &str) -> String {
        destination_name(name, self.normalize())
    }

    async fn plan_schema(
        &self,
        schema: &SchemaRow,
        output_name: &str,
        plan: &mut PlannedSchema,
    ) -> Result<(), ConnectorError> {
        let id = &schema.schema_id;
        let stream = self
            .catalog
            .stream(id)
            .ok_or_else(|| ConnectorError::not_found(format!("the table {id} no longer exists at the source")))?;
        let config = &schema.config;
        let selected = self.selected_fields(stream, config)?;
        let key_fields: Vec<String> = self.keys.get(id).unwrap_or(&stream.key).clone();
        if self.mode == BulkMode::Replicate && key_fields.is_empty() {
            return Err(ConnectorError::config(format!(
                "replicate mode needs a primary key and {id} has none: set one with schemas.set_primary_keys"
            )));
        }
        let column = |source: &str| selected.iter().find(|(f, _)| f.name == source).map(|(_, c)| c.clone());
        let key: Vec<String> = key_fields
            .iter()
            .map(|k| {
                column(k).ok_or_else(|| ConnectorError::config(format!("key field {k:?} of {id} is not selected")))
            })
            .collect::<Result<_, _>>()?;
        let tracking =
            match &config.tracking_field {
                Some(field) => Some(selected.iter().position(|(f, _)| &f.name == field).ok_or_else(|| {
                    ConnectorError::config(format!("tracking field {field:?} of {id} is not selected"))
                })?),
                None => None,
            };
        let destination = self.destination_config();
        let dataset = destination.schema.clone().unwrap_or_else(|| self.destination.default_schema().to_owned());
        let table = format!("{dataset}.{output_name}");
        let soft_delete = destination.soft_delete_column.clone().filter(|_| self.mode == BulkMode::Replicate);
        let mut fields: Vec<Field> =
            selected.iter().map(|(f, c)| Field { name: c.clone(), field_type: f.field_type.clone() }).collect();
        if let Some(column) = &soft_delete {
            fields.push(Field { name: column.clone(), field_type: FieldType::TimestampTz });
        }
        let existing = self.destination.columns(&table).await?;
        let resync = self.options.resync_mode;
        if let (Some(existing), false) = (&existing, resync == Some(ResyncMode::Rebuild)) {
            check_types(&fields, existing)?;
        }
        // Appended rows repeat keys: an append table has no primary key.
        let table_key = if self.mode == BulkMode::Append { vec![] } else { key.clone() };
        let spec = TableSpec { table: table.clone(), fields, key: table_key };
        let test = self.options.test;
        let cursor = schema.state.cursor.clone();
        let incremental = tracking.is_some()
            && cursor.is_some()
            && existing.is_some()
            && resync.is_none()
            && self.options.fetch_mode != Some(FetchMode::Full)
            && self.mode != BulkMode::Snapshot;
        // Test runs and incremental runs write into the live table; other runs fill a shadow
        // table that replaces it at the end, except append runs, which add to what is there.
        // A destination that keeps whole copies (snapshots only) fills a new copy every run.
        let supports = |mode| self.destination.modes().contains(&mode);
        let (load, shadow) = match (self.mode, test || incremental) {
            (BulkMode::Append, _) if resync.is_none() => (Load::Append, None),
            (BulkMode::Replicate, true) => (Load::Upsert, None),
            (BulkMode::Replicate, false) if resync == Some(ResyncMode::Refetch) && existing.is_some() => {
                (Load::Upsert, None)
            }
            (BulkMode::Snapshot, true) if !key.is_empty() && supports(BulkMode::Replicate) => (Load::Upsert, None),
            (BulkMode::Snapshot, true) if supports(BulkMode::Append) => (Load::Append, None),
            _ => (Load::Append, Some(self.destination.shadow(&table, self.shadow_mark))),
        };
        let add_key = shadow.is_some() && self.destination.defers_keys() && !spec.key.is_empty();
        let target = match &shadow {
            Some(shadow) => {
                self.destination.drop_table(shadow).await?;
                let key = if add_key { vec![] } else { spec.key.clone() };
                self.destination.shape(&TableSpec { table: shadow.clone(), key, ..spec.clone() }).await?;
                shadow.clone()
            }
            None => {
                self.destination.shape(&spec).await?;
                table.clone()
            }
        };
        let after = if incremental { cursor.as_ref().map(lookback) } else { None };
        let slices = match (incremental, test) {
            (false, false) => self.source.slices(id, self.partition_rows).await?,
            _ => vec![Json::Null],
        };
        let snapshot = match slices.len() > 1 {
            true => self.shared_snapshot().await?,
            false => None,
        };
        // An incremental run reads what moved, of which the table's size tells nothing.
        plan.total = match incremental {
            true => None,
            false => {
                let readable = syncline_core::connector::Readable::Stream(id.clone());
                self.source.estimate_rows(&readable).await.ok().flatten()
            }
        };
        plan.tasks = slices
            .into_iter()
            .map(|slice| Task {
                stream: id.clone(),
                fields: selected.iter().map(|(f, _)| f.name.clone()).collect(),
                columns: selected.iter().map(|(_, c)| c.clone()).collect(),
                slice,
                snapshot: snapshot.clone(),
                after: after.clone(),
                tracking,
                table: target.clone(),
                key: key.clone(),
                load,
                soft_delete: soft_delete.clone(),
                limit: test.then_some(TEST_ROWS),
            })
            .collect();
        plan.finish = Some(Finish {
            table,
            shadow,
            deletes: self.mode == BulkMode::Replicate && !test,
            soft_delete,
            stream: id.clone(),
            key_fields,
            key,
            add_key,
            cursor: if tracking.is_some() && !test { cursor } else { None },
            advance: tracking.is_some() && !test,
        });
        Ok(())
    }

    /// The source fields the schema replicates with their destination columns: the enabled
    /// fields listed, and the stream's fields not listed when new fields are added on their own.
    fn selected_fields(&self, stream: &Stream, config: &SchemaConfig) -> Result<Vec<(Field, String)>, ConnectorError> {
        let auto: AutoAdd =
            serde_json::from_value(self.spec["automatically_add_new_fields"].clone()).unwrap_or_default();
        let add_new = config.adds_new_fields(auto);
        let mut selected = Vec::new();
        for field in &stream.fields {
            let listed = config.fields.iter().find(|f| f.id() == field.name);
            let column = match listed {
                Some(listed) if !listed.enabled() => continue,
                Some(listed) => listed.output_name().map_or_else(|| self.name(&field.name), str::to_owned),
                None if add_new => self.name(&field.name),
                None => continue,
            };
            selected.push((field.clone(), column));
        }
        if selected.is_empty() {
            return Err(ConnectorError::config(format!("no field of {} is selected", stream.name)));
        }
        Ok(selected)
    }
}

/// Fails when a column the table has holds another type than the source field now has.
fn check_types(fields: &[Field], existing: &[Field]) -> Result<(), ConnectorError> {
    for field in fields {
        let Some(column) = existing.iter().find(|c| c.name == field.name) else { continue };
        let same = column.field_type == field.field_type
            || matches!(
                (&column.field_type, &field.field_type),
                (FieldType::Numeric, FieldType::Decimal { .. }) | (FieldType::Decimal { .. }, FieldType::Numeric)
            );
        if !same {
            return Err(ConnectorError::config(format!(
                "column {:?} changed type at the source from {} to {}; start a run with resync_mode \"rebuild\" to recreate the table",
                field.name,
                column.field_type.postgres_name(),
                field.field_type.postgres_name()
            )));
        }
    }
    Ok(())
}

/// The cursor an incremental run reads after: the saved one, minus [`LOOKBACK`] when it is a
/// timestamp, so rows committed late with earlier values are read again (upserts make that
/// harmless).
fn lookback(cursor: &Json) -> Json {
    let Some(text) = cursor.as_str() else { return cursor.clone() };
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Json::String((at - LOOKBACK).to_rfc3339());
    }
    match chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        Ok(at) => Json::String((at - LOOKBACK).format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        Err(_) => cursor.clone(),
    }
}

/// The schema state after a run: the highest of the cursor it started from and those its
/// partitions saw.
pub fn advanced(start: Option<Json>, seen: &[Json]) -> SchemaState {
    let cursor = seen.iter().chain(start.iter()).max_by(|a, b| compare(a, b)).cloned();
    SchemaState { cursor }
}

/// Orders cursor values: numbers numerically, timestamps by instant, other text bytewise.
fn compare(a: &Json, b: &Json) -> std::cmp::Ordering {
    match (a, b) {
        (Json::Number(a), Json::Number(b)) => a.as_f64().unwrap_or(0.0).total_cmp(&b.as_f64().unwrap_or(0.0)),
        (Json::String(a), Json::String(b)) => {
            match (chrono::DateTime::parse_from_rfc3339(a), chrono::DateTime::parse_from_rfc3339(b)) {
                (Ok(a), Ok(b)) => a.cmp(&b),
                _ => a.cmp(b),
            }
        }
        _ => std::cmp::Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cursors_advance_to_the_highest_value() {
        let state = advanced(Some(json!(5)), &[json!(3), json!(12), json!(7)]);
        assert_eq!(state.cursor, Some(json!(12)));
        let state = advanced(None, &[json!("2026-01-01T10:00:00+00:00"), json!("2026-01-01T11:00:00+02:00")]);
        assert_eq!(state.cursor, Some(json!("2026-01-01T10:00:00+00:00")), "by instant, not by text");
        assert_eq!(advanced(Some(json!(5)), &[]).cursor, Some(json!(5)));
    }

    #[test]
    fn timestamp_cursors_look_back() {
        assert_eq!(lookback(&json!("2026-01-01T10:00:00+00:00")), json!("2026-01-01T09:55:00+00:00"));
        assert_eq!(lookback(&json!("2026-01-01T10:00:00.5")), json!("2026-01-01T09:55:00.500"));
        assert_eq!(lookback(&json!(42)), json!(42));
    }

    #[test]
    fn type_changes_are_refused() {
        let field = |name: &str, field_type| Field { name: name.into(), field_type };
        let existing = [field("id", FieldType::Int64), field("amount", FieldType::Numeric)];
        assert!(check_types(&[field("amount", FieldType::Decimal { precision: 10, scale: 2 })], &existing).is_ok());
        let error = check_types(&[field("id", FieldType::Text)], &existing).expect_err("a type change");
        assert!(
            error.message.contains("\"id\" changed type") && error.message.contains("rebuild"),
            "{}",
            error.message
        );
    }
}
