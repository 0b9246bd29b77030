//! PostgreSQL (and Redshift's protocol) as the warehouse of event streams. One load is one
//! transaction: the schema, tables and columns its rows need are added first, then each table's
//! rows go in with one `INSERT … SELECT` from `jsonb_to_recordset`, so PostgreSQL itself turns
//! each JSON value into its column's type (a value it cannot take fails the load). Message
//! tables skip ids they have (`ON CONFLICT DO NOTHING`); `users` merges each column's newest
//! non-null value.
//!
//! The columns of the tables loaded are remembered between loads and forgotten after any
//! failure, so a column added or changed by someone else is read again.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use async_trait::async_trait;
use serde_json::{Map, Value as Json};
use syncline_core::{
    connector::{ConnectorError, Context, ErrorClass, EventWarehouse, TableRows},
    events::layout::{ColumnType, Merge},
};

use super::{
    PostgresConfig,
    client::{Connection, Spare, quote_ident},
};

/// The advisory lock under which loads change tables.
const DDL_LOCK: i64 = 0x5359_4e43_4556_5400;

/// A table's columns and their PostgreSQL types, as remembered.
type Columns = HashMap<String, String>;

pub(super) struct PostgresWarehouse {
    ctx: Context,
    config: PostgresConfig,
    spare: Spare,
    /// Known columns by `(schema, table)`.
    known: Mutex<HashMap<(String, String), Columns>>,
}

impl PostgresWarehouse {
    pub(super) fn new(ctx: Context, config: PostgresConfig) -> Self {
        Self { ctx, config, spare: Spare::default(), known: Mutex::default() }
    }

    fn remembered(&self, schema: &str, table: &str) -> Option<Columns> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).get(&(schema.to_owned(), table.to_owned())).cloned()
    }

    /// Loads `tables` in one transaction on `conn`; the columns each table has afterwards.
    async fn load_on(
        &self,
        conn: &Connection,
        schema: &str,
        tables: &[TableRows],
    ) -> Result<(Vec<u64>, Vec<Columns>), ConnectorError> {
        let limit = self.ctx.deadlines.idle;
        let quoted_schema = quote_ident(schema);
        conn.run(limit, conn.client.batch_execute("begin")).await?;
        let mut known: Vec<Option<Columns>> = tables.iter().map(|t| self.remembered(schema, &t.table)).collect();
        let mut locked = false;
        let mut loaded = Vec::with_capacity(tables.len());
        let mut after = Vec::with_capacity(tables.len());
        for (table, known) in tables.iter().zip(&mut known) {
            let target = format!("{quoted_schema}.{}", quote_ident(&table.table));
            let mut columns = match known.take() {
                Some(columns) if new_columns(&columns, &table.rows).is_empty() => columns,
                _ => {
                    if !locked {
                        // Loads into one database change its tables one at a time: PostgreSQL's
                        // `if not exists` does not hold against a concurrent twin.
                        let lock = format!(
                            "select pg_advisory_xact_lock({DDL_LOCK}); create schema if not exists {quoted_schema}"
                        );
                        conn.run(limit, conn.client.batch_execute(&lock)).await?;
                        locked = true;
                    }
                    let columns = existing_columns(conn, schema, &table.table).await?;
                    let added = new_columns(&columns, &table.rows);
                    if let Some(ddl) = widen(&target, columns.is_empty(), &added) {
                        conn.run(limit, conn.client.batch_execute(&ddl)).await?;
                    }
                    columns
                        .into_iter()
                        .chain(added.into_iter().map(|(name, kind)| (name, kind.sql().to_owned())))
                        .collect()
                }
            };
            let sql = insert_sql(&target, table, &columns);
            let rows = tokio_postgres::types::Json(&table.rows);
            loaded.push(conn.run(limit, conn.client.execute(&sql, &[&rows])).await?);
            after.push(std::mem::take(&mut columns));
        }
        conn.run(limit, conn.client.batch_execute("commit")).await?;
        Ok((loaded, after))
    }
}

#[async_trait]
impl EventWarehouse for PostgresWarehouse {
    /// A load that fails for its data while it trusted remembered columns is tried once more
    /// with the columns read afresh: someone may have changed a column's type (to fix what
    /// failed before).
    async fn load(&self, schema: &str, tables: &[TableRows]) -> Result<Vec<u64>, ConnectorError> {
        let remembered = tables.iter().any(|t| self.remembered(schema, &t.table).is_some());
        match self.load_once(schema, tables).await {
            Err(e) if e.class == ErrorClass::Permanent && remembered => self.load_once(schema, tables).await,
            loaded => loaded,
        }
    }
}

impl PostgresWarehouse {
    /// One try of [`EventWarehouse::load`]: the columns of its tables are remembered after it
    /// succeeds and forgotten after it fails.
    async fn load_once(&self, schema: &str, tables: &[TableRows]) -> Result<Vec<u64>, ConnectorError> {
        let conn = self.spare.take(&self.ctx, &self.config).await?;
        let known = |columns: Option<Vec<Columns>>| {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            for (i, table) in tables.iter().enumerate() {
                let key = (schema.to_owned(), table.table.clone());
                match columns.as_ref().map(|c| c[i].clone()) {
                    Some(columns) => known.insert(key, columns),
                    None => known.remove(&key),
                };
            }
        };
        match self.load_on(&conn, schema, tables).await {
            Ok((loaded, columns)) => {
                known(Some(columns));
                self.spare.keep(conn);
                Ok(loaded)
            }
            Err(e) => {
                known(None);
                Err(e)
            }
        }
    }
}

/// The columns table `schema.table` has (none when it does not exist).
async fn existing_columns(conn: &Connection, schema: &str, table: &str) -> Result<Columns, ConnectorError> {
    let sql = "select a.attname::text, format_type(a.atttypid, a.atttypmod)
               from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped";
    let rows = conn.run(conn.ctx.deadlines.idle, conn.client.query(sql, &[&schema, &table])).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The columns `rows` need that `columns` lacks, each typed by its first non-null value, in
/// the order they first appear (`id` first).
fn new_columns(columns: &Columns, rows: &[Map<String, Json>]) -> Vec<(String, ColumnType)> {
    let mut seen = HashSet::new();
    let mut added = Vec::new();
    if !columns.contains_key("id") {
        seen.insert("id");
        added.push(("id".to_owned(), ColumnType::Text));
    }
    for row in rows {
        for (name, value) in row {
            if columns.contains_key(name) || seen.contains(name.as_str()) {
                continue;
            }
            if let Some(kind) = ColumnType::of(value) {
                seen.insert(name);
                added.push((name.clone(), if name == "id" { ColumnType::Text } else { kind }));
            }
        }
    }
    added
}

/// The DDL that creates `target` (when `missing`) or adds `added` to it.
fn widen(target: &str, missing: bool, added: &[(String, ColumnType)]) -> Option<String> {
    let definition = |(name, kind): &(String, ColumnType)| match name.as_str() {
        "id" => "id text primary key".to_owned(),
        name => format!("{} {}", quote_ident(name), kind.sql()),
    };
    if missing {
        let columns: Vec<String> = added.iter().map(definition).collect();
        return Some(format!("create table if not exists {target} ({})", columns.join(", ")));
    }
    if added.is_empty() {
        return None;
    }
    let adds: Vec<String> = added.iter().map(|c| format!("add column if not exists {}", definition(c))).collect();
    Some(format!("alter table {target} {}", adds.join(", ")))
}

/// The statement that inserts `table`'s rows (`$1`, a JSON array) into `target`.
fn insert_sql(target: &str, table: &TableRows, columns: &Columns) -> String {
    let mut names: Vec<&String> = Vec::new();
    let mut seen = HashSet::new();
    for name in table.rows.iter().flat_map(|row| row.keys()) {
        if columns.contains_key(name) && seen.insert(name) {
            names.push(name);
        }
    }
    let list: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
    let record: Vec<String> = names.iter().map(|n| format!("{} {}", quote_ident(n), columns[*n])).collect();
    let list = list.join(", ");
    let conflict = match table.merge {
        Merge::Keep => "do nothing".to_owned(),
        Merge::Latest => {
            let sets: Vec<String> = names
                .iter()
                .filter(|n| n.as_str() != "id")
                .map(|n| format!("{0} = coalesce(excluded.{0}, t.{0})", quote_ident(n)))
                .collect();
            let newer = match columns.contains_key("received_at") {
                true => " where t.received_at is null or excluded.received_at >= t.received_at",
                false => "",
            };
            match sets.is_empty() {
                true => "do nothing".to_owned(),
                false => format!("do update set {}{newer}", sets.join(", ")),
            }
        }
    };
    format!(
        "insert into {target} as t ({list}) select {list} from jsonb_to_recordset($1::jsonb) as x({}) on conflict (id) {conflict}",
        record.join(", ")
    )
}
