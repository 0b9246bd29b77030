//! The destination side of the contract: describing and shaping target objects, and writing
//! batches whose records each carry their operation.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ConnectorError, ParameterValue};
use crate::{
    record::{Field, RecordBatch, Schema},
    sync::filter::{Predicate, Scalar},
};

/// Model sync modes (the Polytomic `mode` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncMode {
    Create,
    Update,
    UpdateOrCreate,
    Replace,
    Append,
    /// Deletes the destination records whose identity the model lists.
    Remove,
    /// Makes the destination object hold exactly the model's records, replacing its contents
    /// in one transaction on every run.
    Snapshot,
}

impl SyncMode {
    /// Every mode.
    pub const ALL: [SyncMode; 7] =
        [Self::Create, Self::Update, Self::UpdateOrCreate, Self::Replace, Self::Append, Self::Remove, Self::Snapshot];

    /// The modes that write records as they come, which every destination supports.
    pub const BASIC: [SyncMode; 5] = [Self::Create, Self::Update, Self::UpdateOrCreate, Self::Replace, Self::Append];

    /// The wire name (`updateOrCreate`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::UpdateOrCreate => "updateOrCreate",
            Self::Replace => "replace",
            Self::Append => "append",
            Self::Remove => "remove",
            Self::Snapshot => "snapshot",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether the mode matches records on an identity.
    pub fn requires_identity(self) -> bool {
        !matches!(self, Self::Append | Self::Snapshot)
    }

    /// Whether every run writes every record, whatever the last run delivered.
    pub fn rewrites_everything(self) -> bool {
        self == Self::Snapshot
    }
}

/// A field of a destination object.
#[derive(Debug, Clone, Serialize)]
pub struct TargetField {
    pub id: String,
    pub name: String,
    /// Polytomic type name (`string`, `number`, …).
    #[serde(rename = "type")]
    pub field_type: String,
    /// The destination's own type name.
    pub source_type: String,
    pub required: bool,
    pub createable: bool,
    pub updateable: bool,
    pub supports_identity: bool,
}

/// An object a destination can write to (a table, a CRM object).
#[derive(Debug, Clone, Serialize)]
pub struct TargetObject {
    pub id: String,
    pub name: String,
}

/// The object a write needs: its name, fields and identity.
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    pub object: String,
    pub fields: Vec<Field>,
    pub key: Vec<String>,
}

/// A property naming a target object a destination creates (see [`TargetCreation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateProperty {
    pub id: &'static str,
    pub title: &'static str,
    /// Whether the value is one of [`TargetCreation::values`]; otherwise it is free text.
    pub listed: bool,
}

/// A target-creation value that cannot name an object: its property, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidProperty {
    pub property: &'static str,
    pub message: String,
}

/// How a destination names the target objects it can create; [`Destination::apply`] creates
/// them.
#[async_trait]
pub trait TargetCreation: Send + Sync {
    /// The properties naming a new object, in order.
    fn properties(&self) -> &'static [CreateProperty];

    /// The values listed property `property` may take (schemas, databases).
    async fn values(&self, property: &str) -> Result<Vec<ParameterValue>, ConnectorError>;

    /// The id of the object `values` name (one per property, in order; listed ones among their
    /// values), or the value that cannot name one.
    fn object(&self, values: &[&str]) -> Result<String, InvalidProperty>;
}

/// One change [`Destination::apply`] makes (or would make, in a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// What it does, for people: `create table public.users (…)`.
    pub description: String,
}

/// What happens to one record. Whether it turns out to exist decides the rest, by the
/// writer's mode: an `Insert` of an existing record updates it (or leaves it, in `create`
/// mode); an `Update` of a missing one does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// The record is new as far as the sync knows.
    Insert,
    /// The record was delivered before and changed.
    Update,
    /// Either.
    Upsert,
    /// The record must go.
    Delete,
}

/// The operations of a batch's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operations {
    /// Every record has this operation.
    All(Operation),
    /// One per record, in order.
    Each(Vec<Operation>),
}

impl Operations {
    /// The operation of record `index`.
    pub fn of(&self, index: usize) -> Operation {
        match self {
            Self::All(op) => *op,
            Self::Each(ops) => ops[index],
        }
    }
}

/// Records to write with their operations. Delete records hold the identity fields only
/// ([`WriteRequest::key_schema`]), so a delete batch never mixes with other operations.
#[derive(Debug, Clone)]
pub struct WriteBatch {
    pub records: RecordBatch,
    pub operations: Operations,
}

/// How a sync writes: the object, the mode, and which target field each record field fills.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub object: String,
    pub mode: SyncMode,
    /// Schema of incoming records.
    pub schema: Arc<Schema>,
    /// Target field for each schema field, same order.
    pub targets: Vec<String>,
    /// Positions in the schema of the identity fields, if the mode matches on an identity.
    pub identity: Vec<usize>,
    /// What the sync asks beyond copying each record's values (only of destinations whose
    /// [`Destination::shapes_writes`] is true).
    pub shaping: Shaping,
    /// How records match destination records by their identity fields (plain equality of all
    /// of them unless a destination that shapes writes is asked otherwise).
    pub matching: Matching,
}

/// How an identity field of a record matches a destination field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdentityFunction {
    #[default]
    Equality,
    /// The destination value contains the record's, ignoring case.
    ISubstring,
}

impl IdentityFunction {
    /// The function of a Polytomic identity function name, if supported.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "Equality" => Some(Self::Equality),
            "ISubstring" => Some(Self::ISubstring),
            _ => None,
        }
    }
}

/// How a record finds its destination record through the identity fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matching {
    /// The function of each identity field, in the order of [`WriteRequest::identity`] (empty:
    /// all equality).
    pub functions: Vec<IdentityFunction>,
    /// `priority`: the first identity field that matches any destination record decides;
    /// otherwise every one must match (`and`).
    pub priority: bool,
}

impl Matching {
    /// Whether records match on equality of every identity field (a unique key can serve).
    pub fn is_plain(&self) -> bool {
        !self.priority && self.functions.iter().all(|f| *f == IdentityFunction::Equality)
    }

    /// The function of identity field `n`.
    pub fn function(&self, n: usize) -> IdentityFunction {
        self.functions.get(n).copied().unwrap_or_default()
    }
}

/// What a write does beyond copying each record's values into its target fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shaping {
    /// Target fields given one value in every record written (`None`: NULL).
    pub constants: Vec<(String, Option<Scalar>)>,
    /// Values replaced before they are written: the record field at this position gets
    /// `value` (`None`: NULL) when the predicate, over the records' field names, holds.
    pub replacements: Vec<Replacement>,
    /// Target fields written only where the destination's value is empty (NULL): "don't
    /// overwrite".
    pub fill_only: Vec<String>,
    /// Which existing destination records may be updated or deleted, over target field names.
    pub target_filter: Option<Predicate>,
}

impl Shaping {
    /// Whether nothing beyond copying values is asked.
    pub fn is_plain(&self) -> bool {
        *self == Self::default()
    }
}

/// A conditional replacement of a record field's value (see [`Shaping::replacements`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    pub field: usize,
    pub when: Predicate,
    pub value: Option<Scalar>,
}

impl WriteRequest {
    /// The schema of delete records: the identity fields alone.
    pub fn key_schema(&self) -> Schema {
        Schema { fields: self.identity.iter().map(|i| self.schema.fields[*i].clone()).collect() }
    }
}

/// A record the destination rejected; `index` is its position in the written batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    pub index: usize,
    pub message: String,
}

/// Writes batches into one destination object.
#[async_trait]
pub trait BatchWriter: Send {
    /// Applies every record of `batch` and returns the ones rejected (each index at most once,
    /// within the batch). Writing the same batch twice leaves the same result, except in append
    /// mode. A failure of the whole batch (connection lost) is an error instead.
    async fn write(&mut self, batch: &WriteBatch) -> Result<Vec<RecordFailure>, ConnectorError>;

    /// Ends the run's writes: in snapshot mode, commits the object's new contents, which no
    /// reader sees before. Dropped without it, a snapshot run changes nothing.
    async fn finish(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Opens a reader of the records this writer writes, on a connection of its own, so that
    /// checking one batch goes on while the next is written. A batch can be checked once
    /// `write` returned it, in snapshot mode once `finish` did. `None` when the destination
    /// cannot read records back (or the write has no identity).
    async fn verifier(&mut self) -> Result<Option<Box<dyn Verifier>>, ConnectorError> {
        Ok(None)
    }
}

/// Reads written records back from the destination (see [`BatchWriter::verifier`]).
#[async_trait]
pub trait Verifier: Send {
    /// Reads the records of `batch`, written before (and not rejected), back by identity and
    /// returns those that differ from what was written, by position in `batch`: upserts
    /// compared field by field as the mode writes them (values a target filter kept from
    /// changing are not compared), deletes checked gone.
    async fn verify(&mut self, batch: &WriteBatch) -> Result<Vec<Mismatch>, ConnectorError>;
}

/// A written record that reads back differently from what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Its position in the verified batch.
    pub index: usize,
    pub kind: MismatchKind,
}

/// How a written record differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MismatchKind {
    /// The record is not there.
    Missing,
    /// A deleted record is still there.
    StillThere,
    /// These target fields hold other values than the ones written.
    Differs(Vec<String>),
}

impl std::fmt::Display for MismatchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("the record is missing after it was written"),
            Self::StillThere => f.write_str("the record is still there after it was deleted"),
            Self::Differs(fields) => write!(f, "reads back different in {}", fields.join(", ")),
        }
    }
}

/// Writes to a connection.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Objects a model sync can target.
    async fn target_objects(&self) -> Result<Vec<TargetObject>, ConnectorError>;

    /// The fields of `object`.
    async fn target_fields(&self, object: &str) -> Result<Vec<TargetField>, ConnectorError>;

    /// Creates `spec`'s object, or adds the fields it lacks; with `dry_run`, only says what it
    /// would do. Fields the object has and the spec does not are left alone.
    async fn apply(&self, spec: &ObjectSpec, dry_run: bool) -> Result<Vec<Action>, ConnectorError>;

    /// How this destination names the target objects it can create; `None` when it cannot.
    fn target_creation(&self) -> Option<&dyn TargetCreation> {
        None
    }

    /// Modes this destination supports.
    fn modes(&self) -> &'static [SyncMode];

    /// Whether writes honour a request's [`Shaping`]: constants, replacements, fill-only
    /// fields and target filters.
    fn shapes_writes(&self) -> bool {
        false
    }

    /// Opens a writer, checking up front that the mapping fits the object.
    async fn writer(&self, request: WriteRequest) -> Result<Box<dyn BatchWriter>, ConnectorError>;
}
