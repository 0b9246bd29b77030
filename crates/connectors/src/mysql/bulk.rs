//! MySQL and MariaDB as a bulk sync destination. A partition is one transaction: its rows go in
//! with prepared multi-row `INSERT`s of up to 1,000 rows and 4 MiB each (well within the
//! default `max_allowed_packet`) — `INSERT … ON DUPLICATE KEY UPDATE` on the table's primary key
//! when they are upserted — and its marker goes into `<database>._syncline_loads` before the
//! commit. `LOAD DATA LOCAL INFILE` loads about twice as fast (200,000 rows of 12 columns into
//! MariaDB 10.11: 1.0 s against 2.1 s; statements of 5,000 rows are no faster than of 1,000) but
//! is not used: with `LOCAL` the server turns errors into warnings even in strict mode (a
//! duplicate key is skipped, 123456.78 is stored as 999.99 in a `DECIMAL(5,2)`), it cannot
//! upsert without a staging table, and MySQL 8 refuses it unless `local_infile` is turned on.
//!
//! Tables are created with the column types of [`types::column_definition`], each column
//! commented with its field type ([`types::comment`]), so [`BulkDestination::columns`] reads the
//! fields back as the sync created them. Shadow tables are swapped in with one `RENAME TABLE`
//! of both tables, which is atomic.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use mysql_async::{Value as MyValue, prelude::Queryable};
use syncline_core::{
    connector::{
        BulkDestination, Committed, ConnectorError, Context, ErrorClass, KeyStream, Keys, LoadMode, LoadRequest,
        Loader, ObjectSpec, TableSpec,
    },
    record::{Field, RecordBatch, Schema},
};
use uuid::Uuid;

use super::{
    MysqlConfig,
    client::{self, Connection, guarded, quote_ident, quote_object, split_object},
    destination::{columns, parameters, run_chunked},
    types,
};
use crate::sql::shape_table;

/// The table of committed loads, in the database of the tables they loaded.
const MARKERS: &str = "_syncline_loads";
/// How long markers are kept: far longer than any partition can wait for its commit to be
/// recorded.
const MARKER_DAYS: u32 = 7;
/// The temporary table of the keys a sweep or a delete compares with.
const KEYS: &str = "syncline_keys";
/// The temporary table of the rows an update load changes the table's rows with.
const UPDATES: &str = "syncline_updates";
/// Values that do not fit their column fail the load instead of being cut to fit.
const STRICT: &str = "set session sql_mode = concat_ws(',', nullif(@@sql_mode, ''), 'STRICT_ALL_TABLES')";

pub(super) struct MysqlBulk {
    ctx: Context,
    config: MysqlConfig,
}

impl MysqlBulk {
    pub(super) fn new(ctx: Context, config: MysqlConfig) -> Self {
        Self { ctx, config }
    }

    async fn connect(&self) -> Result<Connection, ConnectorError> {
        client::connect(&self.ctx, &self.config).await
    }

    /// `database.table`, quoted.
    fn quoted(&self, table: &str) -> String {
        quote_object(table, &self.config.database)
    }

    /// The markers table of `table`'s database, quoted.
    fn markers(&self, table: &str) -> String {
        let (database, _) = split_object(table, &self.config.database);
        format!("{}.{MARKERS}", quote_ident(database))
    }

    /// The fields of `table`, or `None` when it does not exist.
    async fn fields(&self, conn: &mut Connection, table: &str) -> Result<Option<Vec<Field>>, ConnectorError> {
        match columns(conn, split_object(table, &self.config.database)).await {
            Ok(columns) => {
                Ok(Some(columns.into_iter().map(|c| Field { name: c.name, field_type: c.field_type }).collect()))
            }
            Err(e) if e.class == ErrorClass::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `statements` in order within the idle deadline.
    async fn execute(&self, statements: &[String]) -> Result<(), ConnectorError> {
        let mut conn = self.connect().await?;
        for statement in statements {
            conn.query_drop(self.ctx.deadlines.idle, statement).await?;
        }
        Ok(())
    }

    /// One number a query returns, within the idle deadline.
    async fn number(&self, conn: &mut Connection, sql: &str) -> Result<u64, ConnectorError> {
        let rows: Vec<u64> = conn.query(self.ctx.deadlines.idle, sql, vec![]).await?;
        Ok(rows.first().copied().unwrap_or(0))
    }
}

/// `t.a = k.a and …` over the quoted `key`.
fn key_match(key: &[String], left: &str, right: &str) -> String {
    let matches: Vec<String> = key.iter().map(|k| format!("{left}.{k} = {right}.{k}")).collect();
    matches.join(" and ")
}

/// The first of the quoted `key` columns of `table`, which rows without a match lack.
fn first_key<'a>(key: &'a [String], table: &str) -> Result<&'a str, ConnectorError> {
    key.first()
        .map(String::as_str)
        .ok_or_else(|| ConnectorError::config(format!("{table} has no key to match rows by")))
}

/// The values of every record of `batch` as statement parameters; a record that does not
/// decode fails the whole batch, naming it.
fn values(batch: &RecordBatch) -> Result<Vec<Vec<MyValue>>, ConnectorError> {
    let (rows, _, failures) = parameters(batch);
    match failures.first() {
        Some(failure) => Err(ConnectorError::permanent(format!("record {}: {}", failure.index, failure.message))),
        None => Ok(rows),
    }
}

/// `text` as a SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

#[async_trait]
impl BulkDestination for MysqlBulk {
    /// The connection's database.
    fn default_schema(&self) -> &str {
        &self.config.database
    }

    async fn columns(&self, table: &str) -> Result<Option<Vec<Field>>, ConnectorError> {
        let mut conn = self.connect().await?;
        self.fields(&mut conn, table).await
    }

    async fn shape(&self, spec: &TableSpec) -> Result<(), ConnectorError> {
        let mut conn = self.connect().await?;
        let (database, name) = split_object(&spec.table, &self.config.database);
        let existing = columns(&mut conn, (database, name)).await.map(|cs| cs.into_iter().map(|c| c.name).collect());
        let object = ObjectSpec { object: spec.table.clone(), fields: spec.fields.clone(), key: spec.key.clone() };
        let mariadb = conn.mariadb;
        let column = |f: &Field| {
            let definition = types::column_definition(&f.field_type, spec.key.contains(&f.name), mariadb);
            format!("{} {definition} comment {}", quote_ident(&f.name), literal(&types::comment(&f.field_type)))
        };
        let mut statements =
            vec![format!("create database if not exists {} character set utf8mb4", quote_ident(database))];
        let options = " default character set utf8mb4";
        statements.extend(shape_table(&self.quoted(&spec.table), &object, existing, column, quote_ident, options)?);
        statements.push(format!(
            "create table if not exists {} (marker char(36) character set ascii primary key,
                `rows` bigint not null, loaded_at datetime(6) not null default current_timestamp(6))",
            self.markers(&spec.table)
        ));
        statements.push(format!(
            "delete from {} where loaded_at < now(6) - interval {MARKER_DAYS} day",
            self.markers(&spec.table)
        ));
        for statement in &statements {
            conn.query_drop(self.ctx.deadlines.idle, statement).await?;
        }
        Ok(())
    }

    async fn drop_table(&self, table: &str) -> Result<(), ConnectorError> {
        self.execute(&[format!("drop table if exists {}", self.quoted(table))]).await
    }

    async fn loaded(&self, table: &str, marker: Uuid) -> Result<Option<u64>, ConnectorError> {
        let mut conn = self.connect().await?;
        let sql = format!("select `rows` from {} where marker = ?", self.markers(table));
        match conn.query::<u64>(self.ctx.deadlines.query, &sql, vec![marker.to_string().into()]).await {
            Ok(rows) => Ok(rows.first().copied()),
            // No markers table (or database): nothing was ever loaded there.
            Err(e) if e.class == ErrorClass::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn load(&self, request: LoadRequest) -> Result<Box<dyn Loader>, ConnectorError> {
        let mut conn = self.connect().await?;
        let limit = self.ctx.deadlines.idle;
        conn.query_drop(limit, STRICT).await?;
        let table = self.quoted(&request.table);
        let names: Vec<String> = request.schema.fields.iter().map(|f| quote_ident(&f.name)).collect();
        let others = request.schema.fields.iter().filter(|f| !request.key.contains(&f.name));
        let cleared = request.soft_delete.iter().map(|c| format!("{} = null", quote_ident(c)));
        let (into, tail, update) = match request.mode {
            LoadMode::Append => (table, String::new(), None),
            LoadMode::Upsert => {
                let mut set: Vec<String> = others.map(|f| format!("{0} = values({0})", quote_ident(&f.name))).collect();
                set.extend(cleared);
                // Nothing to update: the row stays as it is.
                if set.is_empty() {
                    set.extend(request.key.first().map(|k| format!("{0} = {0}", quote_ident(k))));
                }
                (table, format!(" on duplicate key update {}", set.join(", ")), None)
            }
            LoadMode::Update => {
                let key: Vec<String> = request.key.iter().map(|k| quote_ident(k)).collect();
                let first = first_key(&key, &request.table)?;
                let definitions: Vec<String> = request
                    .schema
                    .fields
                    .iter()
                    .map(|f| {
                        let key = request.key.contains(&f.name);
                        format!(
                            "{} {}",
                            quote_ident(&f.name),
                            types::column_definition(&f.field_type, key, conn.mariadb)
                        )
                    })
                    .collect();
                let create = format!(
                    "create temporary table {UPDATES} ({}, primary key ({})) engine = InnoDB",
                    definitions.join(", "),
                    key.join(", ")
                );
                conn.query_drop(limit, &create).await?;
                let mut set: Vec<String> = others.map(|f| format!("t.{0} = s.{0}", quote_ident(&f.name))).collect();
                set.extend(cleared.map(|c| format!("t.{c}")));
                // Key columns only: the rows found still count.
                if set.is_empty() {
                    set.push(format!("t.{first} = t.{first}"));
                }
                let from = format!("{table} as t join {UPDATES} as s on {}", key_match(&key, "t", "s"));
                let update = Update {
                    found: format!("select count(*) from {from}"),
                    apply: format!("update {from} set {}", set.join(", ")),
                };
                (UPDATES.to_owned(), String::new(), Some(update))
            }
        };
        let insert = format!("insert into {into} ({}) values ", names.join(", "));
        conn.query_drop(limit, "start transaction").await?;
        let group = format!("({})", vec!["?"; names.len()].join(", "));
        Ok(Box::new(MysqlLoader {
            conn,
            insert,
            group,
            tail,
            update,
            marker: request.marker,
            markers: self.markers(&request.table),
            rows: 0,
        }))
    }

    async fn swap(&self, shadow: &str, table: &str) -> Result<(), ConnectorError> {
        let mut conn = self.connect().await?;
        let (database, name) = split_object(table, &self.config.database);
        let (table, shadow) = (self.quoted(table), self.quoted(shadow));
        let exists: Vec<u8> = conn
            .query(
                self.ctx.deadlines.query,
                "select 1 from information_schema.tables where table_schema = ? and table_name = ?",
                vec![database.into(), name.into()],
            )
            .await?;
        let limit = self.ctx.deadlines.idle;
        if exists.is_empty() {
            return conn.query_drop(limit, &format!("rename table {shadow} to {table}")).await;
        }
        // Named as a shadow of the table is, so it is as short and as unlikely to be taken.
        let old = self.quoted(&self.shadow(&format!("{database}.{name}"), Uuid::new_v4()));
        conn.query_drop(limit, &format!("rename table {table} to {old}, {shadow} to {table}")).await?;
        conn.query_drop(limit, &format!("drop table {old}")).await
    }

    async fn delete_keys(
        &self,
        table: &str,
        (mut keys, key_schema, which): (KeyStream, Arc<Schema>, Keys),
        soft_delete: Option<&str>,
    ) -> Result<u64, ConnectorError> {
        let among = which == Keys::Listed;
        let key: Vec<String> = key_schema.fields.iter().map(|f| quote_ident(&f.name)).collect();
        let first = first_key(&key, table)?;
        let mut conn = self.connect().await?;
        let definitions: Vec<String> = key_schema
            .fields
            .iter()
            .map(|f| {
                format!("{} {}", quote_ident(&f.name), types::column_definition(&f.field_type, true, conn.mariadb))
            })
            .collect();
        let create = format!(
            "create temporary table {KEYS} ({}, primary key ({})) engine = InnoDB",
            definitions.join(", "),
            key.join(", ")
        );
        let limit = self.ctx.deadlines.idle;
        conn.query_drop(limit, STRICT).await?;
        conn.query_drop(limit, &create).await?;
        conn.query_drop(limit, "start transaction").await?;
        let group = format!("({})", vec!["?"; key.len()].join(", "));
        let insert = format!("insert into {KEYS} ({}) values ", key.join(", "));
        // A key deleted twice in a stream of deletes is there once.
        let tail = format!(" on duplicate key update {first} = {first}");
        while let Some(batch) = keys.next().await {
            let rows = values(&batch?)?;
            let guard = conn.kill_on_drop();
            guarded(guard, limit, run_chunked(&mut conn.conn, &insert, &group, ", ", &tail, &rows)).await?;
        }
        let matches = key_match(&key, "t", "k");
        let (join, filter) = match among {
            true => ("join", String::new()),
            false => ("left join", format!(" and k.{first} is null")),
        };
        let from = format!("{} as t {join} {KEYS} as k on {matches}", self.quoted(table));
        let statement = match soft_delete {
            None => format!("delete t from {from} where true{filter}"),
            Some(column) => {
                format!("update {from} set t.{0} = now(6) where t.{0} is null{filter}", quote_ident(column))
            }
        };
        let guard = conn.kill_on_drop();
        let conn = &mut conn.conn;
        let work = async {
            conn.query_drop(&statement).await?;
            let swept = conn.affected_rows();
            conn.query_drop("commit").await?;
            Ok(swept)
        };
        guarded(guard, limit, work).await
    }

    async fn retire(
        &self,
        table: &str,
        shadow: &str,
        key: &[String],
        soft_delete: Option<&str>,
    ) -> Result<u64, ConnectorError> {
        let key: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
        let first = first_key(&key, table)?;
        let mut conn = self.connect().await?;
        let gone = format!(
            "from {} as t left join {} as s on {} where s.{first} is null",
            self.quoted(table),
            self.quoted(shadow),
            key_match(&key, "s", "t"),
        );
        let Some(soft_delete) = soft_delete else {
            return self.number(&mut conn, &format!("select count(*) {gone}")).await;
        };
        let sd = quote_ident(soft_delete);
        let marked = self.number(&mut conn, &format!("select count(*) {gone} and t.{sd} is null")).await?;
        // The columns both tables have (the reload may have added some).
        let old = self.fields(&mut conn, table).await?.unwrap_or_default();
        let kept = self.fields(&mut conn, shadow).await?.unwrap_or_default();
        let kept: Vec<&Field> = kept.iter().filter(|c| old.iter().any(|o| o.name == c.name)).collect();
        let names: Vec<String> = kept.iter().map(|c| quote_ident(&c.name)).collect();
        let values: Vec<String> = kept
            .iter()
            .map(|c| match c.name == soft_delete {
                true => format!("coalesce(t.{sd}, now(6))"),
                false => format!("t.{}", quote_ident(&c.name)),
            })
            .collect();
        let carry =
            format!("insert into {} ({}) select {} {gone}", self.quoted(shadow), names.join(", "), values.join(", "));
        conn.query_drop(self.ctx.deadlines.idle, &carry).await?;
        Ok(marked)
    }

    async fn count(&self, table: &str) -> Result<u64, ConnectorError> {
        let mut conn = self.connect().await?;
        self.number(&mut conn, &format!("select count(*) from {}", self.quoted(table))).await
    }
}

/// A partition's open transaction.
struct MysqlLoader {
    conn: Connection,
    /// `INSERT INTO table (…) VALUES `, one `group` of placeholders per row, then `tail`.
    insert: String,
    group: String,
    tail: String,
    /// An update load's statements, its rows staged in [`UPDATES`].
    update: Option<Update>,
    marker: Uuid,
    markers: String,
    rows: u64,
}

/// How an update load's staged rows change the table: how many rows they find, and the change.
struct Update {
    found: String,
    apply: String,
}

#[async_trait]
impl Loader for MysqlLoader {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let rows = values(batch)?;
        let (guard, limit) = (self.conn.kill_on_drop(), self.conn.ctx.deadlines.idle);
        let work = run_chunked(&mut self.conn.conn, &self.insert, &self.group, ", ", &self.tail, &rows);
        guarded(guard, limit, work).await?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Committed, ConnectorError> {
        let mark = format!("insert into {} (marker, `rows`) values (?, ?)", self.markers);
        let (written, marker) = (self.rows, self.marker.to_string());
        let (guard, limit) = (self.conn.kill_on_drop(), self.conn.ctx.deadlines.idle);
        let (conn, update) = (&mut self.conn.conn, &self.update);
        let work = async {
            let rows = match update {
                None => written,
                Some(update) => {
                    let found: Option<u64> = conn.query_first(&update.found).await?;
                    conn.query_drop(&update.apply).await?;
                    found.unwrap_or(0)
                }
            };
            conn.exec_drop(mark, (marker, rows)).await?;
            conn.query_drop("commit").await?;
            // Duplicate keys are updated in place, so how many rows are new is not known.
            Ok(Committed { rows, added: None })
        };
        guarded(guard, limit, work).await
    }
}
