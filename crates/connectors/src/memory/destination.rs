//! Writing to objects of the process-global store. An object never applied or written has the
//! shape of the generated dataset, so a sync from a memory source can be set up before
//! anything was written; `apply` or the first writer creates it.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use serde_json::Value as Json;
use syncline_core::{
    connector::{
        Action, BatchWriter, ConnectorError, Destination, ObjectSpec, Operation, RecordFailure, SyncMode, TargetField,
        TargetObject, WriteBatch, WriteRequest,
    },
    record::{Field, Record, Value},
};

use super::{
    Faults, MemoryConfig, Rule,
    dataset::Dataset,
    store::{self, Object},
};

pub(super) struct MemoryDestination {
    config: MemoryConfig,
}

impl MemoryDestination {
    pub(super) fn new(config: MemoryConfig) -> Self {
        Self { config }
    }

    /// The fields of `object`: its own once it exists, else the generated dataset's.
    fn fields(&self, object: &str) -> Vec<Field> {
        store::with(&self.config.dataset, |ns| ns.objects.get(object).map(|o| o.fields.clone()))
            .unwrap_or_else(|| Dataset::schema().fields.clone())
    }
}

#[async_trait]
impl Destination for MemoryDestination {
    async fn target_objects(&self) -> Result<Vec<TargetObject>, ConnectorError> {
        let mut names: Vec<String> = store::with(&self.config.dataset, |ns| ns.objects.keys().cloned().collect());
        if !names.contains(&self.config.dataset) {
            names.insert(0, self.config.dataset.clone());
        }
        Ok(names.into_iter().map(|name| TargetObject { id: name.clone(), name }).collect())
    }

    async fn target_fields(&self, object: &str) -> Result<Vec<TargetField>, ConnectorError> {
        Ok(self
            .fields(object)
            .into_iter()
            .map(|f| TargetField {
                id: f.name.clone(),
                field_type: f.field_type.api_name().into(),
                source_type: f.field_type.postgres_name(),
                supports_identity: f.field_type.can_identify(),
                name: f.name,
                required: false,
                createable: true,
                updateable: true,
            })
            .collect())
    }

    async fn apply(&self, spec: &ObjectSpec, dry_run: bool) -> Result<Vec<Action>, ConnectorError> {
        let describe = |f: &Field| format!("{} {}", f.name, f.field_type.postgres_name());
        store::with(&self.config.dataset, |ns| {
            let Some(object) = ns.objects.get_mut(&spec.object) else {
                let fields: Vec<String> = spec.fields.iter().map(describe).collect();
                let action = format!("create object {} ({})", spec.object, fields.join(", "));
                if !dry_run {
                    let object = Object { fields: spec.fields.clone(), key: spec.key.clone(), rows: Vec::new() };
                    ns.objects.insert(spec.object.clone(), object);
                }
                return Ok(vec![Action { description: action }]);
            };
            let missing: Vec<&Field> =
                spec.fields.iter().filter(|f| !object.fields.iter().any(|o| o.name == f.name)).collect();
            let actions =
                missing.iter().map(|f| Action { description: format!("add field {} to {}", describe(f), spec.object) });
            let actions = actions.collect();
            if !dry_run {
                for field in missing {
                    object.fields.push(field.clone());
                    object.rows.iter_mut().for_each(|row| row.push(Value::Null));
                }
            }
            Ok(actions)
        })
    }

    fn modes(&self) -> &'static [SyncMode] {
        &SyncMode::BASIC
    }

    async fn writer(&self, request: WriteRequest) -> Result<Box<dyn BatchWriter>, ConnectorError> {
        if request.mode.requires_identity() && request.identity.is_empty() {
            return Err(ConnectorError::config(format!("mode {} needs an identity", request.mode.as_str())));
        }
        let dataset = self.config.dataset.clone();
        let columns = store::with(&dataset, |ns| {
            let object = ns.objects.entry(request.object.clone()).or_insert_with(|| Object {
                fields: request
                    .targets
                    .iter()
                    .zip(&request.schema.fields)
                    .map(|(name, f)| Field { name: name.clone(), field_type: f.field_type.clone() })
                    .collect(),
                key: request.identity.iter().map(|i| request.targets[*i].clone()).collect(),
                rows: Vec::new(),
            });
            request
                .targets
                .iter()
                .map(|target| {
                    object.fields.iter().position(|f| &f.name == target).ok_or_else(|| {
                        ConnectorError::config(format!("field {target:?} does not exist on {}", request.object))
                    })
                })
                .collect::<Result<Vec<usize>, _>>()
        })?;
        let reject = match &self.config.reject_when_field_equals {
            Some(Rule { field, value }) => {
                request.targets.iter().position(|t| t == field).map(|at| (at, value.clone()))
            }
            None => None,
        };
        Ok(Box::new(MemoryWriter {
            dataset,
            faults: self.config.faults.clone(),
            batches: 0,
            identity: request.identity.clone(),
            columns,
            reject,
            request,
        }))
    }
}

struct MemoryWriter {
    dataset: String,
    faults: Faults,
    batches: u32,
    request: WriteRequest,
    /// The object's field for each record field.
    columns: Vec<usize>,
    /// Positions of the identity among the record fields.
    identity: Vec<usize>,
    /// A record field and the value that gets a record rejected.
    reject: Option<(usize, Json)>,
}

/// Identity values as one comparable string.
fn key_of<'a>(values: impl Iterator<Item = &'a Value>) -> String {
    Json::Array(values.map(Value::to_json).collect()).to_string()
}

impl MemoryWriter {
    /// Why the connection's rule rejects `record`, if it does.
    fn rejected(&self, record: &Record<'_>) -> Option<String> {
        let (at, value) = self.reject.as_ref()?;
        let found = record.get(*at).ok()?.to_json();
        (found == *value).then(|| {
            format!(
                "{} is {value}: the connection's reject_when_field_equals rule refuses it",
                self.request.targets[*at]
            )
        })
    }

    /// Applies the records `batch` has (those not in `failures`) to `object`.
    fn apply(&self, object: &mut Object, batch: &WriteBatch, failures: &mut Vec<RecordFailure>) {
        let mode = self.request.mode;
        let key_columns: Vec<usize> = self.identity.iter().map(|i| self.columns[*i]).collect();
        let mut index: HashMap<String, usize> = HashMap::new();
        if mode != SyncMode::Append {
            for (at, row) in object.rows.iter().enumerate() {
                index.insert(key_of(key_columns.iter().map(|c| &row[*c])), at);
            }
        }
        let mut deleted = HashSet::new();
        for record in batch.records.records() {
            let i = record.index();
            if let Some(message) = self.rejected(&record) {
                failures.push(RecordFailure { index: i, message });
                continue;
            }
            let values = match record.values() {
                Ok(values) => values,
                Err(e) => {
                    failures.push(RecordFailure { index: i, message: e.to_string() });
                    continue;
                }
            };
            let operation = batch.operations.of(i);
            if operation == Operation::Delete {
                // Delete records hold the identity fields alone, in identity order.
                if let Some(at) = index.remove(&key_of(values.iter())) {
                    deleted.insert(at);
                }
                continue;
            }
            let key = key_of(self.identity.iter().map(|i| &values[*i]));
            let existing = match mode {
                SyncMode::Append => None,
                _ => index.get(&key).copied(),
            };
            match existing {
                Some(at) if mode != SyncMode::Create => {
                    for (value, column) in values.into_iter().zip(&self.columns) {
                        object.rows[at][*column] = value;
                    }
                }
                Some(_) => {}
                None if mode == SyncMode::Update || operation == Operation::Update => {}
                None => {
                    let mut row = vec![Value::Null; object.fields.len()];
                    for (value, column) in values.into_iter().zip(&self.columns) {
                        row[*column] = value;
                    }
                    index.insert(key, object.rows.len());
                    object.rows.push(row);
                }
            }
        }
        if !deleted.is_empty() {
            let mut at = 0;
            object.rows.retain(|_| {
                at += 1;
                !deleted.contains(&(at - 1))
            });
        }
    }
}

#[async_trait]
impl BatchWriter for MemoryWriter {
    async fn write(&mut self, batch: &WriteBatch) -> Result<Vec<RecordFailure>, ConnectorError> {
        self.batches += 1;
        self.faults.on_call(&self.dataset, "write")?;
        self.faults.on_batch(self.batches, "write");
        let mut failures = Vec::new();
        store::with(&self.dataset, |ns| match ns.objects.get_mut(&self.request.object) {
            Some(object) => {
                self.apply(object, batch, &mut failures);
                Ok(())
            }
            None => Err(ConnectorError::not_found(format!("object {:?} was removed", self.request.object))),
        })?;
        if self.faults.out_of_range_failure {
            let index = batch.records.len() + 1;
            failures
                .push(RecordFailure { index, message: "injected failure of a record the batch does not have".into() });
        }
        Ok(failures)
    }
}
