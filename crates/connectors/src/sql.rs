//! What the SQL database connectors share: reading a model's configuration, the clauses a
//! sorted, incremental or partitioned read adds to its query, checkpoints after cursor-ordered
//! batches, the statements that shape a target table and the names of tables a sync creates,
//! and isolating the records a database rejects by bisecting the batch. Each database spells its SQL through a [`Dialect`].

use std::ops::Range;

use futures::{StreamExt, stream};
use serde_json::Value as Json;
use syncline_core::{
    connector::{
        ConnectorError, CreateProperty, Cursor, Endpoint, IdentityFunction, InvalidProperty, Matching, Mismatch,
        MismatchKind, ModelInput, ModelOption, ObjectSpec, Partition, ReadEvent, ReadRequest, RecordFailure, Shaping,
        SyncMode, TargetField, WriteRequest,
    },
    record::{Field, RecordBatch},
    sync::filter::{Predicate, Scalar},
};

use crate::predicate::{self, Spelling};

/// Where a database connection goes and as whom.
pub(crate) fn endpoint(hostname: &str, port: u16, database: &str, username: &str) -> Endpoint {
    Endpoint {
        host: hostname.to_owned(),
        port,
        database: Some(database.to_owned()),
        user: Some(username.to_owned()),
        directory: None,
    }
}

/// The items of a SQL source's model configuration (see [`Model`]).
pub(crate) const MODEL_OPTIONS: &[ModelOption] =
    &[ModelOption { name: "query", input: ModelInput::Text }, ModelOption { name: "table", input: ModelInput::Stream }];

/// What a model configuration reads: `{"query": "select …"}` or `{"table": "schema.table"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Model<'a> {
    /// A query, trimmed of surrounding space and trailing semicolons.
    Query(&'a str),
    Table(&'a str),
}

impl<'a> Model<'a> {
    pub(crate) fn parse(model: &'a Json) -> Result<Self, ConnectorError> {
        let query = model["query"].as_str().map(|q| q.trim().trim_end_matches(';').trim_end());
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            return Ok(Self::Query(query));
        }
        match model["table"].as_str().filter(|t| !t.is_empty()) {
            Some(table) => Ok(Self::Table(table)),
            None => Err(ConnectorError::config("configuration.query (a SQL query) or configuration.table is required")),
        }
    }
}

/// How a database spells the parts of a read that differ between databases.
pub(crate) trait Dialect {
    /// The sort key of identity field `field`, selected as `expr`: NULLs last, text bytewise
    /// (see [`syncline_core::record::key`]).
    fn order_by(&self, expr: &str, field: &Field) -> String;

    /// The filter keeping records whose cursor `field` (selected as `expr`) is after `after`.
    fn after(&mut self, expr: &str, field: &Field, after: &Json) -> Result<String, ConnectorError>;

    /// The filter keeping partition `index` of `count`, hashing `exprs` (the identity's fields
    /// when the read is sorted, else every field).
    fn partition(&self, exprs: &[&str], index: u32, count: u32) -> String;

    /// The SQL of `predicate` over the model's fields (`m.<field>`).
    fn filter(&self, predicate: &Predicate) -> String;
}

/// What a read adds to `select <fields> from (<model>) as m`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clauses {
    /// ` where …`, or nothing.
    pub(crate) filter: String,
    /// ` order by …`, or nothing.
    pub(crate) order: String,
    /// Position of the cursor field among the read's fields, when records come in its order
    /// (each batch's checkpoint then holds its last value).
    pub(crate) cursor: Option<usize>,
}

/// The clauses of `request`, whose fields are `fields`, selected as `select`: the order of its
/// identity, the filter and order of its cursor, the filter of its partition.
pub(crate) fn clauses(
    request: &ReadRequest,
    fields: &[Field],
    select: &[String],
    dialect: &mut impl Dialect,
) -> Result<Clauses, ConnectorError> {
    let position = |name: &str| {
        request
            .fields
            .iter()
            .position(|f| f == name)
            .ok_or_else(|| ConnectorError::config(format!("{name:?} is not a selected field")))
    };
    let mut filters: Vec<String> = request.filter.iter().map(|p| format!("({})", dialect.filter(p))).collect();
    let mut order = Vec::new();
    let mut keys = Vec::new();
    for key in &request.order_by {
        let index = position(key)?;
        order.push(dialect.order_by(&select[index], &fields[index]));
        keys.push(select[index].as_str());
    }
    let cursor = match &request.cursor {
        Some(Cursor { field, after, ordered }) => {
            let index = position(field)?;
            if !fields[index].field_type.can_be_cursor() {
                return Err(ConnectorError::config(format!(
                    "{field:?} cannot be a cursor: it is not a number, date or timestamp"
                )));
            }
            if let Some(after) = after {
                filters.push(dialect.after(&select[index], &fields[index], after)?);
            }
            filters.push(format!("{} is not null", select[index]));
            if *ordered && order.is_empty() {
                order.push(select[index].clone());
            }
            ordered.then_some(index)
        }
        None => None,
    };
    if let Some(Partition { index, count }) = request.partition {
        if count == 0 || index >= count {
            return Err(ConnectorError::config(format!("partition {index} of {count} does not exist")));
        }
        if keys.is_empty() {
            keys = select.iter().map(String::as_str).collect();
        }
        filters.push(dialect.partition(&keys, index, count));
    }
    let filter = if filters.is_empty() { String::new() } else { format!(" where {}", filters.join(" and ")) };
    let order = if order.is_empty() { String::new() } else { format!(" order by {}", order.join(", ")) };
    Ok(Clauses { filter, order, cursor })
}

/// What a write puts into each target field: the records' own fields (staged), with their
/// [`Shaping::replacements`] applied, then the constants.
pub(crate) struct Values {
    /// Target field names, unquoted: the request's `targets`, then the constants' targets.
    pub(crate) targets: Vec<String>,
    /// The SQL value of each, over the staged record.
    pub(crate) exprs: Vec<String>,
}

/// How a database spells a write's values: `staged` is the staged record field at a position,
/// `replacement` a replacement value for the field at a position, `constant` a constant for a
/// target field.
pub(crate) struct ValueSpelling<'a> {
    pub(crate) staged: &'a dyn Fn(usize) -> String,
    pub(crate) replacement: &'a dyn Fn(usize, Option<&Scalar>) -> String,
    pub(crate) constant: &'a dyn Fn(&str, Option<&Scalar>) -> String,
    pub(crate) spelling: &'a dyn Spelling,
}

impl Values {
    pub(crate) fn of(request: &WriteRequest, how: &ValueSpelling<'_>) -> Self {
        let shaping: &Shaping = &request.shaping;
        let by_name = |name: &str| request.schema.index_of(name).map_or_else(|| "null".to_owned(), how.staged);
        let mut targets = request.targets.clone();
        let mut exprs: Vec<String> = (0..request.targets.len())
            .map(|i| {
                let cases: Vec<String> = shaping
                    .replacements
                    .iter()
                    .filter(|r| r.field == i)
                    .map(|r| {
                        let when = predicate::render(&r.when, &by_name, how.spelling);
                        format!(" when {when} then {}", (how.replacement)(i, r.value.as_ref()))
                    })
                    .collect();
                match cases.is_empty() {
                    true => (how.staged)(i),
                    false => format!("case{} else {} end", cases.concat(), (how.staged)(i)),
                }
            })
            .collect();
        for (target, value) in &shaping.constants {
            targets.push(target.clone());
            exprs.push((how.constant)(target, value.as_ref()));
        }
        Self { targets, exprs }
    }
}

/// The column of a staging table that records which identity match chose each record's
/// destination records, when matching is not plain equality (see [`Matched`]).
pub(crate) const LEVEL: &str = "syncline_level";

/// Matching staged records to destination records by priority, or by identity functions
/// other than equality: each staged record first gets the level (the mapping, in priority
/// order) that matches any destination record, then statements use [`Matched::chosen`].
pub(crate) struct Matched {
    /// The match of each level over `t` (the table) and the staged record's alias.
    levels: Vec<String>,
}

impl Matched {
    /// `mapping(n)` is the match of identity field `n` over `t` and the staged record.
    pub(crate) fn new(matching: &Matching, fields: usize, mapping: impl Fn(usize) -> String) -> Self {
        let all: Vec<String> = (0..fields).map(&mapping).collect();
        let levels = match matching.priority {
            true => all,
            false => vec![all.join(" and ")],
        };
        Self { levels }
    }

    /// The statements that give each record of `stage` (aliased `alias`) its level.
    pub(crate) fn assign(&self, stage: &str, alias: &str, table: &str) -> Vec<String> {
        self.levels
            .iter()
            .enumerate()
            .map(|(n, level)| {
                format!(
                    "update {stage} as {alias} set {LEVEL} = {n} where {alias}.{LEVEL} is null \
                     and exists (select 1 from {table} as t where {level})"
                )
            })
            .collect()
    }

    /// The destination records (`t`) a staged record (`alias`) matches at its level.
    pub(crate) fn chosen(&self, alias: &str) -> String {
        let levels: Vec<String> =
            self.levels.iter().enumerate().map(|(n, level)| format!("({alias}.{LEVEL} = {n} and {level})")).collect();
        format!("({})", levels.join(" or "))
    }
}

/// The match of a record's identity value `value` with destination column `column` under
/// `function`, given how the database lowers text.
pub(crate) fn identity_match(
    function: IdentityFunction,
    column: &str,
    value: &str,
    lower_text: &dyn Fn(&str) -> String,
) -> String {
    match function {
        IdentityFunction::Equality => format!("{column} = {value}"),
        IdentityFunction::ISubstring => {
            format!("position({} in {}) > 0", lower_text(value), lower_text(column))
        }
    }
}

/// How a write's records are read back and compared (see [`BatchWriter::verify`]).
///
/// [`BatchWriter::verify`]: syncline_core::connector::BatchWriter::verify
pub(crate) struct Verification {
    /// `select ord, <missing>, <differs>… from <stage> s left join <table> t on <identity>
    /// where …`: the records (by ordinal) missing or reading back different.
    pub(crate) upserts: String,
    /// The target fields the `<differs>` columns compare, in order.
    pub(crate) compared: Vec<String>,
    /// `select ord from <keys> k join <table> t on <identity>`: deleted records still there.
    pub(crate) deletes: String,
    /// What runs before each query once the records or keys are staged: giving each its
    /// chosen match, when matching is not plain equality.
    pub(crate) before_upserts: Vec<String>,
    pub(crate) before_deletes: Vec<String>,
}

/// What [`Verification::new`] builds its queries from.
pub(crate) struct VerificationParts<'a> {
    /// The staged records with their ordinal `ord`, and the deleted keys with theirs, each
    /// `<relation> as s` / `<relation> as k`.
    pub(crate) stage: &'a str,
    pub(crate) keys: &'a str,
    pub(crate) table: &'a str,
    /// The identity matches: `t.id = s.c0 and …`, `t.id = k.k0 and …`; with matching that is
    /// not plain equality, the matches of the staged records and of the keys instead (the
    /// staging tables then have a [`LEVEL`] column).
    pub(crate) matches: &'a str,
    pub(crate) key_matches: &'a str,
    pub(crate) matched: Option<(Matched, Matched)>,
    /// The quoted column of `t` that holds the first identity field.
    pub(crate) identity_column: &'a str,
    /// For every non-identity target field written: its name and when its value reads back
    /// different (SQL over `s` and `t`, never NULL).
    pub(crate) differs: Vec<(String, String)>,
    /// The target filter over `t`, if any.
    pub(crate) target_filter: Option<String>,
    pub(crate) mode: SyncMode,
}

impl Verification {
    pub(crate) fn new(parts: VerificationParts<'_>) -> Self {
        let VerificationParts {
            stage,
            keys,
            table,
            matches,
            key_matches,
            matched,
            identity_column,
            differs,
            target_filter,
            mode,
        } = parts;
        let (matches, key_matches, before_upserts, before_deletes) = match &matched {
            None => (matches.to_owned(), key_matches.to_owned(), vec![], vec![]),
            Some((staged, keyed)) => (
                staged.chosen("s"),
                keyed.chosen("k"),
                staged.assign(stage, "s", table),
                keyed.assign(keys, "k", table),
            ),
        };
        let missing = format!("(t.{identity_column} is null)");
        let any_differs = match differs.is_empty() {
            true => "false".to_owned(),
            false => differs.iter().map(|(_, d)| format!("({d})")).collect::<Vec<_>>().join(" or "),
        };
        // Existing records a target filter kept from changing are not compared.
        let filtered = target_filter.as_ref().map(|f| format!(" and coalesce(({f}), false)")).unwrap_or_default();
        let wanted = match mode {
            SyncMode::Create => missing.clone(),
            SyncMode::Update => format!("not {missing}{filtered} and ({any_differs})"),
            _ => format!("{missing} or (true{filtered} and ({any_differs}))"),
        };
        let columns: Vec<String> = differs.iter().map(|(_, d)| format!("({d})")).collect();
        let upserts = format!(
            "select s.ord, {missing}{}{} from {stage} as s left join {table} as t on {matches} where {wanted}",
            if columns.is_empty() { "" } else { ", " },
            columns.join(", ")
        );
        let deletes = format!(
            "select k.ord from {keys} as k join {table} as t on {key_matches}{}",
            target_filter.map(|f| format!(" where coalesce(({f}), false)")).unwrap_or_default()
        );
        Self {
            upserts,
            compared: differs.into_iter().map(|(name, _)| name).collect(),
            deletes,
            before_upserts,
            before_deletes,
        }
    }

    /// The mismatch a row of the upserts query describes: `missing`, then one flag per compared
    /// field.
    pub(crate) fn mismatch(&self, index: usize, missing: bool, differs: &[bool]) -> Mismatch {
        let kind = match missing {
            true => MismatchKind::Missing,
            false => MismatchKind::Differs(
                self.compared.iter().zip(differs).filter(|(_, d)| **d).map(|(name, _)| name.clone()).collect(),
            ),
        };
        Mismatch { index, kind }
    }
}

/// The statements that give table `table` (quoted) `spec`'s fields: a `create table` with the
/// identity as primary key (and `options` after it) when `existing`, its columns, says it does
/// not exist; else an `alter table … add column` for each field it lacks. `column` defines a
/// column, `quote` quotes a name.
pub(crate) fn shape_table(
    table: &str,
    spec: &ObjectSpec,
    existing: Result<Vec<String>, ConnectorError>,
    column: impl Fn(&Field) -> String,
    quote: impl Fn(&str) -> String,
    options: &str,
) -> Result<Vec<String>, ConnectorError> {
    Ok(match existing {
        Err(e) if e.class == syncline_core::connector::ErrorClass::NotFound => {
            let mut definitions: Vec<String> = spec.fields.iter().map(column).collect();
            if !spec.key.is_empty() {
                let key: Vec<String> = spec.key.iter().map(|k| quote(k)).collect();
                definitions.push(format!("primary key ({})", key.join(", ")));
            }
            vec![format!("create table {table} ({}){options}", definitions.join(", "))]
        }
        Err(e) => return Err(e),
        Ok(existing) => spec
            .fields
            .iter()
            .filter(|f| !existing.contains(&f.name))
            .map(|f| format!("alter table {table} add column {}", column(f)))
            .collect(),
    })
}

/// The free-text property naming the table a sync creates, after the schema or database.
pub(crate) const TABLE: CreateProperty = CreateProperty { id: "table", title: "Table", listed: false };

/// How long a database's identifiers may be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NameLimit {
    Bytes(usize),
    Chars(usize),
}

/// The object `container.table` the values of a SQL target creation name: a listed container
/// (schema, database), then [`TABLE`], which must be a name the database keeps as written —
/// within `limit`, no NUL, no surrounding spaces — and without a `.`, so the object's id
/// splits back into the two.
pub(crate) fn created_object(values: &[&str], limit: NameLimit) -> Result<String, InvalidProperty> {
    let invalid = |message: String| InvalidProperty { property: TABLE.id, message };
    let [container, table] = values else {
        return Err(invalid(format!("expected a schema or database and a table, got {} values", values.len())));
    };
    let too_long = match limit {
        NameLimit::Bytes(most) => (table.len() > most).then(|| format!("{most} bytes")),
        NameLimit::Chars(most) => (table.chars().count() > most).then(|| format!("{most} characters")),
    };
    let problem = if table.is_empty() {
        Some("must not be empty".to_owned())
    } else if let Some(most) = too_long {
        Some(format!("is longer than {most}"))
    } else if table.contains('.') {
        Some("must not contain \".\"".to_owned())
    } else if table.contains('\0') {
        Some("must not contain NUL".to_owned())
    } else if table.trim() != *table {
        Some("must not start or end with a space".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(invalid(format!("table name {table:?} {problem}"))),
        None => Ok(format!("{container}.{table}")),
    }
}

/// A table column as a target field: writable, and able to identify records.
pub(crate) fn target_field(name: String, api_type: &str, source_type: String, required: bool) -> TargetField {
    TargetField {
        id: name.clone(),
        name,
        field_type: api_type.to_owned(),
        source_type,
        required,
        createable: true,
        updateable: true,
        supports_identity: true,
    }
}

/// A saved cursor value as the text a database parses (JSON strings without their quotes).
pub(crate) fn cursor_text(after: &Json) -> String {
    match after {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

type Batches = stream::BoxStream<'static, Result<RecordBatch, ConnectorError>>;

/// Each batch, followed by a checkpoint holding the cursor's value in its last record when the
/// read has a cursor (field `cursor` of the schema; records come in cursor order then).
pub(crate) fn with_checkpoints(
    batches: Batches,
    cursor: Option<usize>,
) -> stream::BoxStream<'static, Result<ReadEvent, ConnectorError>> {
    batches
        .flat_map(move |batch| {
            let events = match (batch, cursor) {
                (Err(e), _) => vec![Err(e)],
                (Ok(batch), None) => vec![Ok(ReadEvent::Batch(batch))],
                (Ok(batch), Some(index)) => {
                    let last = batch.len().checked_sub(1).map(|i| batch.record(i).get(index));
                    match last {
                        Some(Err(e)) => vec![Err(ConnectorError::permanent(e.to_string()))],
                        Some(Ok(value)) => {
                            let state = serde_json::json!({ "cursor": value.to_json() });
                            vec![Ok(ReadEvent::Batch(batch)), Ok(ReadEvent::Checkpoint(state))]
                        }
                        None => vec![Ok(ReadEvent::Batch(batch))],
                    }
                }
            };
            stream::iter(events)
        })
        .boxed()
}

/// The ranges of a batch to try, halving each range the database rejects until the rejected
/// records stand alone: one bad record costs O(log n) attempts, not the batch.
///
/// ```text
/// let mut bisection = Bisection::new(0..n);
/// while let Some(range) = bisection.next() {
///     // savepoint; write `range`; on a data error: rollback to the savepoint, then
///     bisection.rejected(range, message);
/// }
/// ```
#[derive(Debug)]
pub(crate) struct Bisection {
    pending: Vec<Range<usize>>,
    failures: Vec<RecordFailure>,
}

impl Bisection {
    pub(crate) fn new(range: Range<usize>) -> Self {
        Self { pending: if range.is_empty() { vec![] } else { vec![range] }, failures: Vec::new() }
    }

    /// The next range to try, in record order.
    pub(crate) fn next(&mut self) -> Option<Range<usize>> {
        self.pending.pop()
    }

    /// The database rejected `range` with `message`: a single record fails, a longer range is
    /// tried again in halves.
    pub(crate) fn rejected(&mut self, range: Range<usize>, message: String) {
        if range.len() == 1 {
            self.failures.push(RecordFailure { index: range.start, message });
        } else {
            let mid = range.start + range.len() / 2;
            self.pending.push(mid..range.end);
            self.pending.push(range.start..mid);
        }
    }

    /// The records that failed on their own.
    pub(crate) fn into_failures(self) -> Vec<RecordFailure> {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_isolates_each_bad_record() {
        let bad = [3usize, 4, 9];
        let mut bisection = Bisection::new(0..10);
        let mut written = Vec::new();
        let mut attempts = 0;
        while let Some(range) = bisection.next() {
            attempts += 1;
            match bad.iter().find(|b| range.contains(b)) {
                Some(b) => bisection.rejected(range, format!("bad {b}")),
                None => written.extend(range),
            }
        }
        let failures = bisection.into_failures();
        assert_eq!(failures.iter().map(|f| f.index).collect::<Vec<_>>(), bad);
        assert_eq!(failures[0].message, "bad 3");
        assert_eq!(written, [0, 1, 2, 5, 6, 7, 8]);
        assert!(attempts < 20, "{attempts} attempts");
        assert!(Bisection::new(0..0).next().is_none());
    }

    #[test]
    fn created_tables_are_named_as_the_database_keeps_them() {
        let named = |table: &str, limit| created_object(&["s", table], limit);
        assert_eq!(named("people", NameLimit::Bytes(63)), Ok("s.people".to_owned()));
        assert_eq!(named(&"é".repeat(31), NameLimit::Bytes(63)), Ok(format!("s.{}", "é".repeat(31))));
        assert!(named(&"é".repeat(32), NameLimit::Bytes(63)).is_err(), "64 bytes");
        assert!(named(&"é".repeat(64), NameLimit::Chars(64)).is_ok());
        for bad in ["", "a.b", "a\0b", "trailing ", " leading"] {
            let e = named(bad, NameLimit::Chars(64)).expect_err(bad);
            assert_eq!(e.property, "table", "{bad:?}");
        }
        assert!(created_object(&["s"], NameLimit::Chars(64)).is_err());
    }

    #[test]
    fn models_are_queries_or_tables() {
        let query = serde_json::json!({"query": "  select 1; "});
        assert_eq!(Model::parse(&query).ok(), Some(Model::Query("select 1")));
        let table = serde_json::json!({"query": " ", "table": "db.t"});
        assert_eq!(Model::parse(&table).ok(), Some(Model::Table("db.t")));
        assert!(Model::parse(&serde_json::json!({})).is_err());
    }
}
