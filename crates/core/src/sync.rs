//! Model sync configuration: the parts of the Polytomic sync body the engine acts on.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::connector::SyncMode;

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
                && !columns.iter().any(|(_, target)| target == &mapping.target)
            {
                columns.push((source.field.clone(), mapping.target.clone()));
            }
        }
        columns
    }
}
