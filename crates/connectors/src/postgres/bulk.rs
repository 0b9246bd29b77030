//! PostgreSQL as a bulk sync destination (Redshift speaks the same protocol). A partition is one
//! transaction: its rows stream through one binary `COPY` — straight into the table when they
//! are appended, through a temporary staging table and one `INSERT … ON CONFLICT` when they
//! are upserted — and its marker goes into `<schema>._syncline_loads` before the commit.

use std::{pin::Pin, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt, stream::BoxStream};
use syncline_core::{
    connector::{
        BulkDestination, Committed, ConnectorError, Context, KeyStream, Keys, LoadMode, LoadRequest, Loader,
        ObjectSpec, PendingCount, TableSpec,
    },
    record::{Field, RecordBatch, Schema},
};
use tokio_postgres::{CopyInSink, types::Type};
use uuid::Uuid;

use super::{
    PostgresConfig,
    client::{self, Connection, Spare, quote_ident, split_object},
    copy,
    destination::columns,
    types,
};
use crate::sql::shape_table;

/// The table of committed loads, in the schema of the tables they loaded.
const MARKERS: &str = "_syncline_loads";
/// How long markers are kept: far longer than any partition can wait for its commit to be
/// recorded.
const MARKER_DAYS: i32 = 7;

pub(super) struct PostgresBulk {
    ctx: Context,
    config: PostgresConfig,
    spare: Spare,
}

impl PostgresBulk {
    pub(super) fn new(ctx: Context, config: PostgresConfig) -> Self {
        Self { ctx, config, spare: Spare::default() }
    }

    async fn connect(&self) -> Result<Connection, ConnectorError> {
        client::connect(&self.ctx, &self.config).await
    }

    /// The connection the last short call left, or a new one.
    async fn short(&self) -> Result<Connection, ConnectorError> {
        self.spare.take(&self.ctx, &self.config).await
    }

    /// Runs `work` on the connection the last short call left (or a new one), which is kept
    /// for the next when `work` succeeds (it then left no transaction open).
    async fn briefly<T>(
        &self,
        work: impl AsyncFnOnce(&Connection) -> Result<T, ConnectorError>,
    ) -> Result<T, ConnectorError> {
        let conn = self.short().await?;
        let done = work(&conn).await?;
        self.spare.keep(conn);
        Ok(done)
    }

    /// Runs `sql` in one transaction within the idle deadline.
    async fn execute(&self, sql: &str) -> Result<(), ConnectorError> {
        let sql = format!("begin; {sql}; commit");
        self.briefly(async |conn| conn.run(self.ctx.deadlines.idle, conn.client.batch_execute(&sql)).await).await
    }
}

/// `schema.table` quoted.
fn quoted(table: &str) -> String {
    let (schema, name) = split_object(table);
    format!("{}.{}", quote_ident(&schema), quote_ident(&name))
}

/// The markers table of `table`'s schema, quoted.
fn markers(table: &str) -> String {
    let (schema, _) = split_object(table);
    format!("{}.{MARKERS}", quote_ident(&schema))
}

/// `t.a = k.a and …` over `key`.
fn key_match(key: &[String], left: &str, right: &str) -> String {
    let matches: Vec<String> = key.iter().map(|k| format!("{left}.{0} = {right}.{0}", quote_ident(k))).collect();
    matches.join(" and ")
}

/// Streams `batches`' tuples into `statement`, a `COPY … FROM STDIN (FORMAT binary)`.
async fn copy_all(
    conn: &Connection,
    statement: &str,
    mut batches: BoxStream<'static, Result<RecordBatch, ConnectorError>>,
) -> Result<(), ConnectorError> {
    let sink = conn.client.copy_in::<_, Bytes>(statement).await.map_err(|e| client::error(&e))?;
    futures::pin_mut!(sink);
    sink.feed(Bytes::from_static(copy::HEADER)).await.map_err(|e| client::error(&e))?;
    while let Some(batch) = batches.next().await {
        sink.feed(batch?.data().clone()).await.map_err(|e| client::error(&e))?;
    }
    sink.feed(Bytes::from_static(copy::TRAILER)).await.map_err(|e| client::error(&e))?;
    sink.finish().await.map_err(|e| client::error(&e))?;
    Ok(())
}

#[async_trait]
impl BulkDestination for PostgresBulk {
    async fn columns(&self, table: &str) -> Result<Option<Vec<Field>>, ConnectorError> {
        self.briefly(async |conn| match columns(conn, table).await {
            Ok(columns) => Ok(Some(
                columns
                    .into_iter()
                    .map(|c| Field {
                        name: c.name,
                        field_type: types::field_type(&Type::from_oid(c.type_oid).unwrap_or(Type::TEXT)),
                    })
                    .collect(),
            )),
            Err(e) if e.class == syncline_core::connector::ErrorClass::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn shape(&self, spec: &TableSpec) -> Result<(), ConnectorError> {
        let (schema, _) = split_object(&spec.table);
        let object = ObjectSpec { object: spec.table.clone(), fields: spec.fields.clone(), key: spec.key.clone() };
        let column = |f: &Field| format!("{} {}", quote_ident(&f.name), f.field_type.postgres_name());
        self.briefly(async |conn| {
            let existing = columns(conn, &spec.table).await.map(|cs| cs.into_iter().map(|c| c.name).collect());
            let mut statements = vec![format!("create schema if not exists {}", quote_ident(&schema))];
            statements.extend(shape_table(&quoted(&spec.table), &object, existing, column, quote_ident, "")?);
            statements.push(format!(
                "create table if not exists {0} (marker uuid primary key, rows bigint not null,
                    loaded_at timestamptz not null default now());
                 delete from {0} where loaded_at < now() - interval '{MARKER_DAYS} days'",
                markers(&spec.table)
            ));
            for statement in statements {
                conn.interactive(conn.client.batch_execute(&statement)).await?;
            }
            Ok(())
        })
        .await
    }

    fn defers_keys(&self) -> bool {
        true
    }

    /// Builds the key unless the table has one already (a coordinator that took over after
    /// it was built).
    async fn add_key(&self, table: &str, key: &[String]) -> Result<(), ConnectorError> {
        let keyed = "select exists (select 1 from pg_index where indrelid = $1::text::regclass and indisprimary)";
        let columns: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
        let add = format!("alter table {} add primary key ({})", quoted(table), columns.join(", "));
        self.briefly(async |conn| {
            let row = conn.interactive(conn.client.query_one(keyed, &[&quoted(table)])).await?;
            match row.get::<_, bool>(0) {
                true => Ok(()),
                false => conn.run(self.ctx.deadlines.idle, conn.client.batch_execute(&add)).await,
            }
        })
        .await
    }

    async fn drop_table(&self, table: &str) -> Result<(), ConnectorError> {
        self.execute(&format!("drop table if exists {}", quoted(table))).await
    }

    async fn loaded(&self, table: &str, marker: Uuid) -> Result<Option<u64>, ConnectorError> {
        let sql = format!("select rows from {} where marker = $1", markers(table));
        self.briefly(async |conn| match conn.interactive(conn.client.query_opt(&sql, &[&marker])).await {
            Ok(row) => Ok(row.map(|r| r.get::<_, i64>(0) as u64)),
            // No markers table: nothing was ever loaded there.
            Err(e) if e.class == syncline_core::connector::ErrorClass::Config => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn load(&self, request: LoadRequest) -> Result<Box<dyn Loader>, ConnectorError> {
        let conn = self.short().await?;
        let table = quoted(&request.table);
        let target = columns(&conn, &request.table).await?;
        let names: Vec<String> = request.schema.fields.iter().map(|f| quote_ident(&f.name)).collect();
        let direct =
            request.mode == LoadMode::Append
                && request.schema.fields.iter().all(|f| {
                    target.iter().any(|c| c.name == f.name && types::accepts_binary(c.type_oid, &f.field_type))
                });
        let (copy, apply) = if direct {
            (format!("copy {table} ({}) from stdin (format binary)", names.join(", ")), Apply::Direct)
        } else {
            let staged: Vec<String> = request
                .schema
                .fields
                .iter()
                .map(|f| format!("{} {}", quote_ident(&f.name), f.field_type.postgres_name()))
                .collect();
            let create = format!("create temporary table syncline_load ({}) on commit drop", staged.join(", "));
            conn.run(self.ctx.deadlines.idle, conn.client.batch_execute(&format!("begin; {create}"))).await?;
            let casts: Vec<String> = request
                .schema
                .fields
                .iter()
                .map(|f| {
                    let ty = target.iter().find(|c| c.name == f.name).map(|c| c.data_type.as_str()).unwrap_or("text");
                    format!("s.{}::{ty}", quote_ident(&f.name))
                })
                .collect();
            let insert = format!(
                "insert into {table} as t ({}) select {} from syncline_load s",
                names.join(", "),
                casts.join(", ")
            );
            // The columns besides the key, each with its staged value (cast), and the key's.
            let (keys, others): (Vec<_>, Vec<_>) =
                request.schema.fields.iter().zip(&casts).partition(|(f, _)| request.key.contains(&f.name));
            let cleared = request.soft_delete.iter().map(|c| format!("{} = null", quote_ident(c)));
            let apply = match request.mode {
                LoadMode::Append => Apply::Append(insert),
                LoadMode::Upsert => {
                    let mut sets: Vec<String> =
                        others.iter().map(|(f, _)| format!("{0} = excluded.{0}", quote_ident(&f.name))).collect();
                    sets.extend(cleared);
                    let keys: Vec<String> = request.key.iter().map(|k| quote_ident(k)).collect();
                    let action = match sets.is_empty() {
                        true => "nothing".to_owned(),
                        false => format!("update set {}", sets.join(", ")),
                    };
                    // An inserted row, unlike an updated one, has no locking transaction.
                    Apply::Upsert(format!(
                        "with applied as ({insert} on conflict ({}) do {action} returning t.xmax = 0 as added)
                         select count(*) filter (where added) from applied",
                        keys.join(", ")
                    ))
                }
                LoadMode::Update => {
                    let mut sets: Vec<String> =
                        others.iter().map(|(f, cast)| format!("{} = {cast}", quote_ident(&f.name))).collect();
                    sets.extend(cleared);
                    let matches: Vec<String> =
                        keys.iter().map(|(f, cast)| format!("t.{} = {cast}", quote_ident(&f.name))).collect();
                    // Rows of key columns only still count the rows they find.
                    if sets.is_empty() {
                        sets.extend(keys.iter().take(1).map(|(f, _)| format!("{0} = t.{0}", quote_ident(&f.name))));
                    }
                    Apply::Update(format!(
                        "update {table} as t set {} from syncline_load s where {}",
                        sets.join(", "),
                        matches.join(" and ")
                    ))
                }
            };
            ("copy syncline_load from stdin (format binary)".to_owned(), apply)
        };
        if direct {
            conn.run(self.ctx.deadlines.idle, conn.client.batch_execute("begin")).await?;
        }
        let sink = conn.run(self.ctx.deadlines.idle, conn.client.copy_in::<_, Bytes>(&copy)).await?;
        let mut loader = PostgresLoader {
            sink: Box::pin(sink),
            apply,
            marker: request.marker,
            markers: markers(&request.table),
            conn,
        };
        loader.feed(Bytes::from_static(copy::HEADER)).await?;
        Ok(Box::new(loader))
    }

    async fn swap(&self, shadow: &str, table: &str) -> Result<(), ConnectorError> {
        let (_, name) = split_object(table);
        self.execute(&format!(
            "drop table if exists {}; alter table {} rename to {}",
            quoted(table),
            quoted(shadow),
            quote_ident(&name)
        ))
        .await
    }

    async fn delete_keys(
        &self,
        table: &str,
        (keys, key_schema, which): (KeyStream, Arc<Schema>, Keys),
        soft_delete: Option<&str>,
    ) -> Result<u64, ConnectorError> {
        let among = which == Keys::Listed;
        let conn = self.connect().await?;
        let key: Vec<String> = key_schema.fields.iter().map(|f| f.name.clone()).collect();
        let columns: Vec<String> = key_schema
            .fields
            .iter()
            .map(|f| format!("{} {}", quote_ident(&f.name), f.field_type.postgres_name()))
            .collect();
        let negation = if among { "" } else { "not " };
        let gone = format!("{negation}exists (select 1 from syncline_keys k where {})", key_match(&key, "t", "k"));
        let statement = match soft_delete {
            None => format!("delete from {} as t where {gone}", quoted(table)),
            Some(column) => {
                format!(
                    "update {} as t set {1} = now() where {1} is null and {gone}",
                    quoted(table),
                    quote_ident(column)
                )
            }
        };
        let work = async {
            conn.client
                .batch_execute(&format!(
                    "begin; create temporary table syncline_keys ({}) on commit drop",
                    columns.join(", ")
                ))
                .await
                .map_err(|e| client::error(&e))?;
            copy_all(&conn, "copy syncline_keys from stdin (format binary)", keys).await?;
            let swept = conn.client.execute(&statement, &[]).await.map_err(|e| client::error(&e))?;
            conn.client.batch_execute("commit").await.map_err(|e| client::error(&e))?;
            Ok(swept)
        };
        conn.guard(self.ctx.deadlines.idle, work).await
    }

    async fn retire(
        &self,
        table: &str,
        shadow: &str,
        key: &[String],
        soft_delete: Option<&str>,
    ) -> Result<u64, ConnectorError> {
        let conn = self.connect().await?;
        let gone = format!(
            "select t.* from {} t where not exists (select 1 from {} s where {})",
            quoted(table),
            quoted(shadow),
            key_match(key, "s", "t")
        );
        let Some(soft_delete) = soft_delete else {
            let row = conn
                .run(self.ctx.deadlines.idle, conn.client.query_one(&format!("select count(*) from ({gone}) g"), &[]))
                .await?;
            return Ok(row.get::<_, i64>(0) as u64);
        };
        let kept = columns(&conn, shadow).await?;
        let names: Vec<String> = kept.iter().map(|c| quote_ident(&c.name)).collect();
        let values: Vec<String> = kept
            .iter()
            .map(|c| match c.name == soft_delete {
                true => format!("coalesce(g.{0}, now())", quote_ident(&c.name)),
                false => format!("g.{}", quote_ident(&c.name)),
            })
            .collect();
        let sql = format!(
            "with gone as ({gone}),
                  carried as (insert into {shadow} ({names}) select {values} from gone g)
             select count(*) from gone where {sd} is null",
            shadow = quoted(shadow),
            sd = quote_ident(soft_delete),
            names = names.join(", "),
            values = values.join(", "),
        );
        let row = conn.run(self.ctx.deadlines.idle, conn.client.query_one(&sql, &[])).await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn count(&self, table: &str) -> Result<u64, ConnectorError> {
        let conn = self.connect().await?;
        count_rows(&conn, table).await
    }

    /// Fixes a repeatable-read snapshot (taken by the transaction's first statement) before
    /// returning; the count runs in it, in one process: it runs beside the loads, which need
    /// the CPUs more.
    async fn count_from_now(&self, table: &str) -> Result<Option<PendingCount>, ConnectorError> {
        let conn = self.short().await?;
        let begin = "start transaction isolation level repeatable read read only;
                     set local max_parallel_workers_per_gather = 0; select 1";
        conn.run(self.ctx.deadlines.idle, conn.client.batch_execute(begin)).await?;
        let table = table.to_owned();
        Ok(Some(Box::pin(async move { count_rows(&conn, &table).await })))
    }
}

async fn count_rows(conn: &Connection, table: &str) -> Result<u64, ConnectorError> {
    let sql = format!("select count(*) from {}", quoted(table));
    let row = conn.run(conn.ctx.deadlines.idle, conn.client.query_one(&sql, &[])).await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// A partition's open transaction and `COPY`.
struct PostgresLoader {
    conn: Connection,
    sink: Pin<Box<CopyInSink<Bytes>>>,
    apply: Apply,
    marker: Uuid,
    markers: String,
}

/// How copied rows reach the table, and what that says of them.
enum Apply {
    /// Copied straight in: every row is new.
    Direct,
    /// Appended from staging by this statement: every row is new.
    Append(String),
    /// Upserted from staging by this query, which answers how many rows were new.
    Upsert(String),
    /// Existing rows updated from staging by this statement, which counts those it changed.
    Update(String),
}

impl PostgresLoader {
    async fn feed(&mut self, bytes: Bytes) -> Result<(), ConnectorError> {
        let sink = &mut self.sink;
        self.conn
            .guard(self.conn.ctx.deadlines.idle, async { sink.feed(bytes).await.map_err(|e| client::error(&e)) })
            .await
    }
}

#[async_trait]
impl Loader for PostgresLoader {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        self.feed(batch.data().clone()).await
    }

    async fn commit(mut self: Box<Self>) -> Result<Committed, ConnectorError> {
        self.feed(Bytes::from_static(copy::TRAILER)).await?;
        let this = &mut *self;
        let (conn, sink) = (&this.conn, &mut this.sink);
        let work = async {
            // The server's count of the rows copied, straight in or into staging.
            let copied = sink.as_mut().finish().await?;
            let committed = match &this.apply {
                Apply::Direct => Committed { rows: copied, added: Some(copied) },
                Apply::Append(insert) => {
                    conn.client.execute(insert.as_str(), &[]).await?;
                    Committed { rows: copied, added: Some(copied) }
                }
                Apply::Upsert(upsert) => {
                    let added: i64 = conn.client.query_one(upsert.as_str(), &[]).await?.try_get(0)?;
                    Committed { rows: copied, added: Some(added as u64) }
                }
                Apply::Update(update) => {
                    Committed { rows: conn.client.execute(update.as_str(), &[]).await?, added: Some(0) }
                }
            };
            let mark = format!("insert into {} (marker, rows) values ($1, $2)", this.markers);
            conn.client.execute(&mark, &[&this.marker, &(committed.rows as i64)]).await?;
            conn.client.batch_execute("commit").await?;
            Ok(committed)
        };
        conn.run(conn.ctx.deadlines.idle, work).await
    }
}
