//! Reading models and tables: `COPY (SELECT … FROM (<model>) m [WHERE cursor/partition]
//! ORDER BY <identity>) TO STDOUT (FORMAT binary)`, cut into batches without decoding.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::{FutureExt, StreamExt, TryStreamExt, stream};
use serde_json::{Map, Value as Json};
use syncline_core::{
    connector::{
        Catalog, ConnectorError, Context, HeldSnapshot, ModelOption, ReadRequest, Readable, Reading, Source, Stream,
        StreamCapabilities, within,
    },
    record::{Field, FieldType, RecordBatch, Schema, tuple_len},
    sync::filter::Predicate,
};
use tokio_postgres::types::Type;

use crate::{
    predicate,
    sql::{self, Clauses, MODEL_OPTIONS, Model, with_checkpoints},
};

use super::{
    PostgresConfig,
    client::{self, CancelOnDrop, Connection, quote_ident, quote_literal, split_object},
    copy,
    spelling::Postgres,
    types,
};

type Batches = futures::stream::BoxStream<'static, Result<RecordBatch, ConnectorError>>;

pub(super) struct PostgresSource {
    ctx: Context,
    config: PostgresConfig,
}

impl PostgresSource {
    pub(super) fn new(ctx: Context, config: PostgresConfig) -> Self {
        Self { ctx, config }
    }

    /// A connection in a read-only transaction whose statements end after the interactive
    /// deadline, for looking at a model while an API request waits.
    async fn look(&self) -> Result<Connection, ConnectorError> {
        let conn = client::connect(&self.ctx, &self.config).await?;
        conn.read_only(Some(self.ctx.deadlines.query)).await?;
        Ok(conn)
    }
}

/// The model's SQL: `configuration.query`, or `select * from` `configuration.table`.
fn model_sql(model: &Json) -> Result<String, ConnectorError> {
    Ok(match Model::parse(model)? {
        Model::Query(query) => query.to_owned(),
        Model::Table(table) => table_sql(table),
    })
}

fn table_sql(table: &str) -> String {
    let (schema, table) = split_object(table);
    format!("select * from {}.{}", quote_ident(&schema), quote_ident(&table))
}

/// The SQL of what a read names: a model, a table, or the slice of a table that
/// [`Source::slices`] cut (a range of its pages, read with a TID range scan).
fn readable_sql(readable: &Readable, slice: Option<&Json>) -> Result<String, ConnectorError> {
    match (readable, slice.and_then(|s| s.get("pages"))) {
        (Readable::Model(model), _) => model_sql(model),
        (Readable::Stream(table), None) => Ok(table_sql(table)),
        (Readable::Stream(table), Some(pages)) => {
            let page = |i: usize| pages.get(i).and_then(Json::as_u64);
            let from = page(0).ok_or_else(|| ConnectorError::config(format!("slice {pages} is not a page range")))?;
            let upto = page(1).map(|upto| format!(" and ctid < '({upto},0)'::tid")).unwrap_or_default();
            Ok(format!("{} where ctid >= '({from},0)'::tid{upto}", table_sql(table)))
        }
    }
}

/// Pages of `table` and its estimated rows, or `None` when it is not a plain table.
async fn pages(conn: &Connection, table: &str) -> Result<Option<(u64, u64)>, ConnectorError> {
    let (schema, name) = split_object(table);
    let row = conn
        .interactive(conn.client.query_opt(
            "select (pg_relation_size(c.oid) / current_setting('block_size')::bigint)::bigint, c.reltuples::float8,
                    c.relpages::float8
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'm')",
            &[&schema, &name],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let (pages, tuples, counted): (i64, f64, f64) = (
        row.try_get(0).map_err(|e| client::error(&e))?,
        row.try_get(1).map_err(|e| client::error(&e))?,
        row.try_get(2).map_err(|e| client::error(&e))?,
    );
    // Never analyzed: guess from the size (about 100 narrow rows per 8 kB page).
    let per_page = if tuples > 0.0 && counted > 0.0 { tuples / counted } else { 100.0 };
    Ok(Some((pages.max(0) as u64, (pages.max(0) as f64 * per_page) as u64)))
}

/// The most slices a table is cut into.
const MAX_SLICES: u64 = 1024;

/// The model's columns and their types, from the database's description of the query.
async fn describe(conn: &Connection, sql: &str) -> Result<Vec<(String, Type)>, ConnectorError> {
    let statement = conn.interactive(conn.client.prepare(&format!("select * from ({sql}) as m"))).await?;
    Ok(statement.columns().iter().map(|c| (c.name().to_owned(), c.type_().clone())).collect())
}

/// The tables and views of the database with their columns and primary keys.
async fn catalog(conn: &Connection) -> Result<Catalog, ConnectorError> {
    let rows = conn
        .interactive(conn.client.query(
            "select n.nspname || '.' || c.relname, a.attname::text, a.atttypid,
                    coalesce(a.attnum = any(k.conkey), false)
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
             left join pg_constraint k on k.conrelid = c.oid and k.contype = 'p'
             where c.relkind in ('r', 'p', 'v', 'm') and n.nspname not in ('pg_catalog', 'information_schema')
               and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'
             order by 1, a.attnum",
            &[],
        ))
        .await?;
    let mut streams: Vec<Stream> = Vec::new();
    for row in &rows {
        let (name, column, oid, key): (String, String, u32, bool) = (
            row.try_get(0).map_err(|e| client::error(&e))?,
            row.try_get(1).map_err(|e| client::error(&e))?,
            row.try_get(2).map_err(|e| client::error(&e))?,
            row.try_get(3).map_err(|e| client::error(&e))?,
        );
        if streams.last().is_none_or(|s| s.name != name) {
            let capabilities = StreamCapabilities { sorted_reads: true, partitionable: true, ..Default::default() };
            streams.push(Stream { name, fields: vec![], key: vec![], capabilities });
        }
        let stream = streams.last_mut().expect("pushed above");
        let field_type = types::field_type_of(oid);
        if field_type.can_be_cursor() {
            stream.capabilities.cursor_fields.push(column.clone());
        }
        if key {
            stream.key.push(column.clone());
        }
        stream.fields.push(Field { name: column, field_type });
    }
    Ok(Catalog { streams })
}

#[async_trait]
impl Source for PostgresSource {
    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        catalog(&self.look().await?).await
    }

    fn model_options(&self) -> &'static [ModelOption] {
        MODEL_OPTIONS
    }

    async fn model_fields(&self, model: &Json) -> Result<Vec<Field>, ConnectorError> {
        let columns = describe(&self.look().await?, &model_sql(model)?).await?;
        Ok(columns.into_iter().map(|(name, ty)| Field { field_type: types::field_type(&ty), name }).collect())
    }

    async fn estimate_rows(&self, readable: &Readable) -> Result<Option<u64>, ConnectorError> {
        let conn = self.look().await?;
        let sql = format!("explain (format json) select * from ({}) as m", readable_sql(readable, None)?);
        let plan: Json =
            conn.interactive(conn.client.query_one(&sql, &[])).await?.try_get(0).map_err(|e| client::error(&e))?;
        Ok(plan[0]["Plan"]["Plan Rows"].as_f64().map(|rows| rows as u64))
    }

    async fn sample(&self, model: &Json, limit: usize) -> Result<Vec<Map<String, Json>>, ConnectorError> {
        let conn = self.look().await?;
        let sql = format!("select to_jsonb(m) from ({}) as m limit {limit}", model_sql(model)?);
        let rows = conn.interactive(conn.client.query(&sql, &[])).await?;
        let mut sample = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Json::Object(map) = row.try_get::<_, Json>(0).map_err(|e| client::error(&e))? {
                sample.push(map);
            }
        }
        Ok(sample)
    }

    async fn read(&self, request: ReadRequest) -> Result<Reading, ConnectorError> {
        // Reads only read; the stream has no statement timeout (a large model reads for long)
        // but fails when the database goes quiet for longer than the idle deadline.
        let conn = client::connect(&self.ctx, &self.config).await?;
        match &request.snapshot {
            Some(id) => conn.read_only_at(id).await?,
            None => conn.read_only(None).await?,
        }
        let sql = readable_sql(&request.readable, request.slice.as_ref())?;
        let columns = describe(&conn, &sql).await?;
        let column = |name: &str| {
            columns
                .iter()
                .find(|(column, _)| column == name)
                .map(|(_, ty)| ty)
                .ok_or_else(|| ConnectorError::config(format!("the model has no field {name:?}")))
        };
        let mut fields = Vec::with_capacity(request.fields.len());
        let mut select = Vec::with_capacity(request.fields.len());
        for name in &request.fields {
            let ty = column(name)?;
            let quoted = format!("m.{}", quote_ident(name));
            select.push(if types::native(ty).is_some() { quoted } else { format!("{quoted}::text") });
            fields.push(Field { name: name.clone(), field_type: types::field_type(ty) });
        }
        let mut dialect = PostgresDialect { columns: &columns };
        let Clauses { filter, order, cursor } = sql::clauses(&request, &fields, &select, &mut dialect)?;
        let copy_sql =
            format!("copy (select {} from ({sql}) as m{filter}{order}) to stdout (format binary)", select.join(", "));
        let schema = Arc::new(Schema { fields });
        let copy_stream = conn.run(self.ctx.deadlines.idle, conn.client.copy_out(&copy_sql)).await?;
        let batches = Batcher::new(schema.clone(), request.batch_rows, request.batch_bytes)
            .run(copy_stream.map_err(|e| client::error(&e)), conn);
        let sorted = !request.order_by.is_empty();
        Ok(Reading { schema, sorted, events: with_checkpoints(batches, cursor) })
    }

    async fn hold_snapshot(&self) -> Result<Option<Box<dyn HeldSnapshot>>, ConnectorError> {
        let conn = client::connect(&self.ctx, &self.config).await?;
        let id = conn.export_snapshot().await?;
        Ok(Some(Box::new(Snapshot { id, conn })))
    }

    /// Counts in one process: a count is taken beside a load, which needs the CPUs more.
    async fn count(&self, stream: &str) -> Result<Option<u64>, ConnectorError> {
        let conn = client::connect(&self.ctx, &self.config).await?;
        conn.interactive(conn.client.batch_execute("set max_parallel_workers_per_gather = 0")).await?;
        let sql = format!("select count(*) from ({}) as m", table_sql(stream));
        let row = conn.run(self.ctx.deadlines.idle, conn.client.query_one(&sql, &[])).await?;
        Ok(Some(row.try_get::<_, i64>(0).map_err(|e| client::error(&e))? as u64))
    }

    /// Ranges of pages (`{"pages": [from, upto]}`, the last without `upto`) holding about
    /// `rows` rows each; views and partitioned tables are one slice.
    async fn slices(&self, stream: &str, rows: u64) -> Result<Vec<Json>, ConnectorError> {
        let conn = client::connect(&self.ctx, &self.config).await?;
        let Some((pages, estimate)) = pages(&conn, stream).await? else { return Ok(vec![Json::Null]) };
        let count = estimate.div_ceil(rows.max(1)).clamp(1, MAX_SLICES.min(pages.max(1)));
        let per_slice = pages.div_ceil(count).max(1);
        Ok((0..count)
            .map(|i| {
                let from = i * per_slice;
                match i + 1 == count {
                    true => serde_json::json!({ "pages": [from] }),
                    false => serde_json::json!({ "pages": [from, from + per_slice] }),
                }
            })
            .collect())
    }
}

/// An exported snapshot and the transaction that keeps it.
struct Snapshot {
    id: String,
    conn: Connection,
}

#[async_trait]
impl HeldSnapshot for Snapshot {
    fn id(&self) -> &str {
        &self.id
    }

    async fn keep_alive(&self) -> Result<(), ConnectorError> {
        self.conn.interactive(self.conn.client.simple_query("select 1")).await.map(drop)
    }
}

/// PostgreSQL's spelling of a read's clauses.
struct PostgresDialect<'a> {
    /// The model's columns and their types.
    columns: &'a [(String, Type)],
}

impl sql::Dialect for PostgresDialect<'_> {
    fn order_by(&self, expr: &str, field: &Field) -> String {
        let collate = if field.field_type == FieldType::Text { " collate \"C\"" } else { "" };
        format!("({expr}){collate} nulls last")
    }

    fn after(&mut self, expr: &str, field: &Field, after: &Json) -> Result<String, ConnectorError> {
        let ty = self.columns.iter().find(|(name, _)| *name == field.name).map_or("text", |(_, ty)| ty.name());
        Ok(format!("{expr} > {}::{ty}", quote_literal(&sql::cursor_text(after))))
    }

    fn partition(&self, _: &[&str], index: u32, count: u32) -> String {
        format!("((hashtextextended(m::text, 0) % {count}) + {count}) % {count} = {index}")
    }

    fn filter(&self, predicate: &Predicate) -> String {
        predicate::render(predicate, &|field| format!("m.{}", quote_ident(field)), &Postgres)
    }
}

/// Cuts a binary `COPY` byte stream into record batches, scanning each byte once.
struct Batcher {
    schema: Arc<Schema>,
    max_rows: usize,
    max_bytes: usize,
    buf: BytesMut,
    header_skipped: bool,
    /// Complete tuples found at the front of `buf`: their count and total length.
    rows: usize,
    scanned: usize,
}

impl Batcher {
    fn new(schema: Arc<Schema>, max_rows: usize, max_bytes: usize) -> Self {
        Self {
            schema,
            max_rows: max_rows.max(1),
            max_bytes: max_bytes.max(1024),
            buf: BytesMut::new(),
            header_skipped: false,
            rows: 0,
            scanned: 0,
        }
    }

    /// Batches `chunks`, waiting at most the idle deadline for each. The connection moves into
    /// the stream so it stays open while it is read; dropping the stream before its end (a
    /// cancel, a failure downstream) asks the database to stop the `COPY`.
    fn run(
        self,
        chunks: impl futures::Stream<Item = Result<bytes::Bytes, ConnectorError>> + Send + 'static,
        conn: Connection,
    ) -> Batches {
        let guard = CancelOnDrop::new(&conn.client);
        let state = (self, Box::pin(chunks), false, (conn, Some(guard)));
        stream::try_unfold(state, |(mut this, mut chunks, mut done, (conn, mut guard))| async move {
            loop {
                // A canceled context stops the read here; dropping the guard on the way out
                // asks the database to stop the `COPY`.
                if conn.ctx.cancel.is_cancelled() {
                    return Err(ConnectorError::permanent("the read was canceled"));
                }
                if let Some(batch) = this.cut(done)? {
                    return Ok(Some((batch, (this, chunks, done, (conn, guard)))));
                }
                if done {
                    if let Some(guard) = guard.take() {
                        guard.disarm();
                    }
                    return Ok(None);
                }
                // A `COPY` sends a message per row: take those already here without arming a
                // deadline and a cancel for each.
                if let Some(ready) = chunks.next().now_or_never() {
                    match ready {
                        Some(chunk) => this.buf.extend_from_slice(&chunk?),
                        None => done = true,
                    }
                    continue;
                }
                let next = async {
                    tokio::select! {
                        chunk = chunks.next() => Ok(chunk),
                        _ = conn.ctx.cancel.cancelled() => Err(ConnectorError::permanent("the read was canceled")),
                    }
                };
                match within(conn.ctx.deadlines.idle, "the database", next).await? {
                    Some(chunk) => this.buf.extend_from_slice(&chunk?),
                    None => done = true,
                }
            }
        })
        .boxed()
    }

    /// Takes a full batch off the front of the buffer, or the remainder once the input ended.
    fn cut(&mut self, done: bool) -> Result<Option<RecordBatch>, ConnectorError> {
        if !self.header_skipped {
            if self.buf.len() < copy::HEADER_LEN {
                return Ok(None);
            }
            let _ = self.buf.split_to(copy::HEADER_LEN);
            self.header_skipped = true;
        }
        let fields = self.schema.fields.len();
        let mut ended = false;
        while self.rows < self.max_rows && self.scanned < self.max_bytes {
            let rest = &self.buf[self.scanned..];
            if copy::is_trailer(rest) {
                ended = true;
                break;
            }
            match tuple_len(rest, fields).map_err(|e| ConnectorError::permanent(format!("COPY stream: {e}")))? {
                Some(len) => {
                    self.scanned += len;
                    self.rows += 1;
                }
                None => break,
            }
        }
        let full = self.rows >= self.max_rows || self.scanned >= self.max_bytes;
        if !(full || ended || done) || self.rows == 0 {
            if done && !ended && self.rows == 0 && !self.buf.is_empty() && !copy::is_trailer(&self.buf) {
                return Err(ConnectorError::transient("COPY stream ended in the middle of a record"));
            }
            return Ok(None);
        }
        let data = self.buf.split_to(self.scanned).freeze();
        (self.rows, self.scanned) = (0, 0);
        RecordBatch::from_tuples(self.schema.clone(), data)
            .map(Some)
            .map_err(|e| ConnectorError::permanent(format!("COPY stream: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use syncline_core::record::{FieldType, RecordBatchBuilder};

    use super::*;

    fn schema() -> Arc<Schema> {
        let field = |name: &str| Field { name: name.into(), field_type: FieldType::Text };
        Arc::new(Schema { fields: vec![field("a"), field("b")] })
    }

    /// A binary COPY stream of `rows` two-field records of varying length.
    fn copy_stream(rows: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut builder = RecordBatchBuilder::with_capacity(schema(), 0);
        for i in 0..rows {
            let value = "x".repeat(i % 9);
            builder.push_values([Some(value.as_bytes()), if i % 4 == 0 { None } else { Some(&b"y"[..]) }]);
        }
        let batch = builder.finish();
        let tuples: Vec<Vec<u8>> = batch.records().map(|r| r.as_bytes().to_vec()).collect();
        let stream = [copy::HEADER, batch.data(), copy::TRAILER].concat();
        (stream, tuples)
    }

    #[test]
    fn cuts_streams_split_anywhere_into_bounded_batches() {
        let (stream, tuples) = copy_stream(25);
        for chunk_size in [1, 3, 7, 19, 64, stream.len()] {
            let mut batcher = Batcher::new(schema(), 4, 1 << 20);
            let mut seen = Vec::new();
            let mut batches = Vec::new();
            for chunk in stream.chunks(chunk_size) {
                batcher.buf.extend_from_slice(chunk);
                while let Some(batch) = batcher.cut(false).expect("valid stream") {
                    batches.push(batch);
                }
            }
            while let Some(batch) = batcher.cut(true).expect("valid stream") {
                batches.push(batch);
            }
            for batch in &batches {
                assert!(batch.len() <= 4, "batch of {} rows", batch.len());
                seen.extend(batch.records().map(|r| r.as_bytes().to_vec()));
            }
            assert_eq!(seen, tuples, "chunks of {chunk_size} bytes");
        }
    }

    #[test]
    fn rejects_a_stream_cut_off_mid_record() {
        let (stream, _) = copy_stream(3);
        let mut batcher = Batcher::new(schema(), 100, 1 << 20);
        batcher.buf.extend_from_slice(&stream[..stream.len() - 5]);
        let mut result = batcher.cut(true);
        while let Ok(Some(_)) = result {
            result = batcher.cut(true);
        }
        assert!(result.is_err(), "a truncated stream is an error, not a short read");
    }
}
