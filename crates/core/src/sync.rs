//! Model sync configuration: the Polytomic sync body as the engine acts on it.

pub mod filter;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use uuid::Uuid;

use self::filter::{Condition, Invalid, Kind, Predicate, Scalar};
use crate::{
    connector::{ObjectSpec, Replacement, Shaping, SyncMode},
    record::{Field, FieldType},
};

/// A model field reference (`{model_id, field}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    pub model_id: Uuid,
    pub field: String,
}

/// One mapping: a model field (or a constant) into a target field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldMapping {
    pub target: String,
    #[serde(default)]
    pub source: Option<SourceRef>,
    /// A constant written instead of a model field.
    #[serde(default)]
    pub override_value: Option<Json>,
    /// `create`: only fill an empty destination value; `updateOrCreate` (the default): always write.
    #[serde(default)]
    pub sync_mode: Option<String>,
}

impl FieldMapping {
    /// Whether the field is only written where the destination's value is empty.
    pub fn fill_only(&self) -> bool {
        self.sync_mode.as_deref() == Some("create")
    }
}

/// A condition of `model_filters` on a model field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCondition {
    pub source: SourceRef,
    pub function: String,
    #[serde(default)]
    pub value: Option<Json>,
}

/// A condition of `target_filters` on a destination field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetCondition {
    pub field: String,
    pub function: String,
    #[serde(default)]
    pub value: Option<Json>,
}

/// Conditions and the `logic` combining them (`1 AND (2 OR 3)`; all of them when absent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Filters<C> {
    #[serde(default = "Vec::new")]
    pub conditions: Vec<C>,
    #[serde(default)]
    pub logic: Option<String>,
}

/// A conditional replacement: when the model field matches, `override` is written instead.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Override {
    #[serde(default)]
    pub field: Option<SourceRef>,
    #[serde(default)]
    pub function: Option<String>,
    #[serde(default)]
    pub value: Option<Json>,
    #[serde(default, rename = "override")]
    pub replacement: Option<Json>,
}

/// How records are matched: a model field equal to a target field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub source: SourceRef,
    pub target: String,
    pub function: String,
}

/// Several identity mappings (Polytomic `identities`); `strategy` says how they combine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identities {
    pub mappings: Vec<Identity>,
    /// `and`: a record matches when every mapping matches (a composite identity); `priority`:
    /// the first mapping that matches wins.
    #[serde(default)]
    pub strategy: Option<String>,
}

/// Where a sync writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub connection_id: Uuid,
    #[serde(default)]
    pub object: Option<String>,
    /// The properties naming an object to create instead (the API creates it and sets `object`).
    #[serde(default)]
    pub create: Option<BTreeMap<String, String>>,
}

/// When a sync runs (Polytomic `Schedule`; all values are strings on the wire).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Schedule {
    #[serde(default)]
    pub frequency: Option<String>,
    #[serde(default)]
    pub minute: Option<String>,
    #[serde(default)]
    pub hour: Option<String>,
    #[serde(default)]
    pub day_of_week: Option<String>,
    #[serde(default)]
    pub day_of_month: Option<String>,
    #[serde(default)]
    pub month: Option<String>,
    /// The syncs a `runafter` schedule waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_after: Option<RunAfter>,
    /// Whether only a `completed` execution of an upstream counts (else any that ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_after_success_only: Option<bool>,
    /// The schedules a `multi` schedule combines (a Syncline extra field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedules: Option<Vec<Schedule>>,
}

/// The upstreams of a `runafter` schedule (Polytomic `RunAfter`): model syncs and bulk syncs by id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunAfter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_sync_ids: Option<Vec<String>>,
}

/// The engine's view of a model sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncSpec {
    pub mode: SyncMode,
    pub target: Target,
    pub fields: Vec<FieldMapping>,
    #[serde(default)]
    pub identity: Option<Identity>,
    #[serde(default)]
    pub identities: Option<Identities>,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub model_filters: Option<Filters<ModelCondition>>,
    #[serde(default)]
    pub target_filters: Option<Filters<TargetCondition>>,
    #[serde(default)]
    pub overrides: Vec<Override>,
    /// Constants (`{target, override_value, sync_mode}`), as `fields` with no source.
    #[serde(default)]
    pub override_fields: Vec<FieldMapping>,
    /// Every run writes every record, changed or not.
    #[serde(default)]
    pub sync_all_records: bool,
    /// The first run only remembers the model's records; later runs write what changes.
    #[serde(default)]
    pub skip_initial_backfill: bool,
    #[serde(default)]
    pub only_enrich_updates: bool,
    /// Limits on what one run may change before a user approves it (a Syncline extension).
    #[serde(default)]
    pub blast_radius: Option<BlastRadius>,
}

/// Limits on how much of what a sync delivered before one run may delete or change (update or
/// delete). A run whose plan exceeds one waits for a user to approve or reject it before it
/// writes anything. Shares are of the records the sync had delivered before the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlastRadius {
    #[serde(default)]
    pub max_deletes: Option<u64>,
    #[serde(default)]
    pub max_delete_share: Option<f64>,
    #[serde(default)]
    pub max_changes: Option<u64>,
    #[serde(default)]
    pub max_change_share: Option<f64>,
}

impl BlastRadius {
    /// The limits a run that would update `updates` and delete `deletes` of the `delivered`
    /// records exceeds, described.
    pub fn exceeded(&self, delivered: u64, updates: u64, deletes: u64) -> Vec<String> {
        let changes = updates + deletes;
        let share = |n: u64| if delivered == 0 { 0.0 } else { n as f64 / delivered as f64 };
        let mut exceeded = Vec::new();
        if let Some(max) = self.max_deletes.filter(|max| deletes > *max) {
            exceeded.push(format!("{deletes} deletes, over max_deletes {max}"));
        }
        if let Some(max) = self.max_delete_share.filter(|max| share(deletes) > *max) {
            exceeded.push(format!(
                "deletes {:.1}% of {delivered} records, over max_delete_share {max}",
                share(deletes) * 100.0
            ));
        }
        if let Some(max) = self.max_changes.filter(|max| changes > *max) {
            exceeded.push(format!("{changes} updates and deletes, over max_changes {max}"));
        }
        if let Some(max) = self.max_change_share.filter(|max| share(changes) > *max) {
            exceeded.push(format!(
                "changes {:.1}% of {delivered} records, over max_change_share {max}",
                share(changes) * 100.0
            ));
        }
        exceeded
    }

    /// The first limit that is not a share between 0 and 1, named.
    pub fn invalid_share(&self) -> Option<&'static str> {
        [
            ("blast_radius.max_delete_share", self.max_delete_share),
            ("blast_radius.max_change_share", self.max_change_share),
        ]
        .into_iter()
        .find(|(_, share)| share.is_some_and(|s| !(0.0..=1.0).contains(&s)))
        .map(|(name, _)| name)
    }
}

/// What a start asks of a model sync run beyond `resync` (an execution's options).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StartOptions {
    /// Plan the run and show what it would write, writing nothing.
    #[serde(default)]
    pub test: bool,
    /// Sync only the records with these values of the sync's (single) identity field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<Json>,
    /// Sync only these records, each named by values of model fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_identities: Vec<Vec<SourceValue>>,
}

/// A model field's value naming a record (`source_identities`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceValue {
    pub source: SourceRef,
    pub value: Json,
}

/// Most records a start may name.
pub const MAX_START_IDENTITIES: usize = 1000;

impl StartOptions {
    /// The records the run is restricted to, as a predicate over model fields (`None`: all).
    pub fn restriction(&self, spec: &SyncSpec) -> Result<Option<Predicate>, Invalid> {
        let value = |value: &Json, at: String| {
            Scalar::of(value).ok_or_else(|| Invalid::new(at, "an identity value must be a string, number or boolean"))
        };
        let equal = |field: &str, value: Scalar| {
            Predicate::Test(Condition {
                field: field.to_owned(),
                function: filter::Function::Equality,
                operand: filter::Operand::Value(value),
            })
        };
        match (self.identities.is_empty(), self.source_identities.is_empty()) {
            (true, true) => Ok(None),
            (false, false) => Err(Invalid::new("source_identities", "give identities or source_identities, not both")),
            (false, true) => {
                let [identity] = spec.identity_mappings()[..] else {
                    return Err(Invalid::new(
                        "identities",
                        "identities needs a sync with one identity field; name records with source_identities",
                    ));
                };
                if self.identities.len() > MAX_START_IDENTITIES {
                    return Err(Invalid::new("identities", format!("at most {MAX_START_IDENTITIES} identities")));
                }
                let values = self
                    .identities
                    .iter()
                    .enumerate()
                    .map(|(n, v)| value(v, format!("identities[{n}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(Predicate::Test(Condition {
                    field: identity.source.field.clone(),
                    function: filter::Function::StringOneOf,
                    operand: filter::Operand::List(values),
                })))
            }
            (true, false) => {
                if self.source_identities.len() > MAX_START_IDENTITIES {
                    return Err(Invalid::new("source_identities", format!("at most {MAX_START_IDENTITIES} records")));
                }
                let records = self
                    .source_identities
                    .iter()
                    .enumerate()
                    .map(|(n, record)| {
                        if record.is_empty() {
                            return Err(Invalid::new(format!("source_identities[{n}]"), "names no field"));
                        }
                        let tests = record
                            .iter()
                            .enumerate()
                            .map(|(m, v)| {
                                Ok(equal(
                                    &v.source.field,
                                    value(&v.value, format!("source_identities[{n}][{m}].value"))?,
                                ))
                            })
                            .collect::<Result<Vec<_>, Invalid>>()?;
                        Ok(Predicate::All(tests))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(Predicate::Any(records)))
            }
        }
    }
}

/// Where an execution of a model sync keeps its change chunks in the payload store.
pub fn changes_dir(execution_id: Uuid) -> String {
    format!("executions/{execution_id}")
}

/// Where an execution of model sync `sync_id` writes the sync's new snapshot.
pub fn snapshot_dir(sync_id: Uuid, execution_id: Uuid) -> String {
    format!("syncs/{sync_id}/snapshots/{execution_id}")
}

/// A filter function by its Polytomic name; `at` is where it sits in the body.
fn function(name: &str, at: &str) -> Result<filter::Function, Invalid> {
    serde_json::from_value(Json::String(name.to_owned()))
        .map_err(|_| Invalid::new(at, format!("{name:?} is not a filter function")))
}

/// A condition on `field`; `kind` is the field's type when known.
fn condition(
    field: &str,
    (name, value): (&str, Option<&Json>),
    kind: Option<Kind>,
    at: &str,
) -> Result<Condition, Invalid> {
    let function = function(name, &format!("{at}.function"))?;
    let operand = filter::operand(function, kind, value).map_err(|m| Invalid::new(at, format!("{field:?}: {m}")))?;
    Ok(Condition { field: field.to_owned(), function, operand })
}

/// The type of a field created for a constant: its value's (text for NULL).
fn constant_type(value: &Json) -> FieldType {
    match value {
        Json::Bool(_) => FieldType::Bool,
        Json::Number(n) if n.is_i64() => FieldType::Int64,
        Json::Number(_) => FieldType::Numeric,
        _ => FieldType::Text,
    }
}

/// A constant's value: a string, number or boolean, or NULL.
fn constant(value: &Json, at: &str) -> Result<Option<Scalar>, Invalid> {
    match value {
        Json::Null => Ok(None),
        value => Scalar::of(value)
            .map(Some)
            .ok_or_else(|| Invalid::new(at, "a constant must be a string, number, boolean or null")),
    }
}

impl SyncSpec {
    /// The identity mappings records are matched on, all of which must match: `identities`
    /// when given, else the single `identity`.
    pub fn identity_mappings(&self) -> Vec<&Identity> {
        match &self.identities {
            Some(identities) if !identities.mappings.is_empty() => identities.mappings.iter().collect(),
            _ => self.identity.iter().collect(),
        }
    }

    /// Where identity mapping `n`'s `part` (`source`, `target`, `function`) is in the body.
    pub fn identity_field(&self, n: usize, part: &str) -> String {
        match self.identities.is_some() {
            true => format!("identities.mappings[{n}].{part}"),
            false => format!("identity.{part}"),
        }
    }

    /// The object `object` to create for this sync: a field per target field it writes, typed
    /// as the model field filling it (`model_type`) or after its constant's value, identity
    /// fields first; keyed on the identity when the mode matches on it.
    pub fn created_object(
        &self,
        object: String,
        model_type: impl Fn(&str) -> Option<FieldType>,
    ) -> Result<ObjectSpec, Invalid> {
        let mut fields = Vec::new();
        for (source, target) in self.columns() {
            let field_type = model_type(&source)
                .ok_or_else(|| Invalid::new("fields", format!("model field {source:?} is gone from the source")))?;
            fields.push(Field { name: target, field_type });
        }
        for mapping in self.fields.iter().chain(&self.override_fields) {
            if let Some(value) = &mapping.override_value
                && !fields.iter().any(|f| f.name == mapping.target)
            {
                fields.push(Field { name: mapping.target.clone(), field_type: constant_type(value) });
            }
        }
        let mut key = Vec::new();
        if self.mode.requires_identity() {
            for (n, identity) in self.identity_mappings().into_iter().enumerate() {
                let field = fields.iter().find(|f| f.name == identity.target);
                if let Some(field) = field.filter(|f| !f.field_type.can_identify()) {
                    return Err(Invalid::new(
                        self.identity_field(n, "source"),
                        format!("a {} field cannot identify records", field.field_type.postgres_name()),
                    ));
                }
                key.push(identity.target.clone());
            }
        }
        Ok(ObjectSpec { object, fields, key })
    }

    /// The model fields to read and the target field each fills, identity fields first.
    pub fn columns(&self) -> Vec<(String, String)> {
        let mut columns: Vec<(String, String)> = Vec::new();
        for identity in self.identity_mappings() {
            if !columns.iter().any(|(_, target)| target == &identity.target) {
                columns.push((identity.source.field.clone(), identity.target.clone()));
            }
        }
        for mapping in &self.fields {
            if let Some(source) = &mapping.source
                && mapping.override_value.is_none()
                && !columns.iter().any(|(_, target)| target == &mapping.target)
            {
                columns.push((source.field.clone(), mapping.target.clone()));
            }
        }
        columns
    }

    /// Which model records the sync reads: `model_filters` as a predicate over model field
    /// names. `kind` gives a model field's type, when known, to check the functions against.
    pub fn model_filter(&self, kind: impl Fn(&str) -> Option<Kind>) -> Result<Option<Predicate>, Invalid> {
        let Some(filters) = &self.model_filters else { return Ok(None) };
        let conditions = filters
            .conditions
            .iter()
            .enumerate()
            .map(|(n, c)| {
                let at = format!("model_filters.conditions[{n}]");
                condition(&c.source.field, (&c.function, c.value.as_ref()), kind(&c.source.field), &at)
            })
            .collect::<Result<Vec<_>, _>>()?;
        filter::combine(conditions, filters.logic.as_deref(), "model_filters")
    }

    /// What the sync asks of the destination beyond copying values; `model_kind` and
    /// `target_kind` give the types of model and destination fields, when known.
    pub fn shaping(
        &self,
        model_kind: impl Fn(&str) -> Option<Kind>,
        target_kind: impl Fn(&str) -> Option<Kind>,
    ) -> Result<Shaping, Invalid> {
        let mut shaping = Shaping::default();
        let constants = self.fields.iter().enumerate().map(|(n, f)| (format!("fields[{n}]"), f));
        let override_fields =
            self.override_fields.iter().enumerate().map(|(n, f)| (format!("override_fields[{n}]"), f));
        for (at, mapping) in constants.chain(override_fields) {
            if mapping.fill_only() {
                shaping.fill_only.push(mapping.target.clone());
            }
            if let Some(value) = &mapping.override_value {
                let value = constant(value, &format!("{at}.override_value"))?;
                shaping.constants.push((mapping.target.clone(), value));
            }
        }
        let columns = self.columns();
        for (n, replacement) in self.overrides.iter().enumerate() {
            let at = format!("overrides[{n}]");
            let field = replacement
                .field
                .as_ref()
                .ok_or_else(|| Invalid::new(format!("{at}.field"), "field (the model field to test) is required"))?;
            let function = replacement
                .function
                .as_deref()
                .ok_or_else(|| Invalid::new(format!("{at}.function"), "function is required"))?;
            let when = condition(&field.field, (function, replacement.value.as_ref()), model_kind(&field.field), &at)?;
            let value = constant(replacement.replacement.as_ref().unwrap_or(&Json::Null), &format!("{at}.override"))?;
            let positions: Vec<usize> =
                columns.iter().enumerate().filter(|(_, (source, _))| *source == field.field).map(|(i, _)| i).collect();
            if positions.is_empty() {
                return Err(Invalid::new(
                    format!("{at}.field"),
                    format!("model field {:?} is not mapped to any target field", field.field),
                ));
            }
            for position in positions {
                shaping.replacements.push(Replacement {
                    field: position,
                    when: Predicate::Test(when.clone()),
                    value: value.clone(),
                });
            }
        }
        if let Some(filters) = &self.target_filters {
            let conditions = filters
                .conditions
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    let at = format!("target_filters.conditions[{n}]");
                    condition(&c.field, (&c.function, c.value.as_ref()), target_kind(&c.field), &at)
                })
                .collect::<Result<Vec<_>, _>>()?;
            shaping.target_filter = filter::combine(conditions, filters.logic.as_deref(), "target_filters")?;
        }
        Ok(shaping)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_created_object_has_the_mapped_fields_typed_and_the_identity_as_key() {
        let model = Uuid::nil();
        let spec: SyncSpec = serde_json::from_value(json!({
            "mode": "updateOrCreate",
            "target": {"connection_id": model, "create": {"schema": "public", "table": "people"}},
            "identity": {"source": {"model_id": model, "field": "id"}, "target": "person_id", "function": "Equality"},
            "fields": [
                {"target": "mail", "source": {"model_id": model, "field": "email"}},
                {"target": "person_id", "source": {"model_id": model, "field": "id"}},
                {"target": "origin", "override_value": "sdk"},
            ],
            "override_fields": [{"target": "rank", "override_value": 3}, {"target": "ok", "override_value": true}],
        }))
        .expect("spec");
        let types = |field: &str| match field {
            "id" => Some(FieldType::Int64),
            "email" => Some(FieldType::Text),
            _ => None,
        };
        let created = spec.created_object("public.people".into(), types).expect("object");
        let fields: Vec<(&str, FieldType)> =
            created.fields.iter().map(|f| (f.name.as_str(), f.field_type.clone())).collect();
        assert_eq!(
            fields,
            [
                ("person_id", FieldType::Int64),
                ("mail", FieldType::Text),
                ("origin", FieldType::Text),
                ("rank", FieldType::Int64),
                ("ok", FieldType::Bool),
            ]
        );
        assert_eq!((created.object.as_str(), created.key), ("public.people", vec!["person_id".to_owned()]));

        let gone = spec.created_object("public.people".into(), |f| (f == "id").then_some(FieldType::Int64));
        assert_eq!(gone.expect_err("email is gone").field, "fields");
        let json_identity = spec.created_object("public.people".into(), |_| Some(FieldType::Json));
        assert_eq!(json_identity.expect_err("json cannot identify").field, "identity.source");

        let appending = SyncSpec { mode: SyncMode::Append, ..spec };
        assert!(appending.created_object("public.people".into(), types).expect("object").key.is_empty());
    }
}
