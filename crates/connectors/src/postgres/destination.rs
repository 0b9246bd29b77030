//! Writing to tables: each batch is `COPY`ed into a temporary staging table and applied with
//! set-based SQL. A batch the database rejects is bisected under savepoints until the bad
//! records are isolated, so one bad record costs O(log n) retries, not the whole batch.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, Bytes};
use syncline_core::{
    connector::{
        Action, BatchWriter, ConnectorError, Context, CreateProperty, Destination, ErrorClass, InvalidProperty,
        ObjectSpec, Operation, Operations, ParameterValue, RecordFailure, SyncMode, TargetCreation, TargetField,
        TargetObject, Verifier, WriteBatch, WriteRequest,
    },
    record::{Field, FieldType, RecordBatch, RecordBatchBuilder},
};

use super::{
    PostgresConfig,
    client::{self, Connection, quote_ident, split_object},
    copy,
    spelling::{self, Postgres},
    types,
    verify::{Bytewise, PostgresVerifier, ReadBack, VERIFY, VERIFY_KEYS},
};
use crate::{
    predicate,
    sql::{
        self, Bisection, LEVEL, Matched, NameLimit, ValueSpelling, Values, Verification, VerificationParts,
        identity_match, shape_table, target_field,
    },
};

pub(super) struct PostgresDestination {
    ctx: Context,
    config: PostgresConfig,
}

impl PostgresDestination {
    pub(super) fn new(ctx: Context, config: PostgresConfig) -> Self {
        Self { ctx, config }
    }
}

const MODES: &[SyncMode] = &SyncMode::ALL;

pub(super) struct Column {
    pub(super) name: String,
    pub(super) data_type: String,
    pub(super) type_oid: u32,
    pub(super) required: bool,
}

pub(super) async fn columns(conn: &Connection, object: &str) -> Result<Vec<Column>, ConnectorError> {
    let (schema, table) = split_object(object);
    let rows = conn
        .interactive(conn.client.query(
            "select a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull and not a.atthasdef and a.attidentity = '',
                    a.atttypid
             from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
             order by a.attnum",
            &[&schema, &table],
        ))
        .await?;
    if rows.is_empty() {
        return Err(ConnectorError::not_found(format!("target object {object:?} does not exist")));
    }
    rows.iter()
        .map(|r| {
            Ok(Column {
                name: r.try_get(0)?,
                data_type: r.try_get(1)?,
                required: r.try_get(2)?,
                type_oid: r.try_get(3)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| client::error(&e))
}

/// Whether `columns` together (in any order, nothing else) are covered by a unique index or
/// constraint of `object`.
async fn has_unique_index(conn: &Connection, object: &str, columns: &[&str]) -> Result<bool, ConnectorError> {
    let (schema, table) = split_object(object);
    let mut sorted: Vec<&str> = columns.to_vec();
    sorted.sort_unstable();
    let row = conn
        .interactive(conn.client.query_one(
            "select exists (select 1 from pg_index i join pg_class c on c.oid = i.indrelid
               join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = $1 and c.relname = $2 and i.indisunique and i.indpred is null
                 and i.indnatts = cardinality($3::text[])
                 and (select array_agg(a.attname::text order by a.attname::text) from pg_attribute a
                      where a.attrelid = c.oid and a.attnum = any(i.indkey::int2[])) = $3::text[])",
            &[&schema, &table, &sorted],
        ))
        .await?;
    row.try_get(0).map_err(|e| client::error(&e))
}

#[async_trait]
impl Destination for PostgresDestination {
    async fn target_objects(&self) -> Result<Vec<TargetObject>, ConnectorError> {
        let conn = client::connect(&self.ctx, &self.config).await?;
        let rows = conn
            .interactive(conn.client.query(
                "select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
                 where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')
                   and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'
                 order by 1",
                &[],
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                TargetObject { name: id.clone(), id }
            })
            .collect())
    }

    async fn target_fields(&self, object: &str) -> Result<Vec<TargetField>, ConnectorError> {
        let conn = client::connect(&self.ctx, &self.config).await?;
        Ok(columns(&conn, object)
            .await?
            .into_iter()
            .map(|c| target_field(c.name, api_type(&c.data_type), c.data_type, c.required))
            .collect())
    }

    async fn apply(&self, spec: &ObjectSpec, dry_run: bool) -> Result<Vec<Action>, ConnectorError> {
        let conn = client::connect(&self.ctx, &self.config).await?;
        let (schema, table) = split_object(&spec.object);
        let name = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
        let existing = columns(&conn, &spec.object).await.map(|cs| cs.into_iter().map(|c| c.name).collect());
        let column = |f: &Field| format!("{} {}", quote_ident(&f.name), f.field_type.postgres_name());
        let statements = shape_table(&name, spec, existing, column, quote_ident, "")?;
        if !dry_run {
            for statement in &statements {
                conn.interactive(conn.client.batch_execute(statement)).await?;
            }
        }
        Ok(statements.into_iter().map(|description| Action { description }).collect())
    }

    fn target_creation(&self) -> Option<&dyn TargetCreation> {
        Some(self)
    }

    fn modes(&self) -> &'static [SyncMode] {
        MODES
    }

    fn shapes_writes(&self) -> bool {
        true
    }

    async fn writer(&self, request: WriteRequest) -> Result<Box<dyn BatchWriter>, ConnectorError> {
        let conn = client::connect(&self.ctx, &self.config).await?;
        let writer = PostgresWriter::open(conn, &self.config, request).await?;
        Ok(Box::new(writer))
    }
}

const CREATE_PROPERTIES: &[CreateProperty] =
    &[CreateProperty { id: "schema", title: "Schema", listed: true }, sql::TABLE];

/// A new table is named by its schema, one the user may create tables in, and its name.
#[async_trait]
impl TargetCreation for PostgresDestination {
    fn properties(&self) -> &'static [CreateProperty] {
        CREATE_PROPERTIES
    }

    async fn values(&self, property: &str) -> Result<Vec<ParameterValue>, ConnectorError> {
        if property != "schema" {
            return Ok(Vec::new());
        }
        let conn = client::connect(&self.ctx, &self.config).await?;
        conn.names(
            "select nspname::text from pg_namespace
             where nspname <> 'information_schema' and nspname not like 'pg\\_%' and has_schema_privilege(oid, 'CREATE')
             order by 1",
        )
        .await
    }

    fn object(&self, values: &[&str]) -> Result<String, InvalidProperty> {
        // Longer identifiers would be cut to NAMEDATALEN - 1 bytes.
        sql::created_object(values, NameLimit::Bytes(63))
    }
}

/// The Polytomic type name for a PostgreSQL type.
fn api_type(data_type: &str) -> &'static str {
    let base = data_type.split('(').next().unwrap_or_default();
    match base {
        "smallint" | "integer" | "bigint" | "real" | "double precision" | "numeric" => "number",
        "boolean" => "boolean",
        "date" | "timestamp without time zone" | "timestamp with time zone" => "datetime",
        "json" | "jsonb" => "object",
        "bytea" => "binary",
        _ if data_type.ends_with("[]") => "array",
        _ => "string",
    }
}

struct PostgresWriter {
    conn: Connection,
    /// Statements applying the staged batch, in order.
    apply: Vec<String>,
    /// `COPY` straight into the table, when every column takes the records' binary format as is
    /// or as `jsonb` (not in update mode, which must never create records).
    direct: Option<String>,
    /// Which fields go into `jsonb` columns as JSON text, when some do.
    jsonb: Option<Vec<bool>>,
    /// Deletes the staged keys (replace and remove modes).
    delete: Option<Vec<String>>,
    /// `copy` into the staging table and into the keys table (their record columns).
    copy_stage: String,
    copy_keys: String,
    /// Snapshot mode: the run's writes share one transaction, begun when the writer opened
    /// (with the old contents deleted) and committed by [`BatchWriter::finish`].
    whole_run: bool,
    /// How written records are read back and compared (`None` without an identity).
    read_back: Option<Arc<ReadBack>>,
}

const STAGE: &str = "syncline_stage";
const KEYS: &str = "syncline_keys";

impl PostgresWriter {
    async fn open(conn: Connection, config: &PostgresConfig, req: WriteRequest) -> Result<Self, ConnectorError> {
        let target_columns = columns(&conn, &req.object).await?;
        let client = &conn.client;
        let column = |target: &str| {
            target_columns
                .iter()
                .find(|c| c.name == target)
                .ok_or_else(|| ConnectorError::config(format!("field {target:?} does not exist on {}", req.object)))
        };
        for target in req.targets.iter().chain(req.shaping.constants.iter().map(|(t, _)| t)) {
            column(target)?;
        }
        let (schema, table) = split_object(&req.object);
        let table = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
        let column_types: Vec<u32> =
            req.targets.iter().map(|target| column(target).map_or(0, |c| c.type_oid)).collect();
        // JSON text bound for a jsonb column is copied straight in after jsonb's version byte.
        let into_jsonb: Vec<bool> = column_types
            .iter()
            .zip(&req.schema.fields)
            .map(|(oid, f)| types::json_into_jsonb(*oid, &f.field_type))
            .collect();
        let as_is: Vec<bool> = column_types
            .iter()
            .zip(&req.schema.fields)
            .zip(&into_jsonb)
            .map(|((oid, field), jsonb)| *jsonb || types::accepts_binary(*oid, &field.field_type))
            .collect();
        let binary_compatible = as_is.iter().all(|b| *b);
        let jsonb = into_jsonb.contains(&true).then(|| into_jsonb.clone());
        let stage_columns: Vec<String> = req
            .schema
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| format!("c{i} {}", f.field_type.postgres_name()))
            .collect();
        let create_stage = format!("create temporary table {STAGE} ({}, {LEVEL} int)", stage_columns.join(", "));
        conn.interactive(client.batch_execute(&create_stage)).await?;

        let shaping = &req.shaping;
        let values = Values::of(
            &req,
            &ValueSpelling {
                staged: &|i| format!("s.c{i}"),
                replacement: &|i, value| spelling::constant(value, &req.schema.fields[i].field_type.postgres_name()),
                constant: &|target, value| {
                    spelling::constant(value, &column(target).map(|c| c.data_type.clone()).unwrap_or_default())
                },
                spelling: &Postgres,
            },
        );
        let targets: Vec<String> = values.targets.iter().map(|t| quote_ident(t)).collect();
        let insert = format!(
            "insert into {table} as t ({}) select {} from {STAGE} as s",
            targets.join(", "),
            values.exprs.join(", ")
        );
        let identity: Vec<&str> = req.identity.iter().map(|i| req.targets[*i].as_str()).collect();
        let plain = req.matching.is_plain();
        let unique = plain && !identity.is_empty() && has_unique_index(&conn, &req.object, &identity).await?;
        // Matching that is not plain equality goes through each staged record's chosen match.
        let lower = |x: &str| format!("lower(({x})::text)");
        let matched = |alias: &str, value: &dyn Fn(usize) -> String| {
            Matched::new(&req.matching, req.identity.len(), |n| {
                let column = format!("t.{}", targets[req.identity[n]]);
                identity_match(req.matching.function(n), &column, &format!("{alias}.{}", value(n)), &lower)
            })
        };
        // New records can skip staging when the table takes their binary format as is, nothing
        // rewrites their values, and either nothing is matched (append, snapshot) or a unique
        // index turns an existing record into an error.
        let as_sent = binary_compatible && shaping.constants.is_empty() && shaping.replacements.is_empty();
        let direct = match req.mode {
            SyncMode::Append | SyncMode::Snapshot => as_sent,
            SyncMode::Update | SyncMode::Remove => false,
            _ => as_sent && unique,
        }
        .then(|| {
            let names: Vec<String> = req.targets.iter().map(|t| quote_ident(t)).collect();
            format!("copy {table} ({}) from stdin (format binary)", names.join(", "))
        });
        // Only existing records the target filters select may change.
        let target_filter = shaping
            .target_filter
            .as_ref()
            .map(|p| format!(" and ({})", predicate::render(p, &|f| format!("t.{}", quote_ident(f)), &Postgres)))
            .unwrap_or_default();
        let matches: Vec<String> = req.identity.iter().map(|i| format!("t.{} = s.c{i}", targets[*i])).collect();
        let matches = matches.join(" and ");
        // Keys of deletes, and of deleted records read back, are staged as `k0, k1, …`.
        let key_columns: Vec<String> = req
            .identity
            .iter()
            .enumerate()
            .map(|(n, i)| format!("k{n} {}", req.schema.fields[*i].field_type.postgres_name()))
            .collect();
        let key_matches: Vec<String> =
            req.identity.iter().enumerate().map(|(n, i)| format!("t.{} = k.k{n}", targets[*i])).collect();
        let key_matches = key_matches.join(" and ");
        let staged = matched("s", &|n| format!("c{}", req.identity[n]));
        let apply = match (req.mode, req.identity.is_empty()) {
            (SyncMode::Append | SyncMode::Snapshot, _) => vec![insert],
            (SyncMode::Remove, _) => vec![],
            (_, true) => return Err(ConnectorError::config(format!("mode {} needs an identity", req.mode.as_str()))),
            (mode, false) => {
                let others: Vec<usize> = (0..targets.len()).filter(|i| !req.identity.contains(i)).collect();
                let set = |value: &dyn Fn(usize) -> String| -> Vec<String> {
                    others
                        .iter()
                        .map(|i| match shaping.fill_only.contains(&values.targets[*i]) {
                            true => format!("{0} = coalesce(t.{0}, {1})", targets[*i], value(*i)),
                            false => format!("{} = {}", targets[*i], value(*i)),
                        })
                        .collect()
                };
                let found = if plain { matches.clone() } else { staged.chosen("s") };
                let update = (!others.is_empty()).then(|| {
                    let set = set(&|i| values.exprs[i].clone());
                    format!("update {table} as t set {} from {STAGE} as s where {found}{target_filter}", set.join(", "))
                });
                let conflict = identity.iter().map(|t| quote_ident(t)).collect::<Vec<_>>().join(", ");
                let insert_new = match (unique, plain) {
                    (true, _) => format!("{insert} on conflict ({conflict}) do nothing"),
                    (false, true) => format!("{insert} where not exists (select 1 from {table} as t where {matches})"),
                    (false, false) => format!("{insert} where s.{LEVEL} is null"),
                };
                let levels = if plain { vec![] } else { staged.assign(STAGE, "s", &table) };
                match mode {
                    SyncMode::Create => levels.into_iter().chain([insert_new]).collect(),
                    SyncMode::Update => levels.into_iter().chain(update).collect(),
                    _ if unique && !others.is_empty() => {
                        let set = set(&|i| format!("excluded.{}", targets[i]));
                        let filter =
                            target_filter.strip_prefix(" and ").map(|f| format!(" where {f}")).unwrap_or_default();
                        vec![format!("{insert} on conflict ({conflict}) do update set {}{filter}", set.join(", "))]
                    }
                    _ => levels.into_iter().chain(update).chain([insert_new]).collect(),
                }
            }
        };
        // Preparing each statement checks the mapping's types against the table up front.
        for statement in &apply {
            conn.interactive(client.prepare(statement)).await.map_err(|e| match e.class {
                ErrorClass::Config | ErrorClass::Permanent => e.context(&req.object),
                _ => e,
            })?;
        }
        let delete = match req.mode {
            SyncMode::Replace | SyncMode::Remove => {
                let create = format!("create temporary table {KEYS} ({}, {LEVEL} int)", key_columns.join(", "));
                conn.interactive(client.batch_execute(&create)).await?;
                let keyed = matched("k", &|n| format!("k{n}"));
                let found = if plain { key_matches.clone() } else { keyed.chosen("k") };
                let delete = format!("delete from {table} as t using {KEYS} as k where {found}{target_filter}");
                let levels = if plain { vec![] } else { keyed.assign(KEYS, "k", &table) };
                Some(levels.into_iter().chain([delete]).collect())
            }
            _ => None,
        };
        let whole_run = req.mode == SyncMode::Snapshot;
        if whole_run {
            conn.interactive(client.batch_execute(&format!("begin; delete from {table}"))).await?;
        }
        let verification = (!req.identity.is_empty()).then(|| {
            let differs = (0..values.targets.len())
                .filter(|i| !req.identity.contains(i))
                .map(|i| {
                    let (target, expr) = (&values.targets[i], &values.exprs[i]);
                    let data_type = column(target).map(|c| c.data_type.clone()).unwrap_or_default();
                    let quoted = quote_ident(target);
                    let differs = match (shaping.fill_only.contains(target), data_type.as_str()) {
                        (true, _) => format!("t.{quoted} is null and ({expr}) is not null"),
                        (false, "json" | "jsonb") => {
                            format!("cast(({expr}) as jsonb) is distinct from cast(t.{quoted} as jsonb)")
                        }
                        (false, _) => format!("cast(({expr}) as {data_type}) is distinct from t.{quoted}"),
                    };
                    (target.clone(), differs)
                })
                .collect();
            Verification::new(VerificationParts {
                stage: VERIFY,
                keys: VERIFY_KEYS,
                table: &table,
                matches: &matches,
                key_matches: &key_matches,
                matched: (!plain)
                    .then(|| (matched("s", &|n| format!("c{}", req.identity[n])), matched("k", &|n| format!("k{n}")))),
                identity_column: &targets[req.identity[0]],
                differs,
                target_filter: shaping
                    .target_filter
                    .as_ref()
                    .map(|p| predicate::render(p, &|f| format!("t.{}", quote_ident(f)), &Postgres)),
                mode: req.mode,
            })
        });
        let listed =
            |prefix: &str, count: usize| (0..count).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>().join(", ");
        let (staged_columns, keyed_columns) = (listed("c", req.schema.fields.len()), listed("k", req.identity.len()));
        let copy_stage = format!("copy {STAGE} ({staged_columns}) from stdin (format binary)");
        let copy_keys = format!("copy {KEYS} ({keyed_columns}) from stdin (format binary)");
        let read_back = verification.map(|verification| {
            // Records written as sent into columns of their own binary format read back as sent.
            let compared: Vec<usize> = (0..req.targets.len()).filter(|i| !req.identity.contains(i)).collect();
            let bytewise = (plain && shaping.is_plain() && compared.iter().all(|i| as_is[*i])).then(|| {
                let columns: String = compared.iter().map(|i| format!(", t.{}", targets[*i])).collect();
                let identity = &targets[req.identity[0]];
                let integer = matches!(
                    req.schema.fields[req.identity[0]].field_type,
                    FieldType::Int16 | FieldType::Int32 | FieldType::Int64
                );
                Bytewise {
                    range: (req.identity.len() == 1 && integer && as_is[req.identity[0]])
                        .then(|| format!("select t.{identity}{columns} from {table} as t where t.{identity} between ")),
                    copy_out: format!(
                        "copy (select k.ord, t.{identity} is not null{columns} from {VERIFY_KEYS} as k left join {table} as t
                         on {key_matches}) to stdout (format binary)"
                    ),
                    fields: compared.iter().map(|i| (*i, into_jsonb[*i])).collect(),
                }
            });
            let numbered = "ord bigint generated always as identity (minvalue 0 start with 0)";
            Arc::new(ReadBack {
                connect: (conn.ctx.clone(), config.clone()),
                create: format!(
                    "create temporary table {VERIFY} ({}, {LEVEL} int, {numbered});
                     create temporary table {VERIFY_KEYS} ({}, {LEVEL} int, ord bigint)",
                    stage_columns.join(", "),
                    key_columns.join(", ")
                ),
                verification,
                identity: req.identity.clone(),
                copy_records: format!("copy {VERIFY} ({staged_columns}) from stdin (format binary)"),
                copy_keys: format!("copy {VERIFY_KEYS} ({keyed_columns}, ord) from stdin (format binary)"),
                bytewise,
            })
        });
        Ok(Self { conn, apply, direct, jsonb, delete, copy_stage, copy_keys, whole_run, read_back })
    }

    /// Runs `statement` (a `COPY … FROM STDIN (FORMAT binary)`) with `tuples` as its data.
    async fn copy(&self, statement: &str, tuples: Bytes) -> Result<(), tokio_postgres::Error> {
        copy::copy_in(&self.conn.client, statement, tuples).await
    }

    /// Copies a batch of new records straight into the table; `false` if the database refused
    /// (a record already exists, or breaks a constraint), with nothing written.
    async fn copy_new(&self, statement: &str, batch: &RecordBatch) -> Result<bool, ConnectorError> {
        let data = match &self.jsonb {
            Some(jsonb) => with_jsonb_versions(batch, jsonb)?,
            None => batch.data().clone(),
        };
        self.conn.client.batch_execute("savepoint syncline_direct").await.map_err(|e| client::error(&e))?;
        match self.copy(statement, data).await {
            Ok(()) => {
                self.conn
                    .client
                    .batch_execute("release savepoint syncline_direct")
                    .await
                    .map_err(|e| client::error(&e))?;
                Ok(true)
            }
            Err(e) if client::is_data_error(&e) => {
                self.conn
                    .client
                    .batch_execute("rollback to savepoint syncline_direct; release savepoint syncline_direct")
                    .await
                    .map_err(|e| client::error(&e))?;
                Ok(false)
            }
            Err(e) => Err(client::error(&e)),
        }
    }

    /// Stages and applies records `range` inside a savepoint; bisects on a data error.
    async fn apply_range(
        &self,
        batch: &RecordBatch,
        range: std::ops::Range<usize>,
        failures: &mut Vec<RecordFailure>,
    ) -> Result<(), ConnectorError> {
        let mut bisection = Bisection::new(range);
        while let Some(range) = bisection.next() {
            self.conn.client.batch_execute("savepoint syncline_batch").await.map_err(|e| client::error(&e))?;
            let attempt = async {
                self.copy(&self.copy_stage, batch.slice_data(range.clone())).await?;
                for statement in &self.apply {
                    self.conn.client.execute(statement.as_str(), &[]).await?;
                }
                self.conn.client.batch_execute(&format!("truncate {STAGE}")).await
            };
            match attempt.await {
                Ok(()) => self
                    .conn
                    .client
                    .batch_execute("release savepoint syncline_batch")
                    .await
                    .map_err(|e| client::error(&e))?,
                Err(e) if client::is_data_error(&e) => {
                    self.conn
                        .client
                        .batch_execute("rollback to savepoint syncline_batch; release savepoint syncline_batch")
                        .await
                        .map_err(|e| client::error(&e))?;
                    bisection.rejected(range, client::message(&e));
                }
                Err(e) => return Err(client::error(&e)),
            }
        }
        failures.extend(bisection.into_failures());
        Ok(())
    }
}

/// The tuples of `batch` with jsonb's version byte before the values of the fields `jsonb` marks.
fn with_jsonb_versions(batch: &RecordBatch, jsonb: &[bool]) -> Result<Bytes, ConnectorError> {
    let capacity = batch.data().len() + batch.len() * jsonb.len();
    let mut out = RecordBatchBuilder::with_capacity(batch.schema().clone(), capacity);
    for record in batch.records() {
        let mut values = record.raw_values().zip(jsonb);
        out.push_encoded(|_, out| {
            let Some((Some(value), versioned)) = values.next() else { return Ok(false) };
            if *versioned {
                out.put_u8(1);
            }
            out.put_slice(value);
            Ok(true)
        })
        .map_err(|e| ConnectorError::permanent(e.to_string()))?;
    }
    Ok(out.finish().data().clone())
}

#[async_trait]
impl BatchWriter for PostgresWriter {
    async fn write(&mut self, batch: &WriteBatch) -> Result<Vec<RecordFailure>, ConnectorError> {
        let records = &batch.records;
        let mut failures = Vec::new();
        if records.is_empty() {
            return Ok(failures);
        }
        let new_records = match &batch.operations {
            Operations::All(Operation::Delete) => return self.delete(records).await.map(|()| failures),
            Operations::All(op) => *op == Operation::Insert,
            Operations::Each(ops) if ops.contains(&Operation::Delete) => {
                return Err(ConnectorError::permanent("a batch mixes deletes with other operations"));
            }
            Operations::Each(ops) => ops.iter().all(|op| *op == Operation::Insert),
        };
        // Dropped before the commit (a cancel, the deadline), the transaction never commits and
        // the server is asked to stop the statement in flight.
        let this = &*self;
        let work = async {
            if !this.whole_run {
                this.conn.client.batch_execute("begin").await.map_err(|e| client::error(&e))?;
            }
            let result = match &this.direct {
                Some(direct) if new_records => match this.copy_new(direct, records).await {
                    Ok(true) => Ok(()),
                    Ok(false) => this.apply_range(records, 0..records.len(), &mut failures).await,
                    Err(e) => Err(e),
                },
                _ => this.apply_range(records, 0..records.len(), &mut failures).await,
            };
            if !this.whole_run {
                let end = if result.is_ok() { "commit" } else { "rollback" };
                this.conn.client.batch_execute(end).await.map_err(|e| client::error(&e))?;
            }
            result
        };
        self.conn.guard(self.conn.ctx.deadlines.idle, work).await?;
        Ok(failures)
    }

    async fn finish(&mut self) -> Result<(), ConnectorError> {
        if !self.whole_run {
            return Ok(());
        }
        let commit = async { self.conn.client.batch_execute("commit").await.map_err(|e| client::error(&e)) };
        self.conn.guard(self.conn.ctx.deadlines.idle, commit).await
    }

    async fn verifier(&mut self) -> Result<Option<Box<dyn Verifier>>, ConnectorError> {
        let Some(read_back) = &self.read_back else { return Ok(None) };
        Ok(Some(Box::new(PostgresVerifier::open(read_back.clone()).await?)))
    }
}

impl PostgresWriter {
    /// Deletes the records whose identities `keys` holds.
    async fn delete(&self, keys: &RecordBatch) -> Result<(), ConnectorError> {
        let Some(delete) = &self.delete else {
            return Err(ConnectorError::config("deletes are only written in replace and remove modes"));
        };
        let run = async {
            self.conn.client.batch_execute("begin").await?;
            self.copy(&self.copy_keys, keys.data().clone()).await?;
            for statement in delete {
                self.conn.client.execute(statement.as_str(), &[]).await?;
            }
            self.conn.client.batch_execute(&format!("truncate {KEYS}; commit")).await
        };
        let run = async {
            match run.await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let _ = self.conn.client.batch_execute("rollback").await;
                    Err(client::error(&e))
                }
            }
        };
        self.conn.guard(self.conn.ctx.deadlines.idle, run).await
    }
}
