//! Writing to tables. When the identity is the table's only unique key, a batch is written with
//! multi-row `INSERT … ON DUPLICATE KEY UPDATE`; otherwise it is inserted into a temporary
//! staging table shaped like the target columns and applied with `UPDATE … JOIN` and
//! `INSERT … SELECT … WHERE NOT EXISTS`. A batch the server rejects is bisected under savepoints
//! until the bad records are isolated ([`Bisection`]); the rest of the batch is written.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use async_trait::async_trait;
use mysql_async::{Conn, Value as MyValue, prelude::Queryable};
use syncline_core::{
    connector::{
        Action, BatchWriter, ConnectorError, Context, CreateProperty, Destination, ErrorClass, InvalidProperty,
        ObjectSpec, Operation, Operations, ParameterValue, RecordFailure, SyncMode, TargetCreation, TargetField,
        TargetObject, Verifier, WriteBatch, WriteRequest,
    },
    record::{Field, FieldType, RecordBatch},
};

use super::{
    MysqlConfig,
    client::{self, Connection, guarded, quote_ident, quote_object, split_object},
    spelling::{self, Mysql},
    types::{self, ColumnInfo},
    verify::{MysqlVerifier, ReadBack},
};
use crate::{
    predicate,
    sql::{
        self, Bisection, LEVEL, Matched, NameLimit, ValueSpelling, Values, identity_match, shape_table, target_field,
    },
};

pub(super) struct MysqlDestination {
    ctx: Context,
    config: MysqlConfig,
}

impl MysqlDestination {
    pub(super) fn new(ctx: Context, config: MysqlConfig) -> Self {
        Self { ctx, config }
    }

    async fn connect(&self) -> Result<Connection, ConnectorError> {
        client::connect(&self.ctx, &self.config).await
    }
}

const MODES: &[SyncMode] = &SyncMode::ALL;

pub(super) struct Column {
    pub(super) name: String,
    column_type: String,
    pub(super) field_type: FieldType,
    required: bool,
}

/// The columns of table `database.table`; not found when there is no such table. A column's
/// field type is the one its comment names when a bulk sync created it (see
/// [`types::commented`]), else the one its declaration maps to.
pub(super) async fn columns(
    conn: &mut Connection,
    (database, table): (&str, &str),
) -> Result<Vec<Column>, ConnectorError> {
    let rows: Vec<(String, String, String, Option<String>, bool, String)> = conn
        .query(
            conn.ctx.deadlines.query,
            "select column_name, data_type, column_type, character_set_name,
                    is_nullable = 'NO' and column_default is null and extra = '', column_comment
             from information_schema.columns
             where table_schema = ? and table_name = ?
             order by ordinal_position",
            vec![database.into(), table.into()],
        )
        .await?;
    if rows.is_empty() {
        return Err(ConnectorError::not_found(format!("target object {database}.{table} does not exist")));
    }
    Ok(rows
        .into_iter()
        .map(|(name, data_type, column_type, charset, required, comment)| {
            let info = ColumnInfo::from_declared(&data_type, &column_type, charset.as_deref(), false);
            let field_type = types::commented(&comment).unwrap_or_else(|| types::field_type(&info));
            Column { name, field_type, column_type, required }
        })
        .collect())
}

/// Whether the table's unique keys are exactly one, on `identity` (in any order): then
/// `ON DUPLICATE KEY UPDATE` can only match a record by its identity.
async fn identity_is_the_unique_key(
    conn: &mut Connection,
    (database, table): (&str, &str),
    identity: &[&str],
) -> Result<bool, ConnectorError> {
    let rows: Vec<(String, String)> = conn
        .query(
            conn.ctx.deadlines.query,
            "select index_name, column_name from information_schema.statistics
             where table_schema = ? and table_name = ? and non_unique = 0",
            vec![database.into(), table.into()],
        )
        .await?;
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (index, column) in rows {
        keys.entry(index).or_default().insert(column);
    }
    let identity: BTreeSet<String> = identity.iter().map(|c| (*c).to_owned()).collect();
    Ok(keys.len() == 1 && keys.values().all(|columns| *columns == identity))
}

#[async_trait]
impl Destination for MysqlDestination {
    async fn target_objects(&self) -> Result<Vec<TargetObject>, ConnectorError> {
        let mut conn = self.connect().await?;
        let tables: Vec<String> = conn
            .query(
                self.ctx.deadlines.query,
                "select table_name from information_schema.tables
                 where table_schema = database() and table_type = 'BASE TABLE' order by 1",
                vec![],
            )
            .await?;
        let database = &self.config.database;
        Ok(tables.into_iter().map(|t| TargetObject { id: format!("{database}.{t}"), name: t }).collect())
    }

    async fn target_fields(&self, object: &str) -> Result<Vec<TargetField>, ConnectorError> {
        let mut conn = self.connect().await?;
        Ok(columns(&mut conn, split_object(object, &self.config.database))
            .await?
            .into_iter()
            .map(|c| target_field(c.name, c.field_type.api_name(), c.column_type, c.required))
            .collect())
    }

    async fn apply(&self, spec: &ObjectSpec, dry_run: bool) -> Result<Vec<Action>, ConnectorError> {
        let mut conn = self.connect().await?;
        let table = quote_object(&spec.object, &self.config.database);
        let mariadb = conn.mariadb;
        let column = |field: &Field| {
            let key = spec.key.contains(&field.name);
            format!("{} {}", quote_ident(&field.name), types::column_definition(&field.field_type, key, mariadb))
        };
        let existing = columns(&mut conn, split_object(&spec.object, &self.config.database)).await;
        let existing = existing.map(|cs| cs.into_iter().map(|c| c.name).collect());
        let statements = shape_table(&table, spec, existing, column, quote_ident, " default character set utf8mb4")?;
        if !dry_run {
            for statement in &statements {
                conn.query_drop(self.ctx.deadlines.query, statement).await?;
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
        let conn = self.connect().await?;
        Ok(Box::new(MysqlWriter::open(conn, &self.config, request).await?))
    }
}

const CREATE_PROPERTIES: &[CreateProperty] =
    &[CreateProperty { id: "database", title: "Database", listed: true }, sql::TABLE];

/// A new table is named by its database, one the user can see, and its name.
#[async_trait]
impl TargetCreation for MysqlDestination {
    fn properties(&self) -> &'static [CreateProperty] {
        CREATE_PROPERTIES
    }

    async fn values(&self, property: &str) -> Result<Vec<ParameterValue>, ConnectorError> {
        match property {
            "database" => self.connect().await?.databases().await,
            _ => Ok(Vec::new()),
        }
    }

    fn object(&self, values: &[&str]) -> Result<String, InvalidProperty> {
        sql::created_object(values, NameLimit::Chars(64))
    }
}

/// How a batch's records get into the table.
enum Plan {
    /// `{insert} VALUES (…), (…){tail}` straight into the table.
    Direct { insert: String, tail: String },
    /// Into the staging table, then `apply` statements in order, then the stage is emptied.
    Staged { insert: String, apply: Vec<String> },
}

const STAGE: &str = "syncline_stage";

struct MysqlWriter {
    conn: Connection,
    plan: Plan,
    /// How deletes are written (replace and remove modes).
    delete: Option<Deletes>,
    /// A transaction may be open: a write was dropped before it ended.
    dirty: bool,
    /// Snapshot mode: the run's writes share one transaction, begun when the writer opened
    /// (with the old contents deleted) and committed by [`BatchWriter::finish`].
    whole_run: bool,
    /// How written records are read back and compared (`None` without an identity).
    read_back: Option<Arc<ReadBack>>,
}

/// How a writer deletes records by identity.
enum Deletes {
    /// `DELETE FROM table WHERE (` and the match of one identity, repeated `OR`.
    Listed { head: String, group: String },
    /// The keys go into a staging table first, found by their chosen matches (see
    /// [`Matched`]), then `statements` run.
    Staged { insert: String, statements: Vec<String> },
}

const KEYS: &str = "syncline_keys";

/// Deletes that find records by priority or by identity functions other than equality.
async fn keyed_deletes(conn: &mut Connection, req: &WriteRequest, table: &str) -> Result<Deletes, ConnectorError> {
    let identity: Vec<String> = req.identity.iter().map(|i| quote_ident(&req.targets[*i])).collect();
    let limit = conn.ctx.deadlines.query;
    let create = format!(
        "create temporary table {KEYS} engine = InnoDB as select {} from {table} where false",
        identity.join(", ")
    );
    conn.query_drop(limit, &create).await?;
    conn.query_drop(limit, &format!("alter table {KEYS} add column {LEVEL} int")).await?;
    let keyed = matched(req, "k", None);
    let filter = target_filter(req, "t.").map(|f| format!(" and ({f})")).unwrap_or_default();
    let delete = format!("delete t from {table} as t join {KEYS} as k on {}{filter}", keyed.chosen("k"));
    let statements =
        keyed.assign(KEYS, "k", table).into_iter().chain([delete, format!("delete from {KEYS}")]).collect();
    Ok(Deletes::Staged { insert: format!("insert into {KEYS} ({}) values ", identity.join(", ")), statements })
}

/// The matches of staged records (`alias`) by the request's identity functions and strategy;
/// `column` names the staged column of identity field `n` (`None`: the target's own name).
pub(super) fn matched(req: &WriteRequest, alias: &str, column: Option<&dyn Fn(usize) -> String>) -> Matched {
    Matched::new(&req.matching, req.identity.len(), |n| {
        let target = quote_ident(&req.targets[req.identity[n]]);
        let staged = column.map_or_else(|| target.clone(), |column| column(n));
        identity_match(req.matching.function(n), &format!("t.{target}"), &format!("{alias}.{staged}"), &|x| {
            format!("lower({x})")
        })
    })
}

impl MysqlWriter {
    async fn open(mut conn: Connection, config: &MysqlConfig, req: WriteRequest) -> Result<Self, ConnectorError> {
        let (database, strict) = (config.database.as_str(), config.strict);
        let object = split_object(&req.object, database);
        let target_columns = columns(&mut conn, object).await?;
        for target in &req.targets {
            if !target_columns.iter().any(|c| &c.name == target) {
                return Err(ConnectorError::config(format!("field {target:?} does not exist on {}", req.object)));
            }
        }
        let limit = conn.ctx.deadlines.query;
        // Values that do not fit their column fail their record instead of being cut to fit,
        // unless the connection asks for the server's non-strict ways.
        let sql_mode = match strict {
            true => "set session sql_mode = concat_ws(',', nullif(@@sql_mode, ''), 'STRICT_ALL_TABLES')",
            false => {
                "set session sql_mode = trim(both ',' from replace(replace(concat(',', @@sql_mode, ','),
                    ',STRICT_TRANS_TABLES,', ','), ',STRICT_ALL_TABLES,', ','))"
            }
        };
        conn.query_drop(limit, sql_mode).await?;

        let table = quote_object(&req.object, database);
        let targets: Vec<String> = req.targets.iter().map(|t| quote_ident(t)).collect();
        let names = targets.join(", ");
        let identity: Vec<&str> = req.identity.iter().map(|i| req.targets[*i].as_str()).collect();
        let others: Vec<usize> = (0..targets.len()).filter(|i| !req.identity.contains(i)).collect();
        let matching = req.matching.is_plain();
        let unique =
            matching && !identity.is_empty() && identity_is_the_unique_key(&mut conn, object, &identity).await?;
        let plain = req.shaping.is_plain() && matching;
        let direct = |tail: String| Plan::Direct { insert: format!("insert into {table} ({names})"), tail };
        // Leaves a matched record as it is.
        let keep = || format!(" on duplicate key update {0} = {0}", targets[req.identity[0]]);
        let plan = match (req.mode, unique && plain) {
            (SyncMode::Append | SyncMode::Snapshot, _) if plain => direct(String::new()),
            (mode, _) if req.identity.is_empty() && mode.requires_identity() => {
                return Err(ConnectorError::config(format!("mode {} needs an identity", mode.as_str())));
            }
            (SyncMode::Create, true) => direct(keep()),
            (SyncMode::UpdateOrCreate | SyncMode::Replace, true) if others.is_empty() => direct(keep()),
            (SyncMode::UpdateOrCreate | SyncMode::Replace, true) => {
                let set: Vec<String> = others.iter().map(|i| format!("{0} = values({0})", targets[*i])).collect();
                direct(format!(" on duplicate key update {}", set.join(", ")))
            }
            (mode, _) => staged(&mut conn, &req, &table, mode).await?,
        };
        // Preparing each statement checks the mapping against the table up front.
        let one_row = format!(" values ({})", vec!["?"; targets.len()].join(", "));
        let statements = match &plan {
            Plan::Direct { insert, tail } => vec![format!("{insert}{one_row}{tail}")],
            Plan::Staged { insert, apply } => [format!("{insert}{one_row}")].into_iter().chain(apply.clone()).collect(),
        };
        for statement in &statements {
            conn.columns(statement).await.map_err(|e| match e.class {
                ErrorClass::Config | ErrorClass::Permanent => e.context(&req.object),
                _ => e,
            })?;
        }
        let delete = match (matches!(req.mode, SyncMode::Replace | SyncMode::Remove), matching) {
            (false, _) => None,
            (true, true) => {
                let matches: Vec<String> = req.identity.iter().map(|i| format!("{} = ?", targets[*i])).collect();
                let head = match target_filter(&req, "") {
                    Some(filter) => format!("delete from {table} where ({filter}) and ("),
                    None => format!("delete from {table} where ("),
                };
                Some(Deletes::Listed { head, group: format!("({})", matches.join(" and ")) })
            }
            (true, false) => Some(keyed_deletes(&mut conn, &req, &table).await?),
        };
        let whole_run = req.mode == SyncMode::Snapshot;
        if whole_run {
            conn.query_drop(limit, "start transaction").await?;
            conn.query_drop(limit, &format!("delete from {table}")).await?;
        }
        let read_back = (!req.identity.is_empty()).then(|| {
            Arc::new(ReadBack::new((conn.ctx.clone(), config.clone()), conn.mariadb, &req, &table, &target_columns))
        });
        Ok(Self { conn, plan, delete, dirty: false, whole_run, read_back })
    }
}

/// The SQL of the request's target filters over the table's columns, each prefixed with
/// `alias` (`t.`, or nothing).
pub(super) fn target_filter(req: &WriteRequest, alias: &str) -> Option<String> {
    let column = |field: &str| format!("{alias}{}", quote_ident(field));
    req.shaping.target_filter.as_ref().map(|p| predicate::render(p, &column, &Mysql))
}

/// Writing through a staging table shaped like the target columns, so values that do not fit
/// fail there with the messages the table would give, then applying it with set-based SQL.
async fn staged(
    conn: &mut Connection,
    req: &WriteRequest,
    table: &str,
    mode: SyncMode,
) -> Result<Plan, ConnectorError> {
    let targets: Vec<String> = req.targets.iter().map(|t| quote_ident(t)).collect();
    let names = targets.join(", ");
    let create = format!("create temporary table {STAGE} engine = InnoDB as select {names} from {table} where false");
    conn.query_drop(conn.ctx.deadlines.query, &create).await?;
    let plain = req.matching.is_plain();
    if !plain {
        conn.query_drop(conn.ctx.deadlines.query, &format!("alter table {STAGE} add column {LEVEL} int")).await?;
    }
    let staged_match = matched(req, "s", None);
    let values = Values::of(
        req,
        &ValueSpelling {
            staged: &|i| format!("s.{}", targets[i]),
            replacement: &|_, value| spelling::constant(value),
            constant: &|_, value| spelling::constant(value),
            spelling: &Mysql,
        },
    );
    let all_targets: Vec<String> = values.targets.iter().map(|t| quote_ident(t)).collect();
    let insert = format!(
        "insert into {table} ({}) select {} from {STAGE} as s",
        all_targets.join(", "),
        values.exprs.join(", ")
    );
    let matches: Vec<String> = req.identity.iter().map(|i| format!("t.{0} = s.{0}", targets[*i])).collect();
    let matches = matches.join(" and ");
    let others: Vec<usize> = (0..all_targets.len()).filter(|i| !req.identity.contains(i)).collect();
    let update = (!others.is_empty()).then(|| {
        let set: Vec<String> = others
            .iter()
            .map(|i| match req.shaping.fill_only.contains(&values.targets[*i]) {
                true => format!("t.{0} = coalesce(t.{0}, {1})", all_targets[*i], values.exprs[*i]),
                false => format!("t.{} = {}", all_targets[*i], values.exprs[*i]),
            })
            .collect();
        let filter = target_filter(req, "t.").map(|f| format!(" where {f}")).unwrap_or_default();
        let found = if plain { matches.clone() } else { staged_match.chosen("s") };
        format!("update {table} as t join {STAGE} as s on {found} set {}{filter}", set.join(", "))
    });
    let insert_new = || match plain {
        true => format!("{insert} where not exists (select 1 from {table} as t where {matches})"),
        false => format!("{insert} where s.{LEVEL} is null"),
    };
    let levels = if plain { vec![] } else { staged_match.assign(STAGE, "s", table) };
    let apply = match mode {
        SyncMode::Append | SyncMode::Snapshot => vec![insert],
        SyncMode::Remove => vec![],
        SyncMode::Create => levels.into_iter().chain([insert_new()]).collect(),
        SyncMode::Update => levels.into_iter().chain(update).collect(),
        SyncMode::UpdateOrCreate | SyncMode::Replace => {
            levels.into_iter().chain(update).chain([insert_new()]).collect()
        }
    };
    Ok(Plan::Staged { insert: format!("insert into {STAGE} ({names})"), apply })
}

/// At most this many records go in one statement, and at most [`CHUNK_BYTES`] of values (the
/// server refuses packets over `max_allowed_packet`, 16 MiB by default).
const CHUNK_ROWS: usize = 1000;
const CHUNK_BYTES: usize = 4 << 20;
/// Placeholders a prepared statement can have.
const MAX_PARAMS: usize = 65_535;

/// Splits `rows` into runs for one statement each.
fn chunks(rows: &[Vec<MyValue>]) -> Vec<&[Vec<MyValue>]> {
    let width = rows.first().map_or(1, Vec::len).max(1);
    let most = CHUNK_ROWS.min(MAX_PARAMS / width).max(1);
    let size =
        |row: &Vec<MyValue>| -> usize { row.iter().map(|v| if let MyValue::Bytes(b) = v { b.len() } else { 8 }).sum() };
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        if i > start && (i - start == most || bytes + size(row) > CHUNK_BYTES) {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size(row);
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// Runs `{head}{group}{separator}{group}…{tail}` with one group of placeholders per row, in
/// chunks.
pub(super) async fn run_chunked(
    conn: &mut Conn,
    head: &str,
    group: &str,
    separator: &str,
    tail: &str,
    rows: &[Vec<MyValue>],
) -> Result<(), mysql_async::Error> {
    for chunk in chunks(rows) {
        let sql = format!("{head}{}{tail}", vec![group; chunk.len()].join(separator));
        conn.exec_drop(sql, chunk.concat()).await?;
    }
    Ok(())
}

impl Plan {
    /// Writes `rows`; a data error leaves the caller to roll back to its savepoint.
    async fn write(&self, conn: &mut Conn, rows: &[Vec<MyValue>]) -> Result<(), mysql_async::Error> {
        let width = rows.first().map_or(0, Vec::len);
        let group = format!("({})", vec!["?"; width].join(", "));
        match self {
            Plan::Direct { insert, tail } => {
                run_chunked(conn, &format!("{insert} values "), &group, ", ", tail, rows).await
            }
            Plan::Staged { insert, apply } => {
                run_chunked(conn, &format!("{insert} values "), &group, ", ", "", rows).await?;
                for statement in apply {
                    conn.query_drop(statement).await?;
                }
                conn.query_drop(format!("delete from {STAGE}")).await
            }
        }
    }
}

/// The values of every record as statement parameters, and the records that do not decode.
pub(super) fn parameters(records: &RecordBatch) -> (Vec<Vec<MyValue>>, Vec<usize>, Vec<RecordFailure>) {
    let (mut rows, mut positions, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for record in records.records() {
        match record.values() {
            Ok(values) => {
                rows.push(values.iter().map(types::to_mysql).collect());
                positions.push(record.index());
            }
            Err(e) => failures.push(RecordFailure { index: record.index(), message: e.to_string() }),
        }
    }
    (rows, positions, failures)
}

#[async_trait]
impl BatchWriter for MysqlWriter {
    async fn write(&mut self, batch: &WriteBatch) -> Result<Vec<RecordFailure>, ConnectorError> {
        let records = &batch.records;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match &batch.operations {
            Operations::All(Operation::Delete) => return self.delete(records).await.map(|()| Vec::new()),
            Operations::Each(ops) if ops.contains(&Operation::Delete) => {
                return Err(ConnectorError::permanent("a batch mixes deletes with other operations"));
            }
            _ => {}
        }
        let (rows, positions, mut failures) = parameters(records);
        let (guard, idle) = (self.conn.kill_on_drop(), self.conn.ctx.deadlines.idle);
        let (conn, plan, dirty, whole_run) = (&mut self.conn.conn, &self.plan, &mut self.dirty, self.whole_run);
        let work = async {
            if !whole_run {
                begin(conn, dirty).await?;
            }
            let mut bisection = Bisection::new(0..rows.len());
            while let Some(range) = bisection.next() {
                conn.query_drop("savepoint syncline_batch").await?;
                match plan.write(conn, &rows[range.clone()]).await {
                    Ok(()) => conn.query_drop("release savepoint syncline_batch").await?,
                    Err(e) if client::is_data_error(&e) => {
                        conn.query_drop("rollback to savepoint syncline_batch").await?;
                        bisection.rejected(range, client::message(&e));
                    }
                    Err(e) => return Err(e),
                }
            }
            if !whole_run {
                conn.query_drop("commit").await?;
                *dirty = false;
            }
            Ok(bisection.into_failures())
        };
        let written = guarded(guard, idle, work).await?;
        failures.extend(written.into_iter().map(|f| RecordFailure { index: positions[f.index], ..f }));
        failures.sort_by_key(|f| f.index);
        Ok(failures)
    }

    async fn finish(&mut self) -> Result<(), ConnectorError> {
        if !self.whole_run {
            return Ok(());
        }
        let (guard, idle) = (self.conn.kill_on_drop(), self.conn.ctx.deadlines.idle);
        let conn = &mut self.conn.conn;
        guarded(guard, idle, async { conn.query_drop("commit").await }).await
    }

    async fn verifier(&mut self) -> Result<Option<Box<dyn Verifier>>, ConnectorError> {
        let Some(read_back) = &self.read_back else { return Ok(None) };
        Ok(Some(Box::new(MysqlVerifier::open(read_back.clone()).await?)))
    }
}

/// Starts a transaction, first rolling back one a dropped write left open.
async fn begin(conn: &mut Conn, dirty: &mut bool) -> Result<(), mysql_async::Error> {
    if *dirty {
        conn.query_drop("rollback").await?;
    }
    *dirty = true;
    conn.query_drop("start transaction").await
}

impl MysqlWriter {
    /// Deletes the records whose identities `keys` holds.
    async fn delete(&mut self, keys: &RecordBatch) -> Result<(), ConnectorError> {
        let Some(deletes) = &self.delete else {
            return Err(ConnectorError::config("deletes are only written in replace and remove modes"));
        };
        let (rows, _, failures) = parameters(keys);
        if let Some(failure) = failures.first() {
            return Err(ConnectorError::permanent(failure.message.clone()));
        }
        let (guard, idle) = (self.conn.kill_on_drop(), self.conn.ctx.deadlines.idle);
        let (conn, dirty) = (&mut self.conn.conn, &mut self.dirty);
        let work = async {
            begin(conn, dirty).await?;
            match deletes {
                Deletes::Listed { head, group } => run_chunked(conn, head, group, " or ", ")", &rows).await?,
                Deletes::Staged { insert, statements } => {
                    let group = format!("({})", vec!["?"; rows.first().map_or(1, Vec::len)].join(", "));
                    run_chunked(conn, insert, &group, ", ", "", &rows).await?;
                    for statement in statements {
                        conn.query_drop(statement).await?;
                    }
                }
            }
            conn.query_drop("commit").await?;
            *dirty = false;
            Ok(())
        };
        guarded(guard, idle, work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_bound_rows_parameters_and_bytes() {
        let rows: Vec<Vec<MyValue>> = (0..2500).map(|i| vec![MyValue::Int(i), MyValue::NULL]).collect();
        let sizes: Vec<usize> = chunks(&rows).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let wide: Vec<Vec<MyValue>> = (0..10).map(|_| vec![MyValue::NULL; 10_000]).collect();
        assert!(chunks(&wide).iter().all(|c| c.len() * 10_000 <= MAX_PARAMS));
        let big: Vec<Vec<MyValue>> = (0..5).map(|_| vec![MyValue::Bytes(vec![0; 3 << 20])]).collect();
        assert_eq!(chunks(&big).len(), 5, "one 3 MiB row per statement");
        assert!(chunks(&[]).is_empty());
    }
}
