//! Reading models and tables: `SELECT … FROM (<model>) m [WHERE cursor/partition] ORDER BY
//! <identity>`, streamed row by row over the binary protocol and encoded into record batches as
//! the rows arrive, so memory holds one batch whatever the model's size.

use std::{collections::HashSet, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::{StreamExt, stream};
use mysql_async::{
    Row, Value as MyValue,
    consts::{ColumnFlags, ColumnType},
    prelude::Queryable,
};
use serde_json::{Map, Value as Json};
use syncline_core::{
    connector::{
        Catalog, ConnectorError, Context, ModelOption, ReadRequest, Readable, Reading, Source, Stream,
        StreamCapabilities, within,
    },
    record::{DecodeError, Field, FieldType, RecordBatch, RecordBatchBuilder, Schema, Value},
    sync::filter::Predicate,
};
use tokio::sync::mpsc;

use super::{
    MysqlConfig,
    client::{self, Connection, quote_ident, quote_object, split_object},
    spelling::Mysql,
    types::{self, ColumnInfo},
};
use crate::{
    predicate,
    sql::{self, Clauses, MODEL_OPTIONS, Model, with_checkpoints},
};

pub(super) struct MysqlSource {
    ctx: Context,
    config: MysqlConfig,
}

impl MysqlSource {
    pub(super) fn new(ctx: Context, config: MysqlConfig) -> Self {
        Self { ctx, config }
    }

    /// A connection in a read-only transaction whose statements end after the interactive
    /// deadline, for looking at a model while an API request waits.
    async fn look(&self) -> Result<Connection, ConnectorError> {
        let mut conn = client::connect(&self.ctx, &self.config).await?;
        conn.read_only(Some(self.ctx.deadlines.query)).await?;
        Ok(conn)
    }

    /// The SQL of what a read names: the model's query, or all of a table.
    fn sql(&self, readable: &Readable) -> Result<String, ConnectorError> {
        let table = |table: &str| format!("select * from {}", quote_object(table, &self.config.database));
        match readable {
            Readable::Model(model) => Ok(match Model::parse(model)? {
                Model::Query(query) => query.to_owned(),
                Model::Table(name) => table(name),
            }),
            Readable::Stream(name) => Ok(table(name)),
        }
    }
}

/// The columns MariaDB stores JSON in (a `LONGTEXT` with a `json_valid` check), as (database,
/// table, column), among the tables of `databases`. MySQL reports JSON as a type of its own.
async fn json_columns(
    conn: &mut Connection,
    databases: &[String],
) -> Result<HashSet<(String, String, String)>, ConnectorError> {
    if !conn.mariadb || databases.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "select constraint_schema, table_name, constraint_name from information_schema.check_constraints
         where level = 'Column' and check_clause = concat('json_valid(`', constraint_name, '`)')
           and constraint_schema in ({})",
        vec!["?"; databases.len()].join(", ")
    );
    let params = databases.iter().map(|d| MyValue::from(d.as_str())).collect();
    let rows: Vec<(String, String, String)> = conn.query(conn.ctx.deadlines.query, &sql, params).await?;
    Ok(rows.into_iter().collect())
}

/// A column of a model: its field, and whether the server knows it is never NULL.
struct ModelColumn {
    field: Field,
    not_null: bool,
}

/// The model's columns with their types, from the server's description of the query (and, on
/// MariaDB, which of the tables' columns hold JSON).
async fn describe(conn: &mut Connection, sql: &str) -> Result<Vec<ModelColumn>, ConnectorError> {
    let columns = conn.columns(&format!("select * from ({sql}) as m")).await?;
    // MariaDB's JSON is LONGTEXT: find where such columns come from. The wrapped query names
    // its own derived table as their origin, the query itself the tables.
    let text_blob = |c: &mysql_async::Column| {
        c.column_type() == ColumnType::MYSQL_TYPE_BLOB && c.character_set() != types::BINARY_CHARSET
    };
    let origins = match conn.mariadb && columns.iter().any(text_blob) {
        true => conn.columns(sql).await?,
        false => Vec::new(),
    };
    let origin = |c: &mysql_async::Column| {
        (c.schema_str().into_owned(), c.org_table_str().into_owned(), c.org_name_str().into_owned())
    };
    let mut databases: Vec<String> = origins.iter().filter(|c| text_blob(c)).map(|c| origin(c).0).collect();
    databases.sort_unstable();
    databases.dedup();
    let json = json_columns(conn, &databases).await?;
    Ok(columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let is_json = origins.get(i).is_some_and(|o| json.contains(&origin(o)));
            let info = ColumnInfo::from_column(c, is_json);
            let field = Field { name: c.name_str().into_owned(), field_type: types::field_type(&info) };
            ModelColumn { field, not_null: c.flags().contains(ColumnFlags::NOT_NULL_FLAG) }
        })
        .collect())
}

/// The model's fields, from [`describe`].
async fn fields(conn: &mut Connection, sql: &str) -> Result<Vec<Field>, ConnectorError> {
    Ok(describe(conn, sql).await?.into_iter().map(|c| c.field).collect())
}

/// A row's values as `schema`'s field types; the error names field and row.
fn decode(row: Row, schema: &Schema, number: usize) -> Result<Vec<Value>, ConnectorError> {
    row.unwrap_raw()
        .into_iter()
        .zip(&schema.fields)
        .map(|(value, field)| {
            types::from_mysql(value.unwrap_or(MyValue::NULL), &field.field_type)
                .map_err(|reason| ConnectorError::permanent(format!("row {number}, field {:?}: {reason}", field.name)))
        })
        .collect()
}

/// The tables and views of the database with their columns and primary keys.
async fn catalog(conn: &mut Connection, database: &str) -> Result<Catalog, ConnectorError> {
    // Table, column, data type, column type, character set, position in the primary key.
    type Column = (String, String, String, String, Option<String>, Option<u32>);
    let rows: Vec<Column> = conn
        .query(
            conn.ctx.deadlines.query,
            "select c.table_name, c.column_name, c.data_type, c.column_type, c.character_set_name, k.ordinal_position
             from information_schema.columns c
             left join information_schema.key_column_usage k on k.constraint_name = 'PRIMARY'
               and k.table_schema = c.table_schema and k.table_name = c.table_name and k.column_name = c.column_name
             where c.table_schema = ?
             order by c.table_name, c.ordinal_position",
            vec![database.into()],
        )
        .await?;
    let json = json_columns(conn, &[database.to_owned()]).await?;
    let mut streams: Vec<Stream> = Vec::new();
    let mut keys: Vec<(u32, String)> = Vec::new();
    for (table, column, data_type, column_type, charset, key) in rows {
        let name = format!("{database}.{table}");
        if streams.last().is_none_or(|s| s.name != name) {
            finish_key(streams.last_mut(), &mut keys);
            let capabilities = StreamCapabilities { sorted_reads: true, partitionable: true, ..Default::default() };
            streams.push(Stream { name, fields: vec![], key: vec![], capabilities });
        }
        let stream = streams.last_mut().expect("pushed above");
        let is_json = json.contains(&(database.to_owned(), table, column.clone()));
        let info = ColumnInfo::from_declared(&data_type, &column_type, charset.as_deref(), is_json);
        let field_type = types::field_type(&info);
        if field_type.can_be_cursor() {
            stream.capabilities.cursor_fields.push(column.clone());
        }
        if let Some(position) = key {
            keys.push((position, column.clone()));
        }
        stream.fields.push(Field { name: column, field_type });
    }
    finish_key(streams.last_mut(), &mut keys);
    Ok(Catalog { streams })
}

/// Sets the stream's key from its primary key columns, in key order.
fn finish_key(stream: Option<&mut Stream>, keys: &mut Vec<(u32, String)>) {
    keys.sort_unstable();
    if let Some(stream) = stream {
        stream.key = keys.drain(..).map(|(_, column)| column).collect();
    }
    keys.clear();
}

#[async_trait]
impl Source for MysqlSource {
    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        catalog(&mut self.look().await?, &self.config.database).await
    }

    fn model_options(&self) -> &'static [ModelOption] {
        MODEL_OPTIONS
    }

    async fn model_fields(&self, model: &Json) -> Result<Vec<Field>, ConnectorError> {
        let sql = self.sql(&Readable::Model(model.clone()))?;
        fields(&mut self.look().await?, &sql).await
    }

    async fn estimate_rows(&self, readable: &Readable) -> Result<Option<u64>, ConnectorError> {
        let table = match readable {
            Readable::Stream(table) => Some(table.as_str()),
            Readable::Model(model) => match Model::parse(model)? {
                Model::Table(table) => Some(table),
                Model::Query(_) => None,
            },
        };
        let mut conn = self.look().await?;
        let limit = self.ctx.deadlines.query;
        if let Some(table) = table {
            let (database, table) = split_object(table, &self.config.database);
            let sql = "select table_rows from information_schema.tables where table_schema = ? and table_name = ?";
            let rows: Vec<Option<u64>> = conn.query(limit, sql, vec![database.into(), table.into()]).await?;
            return Ok(rows.into_iter().next().flatten());
        }
        let sql = format!("explain select * from ({}) as m", self.sql(readable)?);
        let plan: Vec<Row> = conn.query(limit, &sql, vec![]).await?;
        Ok(plan.first().and_then(|row| row.get_opt::<Option<u64>, _>("rows")?.ok().flatten()))
    }

    async fn sample(&self, model: &Json, limit: usize) -> Result<Vec<Map<String, Json>>, ConnectorError> {
        let sql = self.sql(&Readable::Model(model.clone()))?;
        let mut conn = self.look().await?;
        let schema = Schema { fields: fields(&mut conn, &sql).await? };
        let rows: Vec<Row> =
            conn.query(self.ctx.deadlines.query, &format!("select * from ({sql}) as m limit {limit}"), vec![]).await?;
        let mut sample = Vec::with_capacity(rows.len());
        for (number, row) in rows.into_iter().enumerate() {
            let values = decode(row, &schema, number)?;
            sample.push(schema.fields.iter().zip(values).map(|(f, v)| (f.name.clone(), v.to_json())).collect());
        }
        Ok(sample)
    }

    async fn read(&self, request: ReadRequest) -> Result<Reading, ConnectorError> {
        // Reads only read; the statement has no time limit (a large model reads for long) but
        // fails when the server goes quiet for longer than the idle deadline.
        let mut conn = client::connect(&self.ctx, &self.config).await?;
        // While the destination writes a batch, the read waits; the server must wait as long
        // (`net_write_timeout` is 60 s by default) before giving up on sending.
        let wait = (2 * self.ctx.deadlines.idle.as_secs()).max(60);
        conn.query_drop(self.ctx.deadlines.query, &format!("set session net_write_timeout = {wait}")).await?;
        conn.read_only(None).await?;
        let sql = self.sql(&request.readable)?;
        let columns = describe(&mut conn, &sql).await?;
        let mut fields = Vec::with_capacity(request.fields.len());
        let mut select = Vec::with_capacity(request.fields.len());
        let mut dialect = MysqlDialect { params: Vec::new(), not_null: Vec::new() };
        for name in &request.fields {
            let column = columns
                .iter()
                .find(|c| &c.field.name == name)
                .ok_or_else(|| ConnectorError::config(format!("the model has no field {name:?}")))?;
            select.push(format!("m.{}", quote_ident(name)));
            fields.push(column.field.clone());
            if column.not_null {
                dialect.not_null.push(name.clone());
            }
        }
        let Clauses { filter, order, cursor } = sql::clauses(&request, &fields, &select, &mut dialect)?;
        let sql = format!("select {} from ({sql}) as m{filter}{order}", select.join(", "));
        let schema = Arc::new(Schema { fields });
        let (sender, receiver) = mpsc::channel(1);
        let limits = (request.batch_rows.max(1), request.batch_bytes.max(1024));
        tokio::spawn(produce(conn, sql, dialect.params, schema.clone(), limits, sender));
        let batches =
            stream::unfold(
                receiver,
                |mut receiver| async move { receiver.recv().await.map(|batch| (batch, receiver)) },
            )
            .boxed();
        let sorted = !request.order_by.is_empty();
        Ok(Reading { schema, sorted, events: with_checkpoints(batches, cursor) })
    }
}

/// MySQL's spelling of a read's clauses; cursor values are bound as parameters.
struct MysqlDialect {
    params: Vec<MyValue>,
    /// The fields the server knows are never NULL.
    not_null: Vec<String>,
}

impl sql::Dialect for MysqlDialect {
    fn order_by(&self, expr: &str, field: &Field) -> String {
        // Collations are neither bytewise nor blind to trailing spaces: compare UTF-8 bytes.
        let key = match field.field_type {
            FieldType::Text => format!("cast(convert({expr} using utf8mb4) as binary)"),
            _ => expr.to_owned(),
        };
        // NULLs sort first: put them last, unless there are none (sorting on the column alone
        // lets the server walk an index instead of sorting).
        match self.not_null.contains(&field.name) {
            true => key,
            false => format!("{expr} is null, {key}"),
        }
    }

    fn after(&mut self, expr: &str, field: &Field, after: &Json) -> Result<String, ConnectorError> {
        let value = Value::parse(&field.field_type, &sql::cursor_text(after))
            .map_err(|e| ConnectorError::config(format!("cursor {:?}: {e}", field.name)))?;
        self.params.push(types::to_mysql(&value));
        Ok(format!("{expr} > ?"))
    }

    fn partition(&self, exprs: &[&str], index: u32, count: u32) -> String {
        format!("mod(crc32(concat_ws('|', {})), {count}) = {index}", exprs.join(", "))
    }

    fn filter(&self, predicate: &Predicate) -> String {
        predicate::render(predicate, &|field| format!("m.{}", quote_ident(field)), &Mysql)
    }
}

type Sender = mpsc::Sender<Result<RecordBatch, ConnectorError>>;

/// Runs the read's statement and sends its rows as batches of at most `rows` records and about
/// `bytes` bytes, waiting at most the idle deadline for each answer of the server. When the
/// reader goes away (a cancel, a failure downstream) the statement is killed.
async fn produce(
    mut conn: Connection,
    sql: String,
    params: Vec<MyValue>,
    schema: Arc<Schema>,
    (rows, bytes): (usize, usize),
    sender: Sender,
) {
    let waits = Waits { sender: &sender, idle: conn.ctx.deadlines.idle, cancel: conn.ctx.cancel.clone() };
    let guard = conn.kill_on_drop();
    let read = async {
        let Some(mut result) = waits.answer(conn.conn.exec_iter(sql.as_str(), params)).await? else {
            return Ok(false);
        };
        let mut batch = RecordBatchBuilder::with_capacity(schema.clone(), bytes.min(1 << 20));
        let mut number = 0;
        loop {
            let row = match waits.answer(result.next()).await? {
                None => return Ok(false),
                Some(None) => break,
                Some(Some(row)) => row,
            };
            let mut values = row.unwrap_raw().into_iter();
            batch
                .push_encoded(|ty, out| match values.next() {
                    Some(value) => types::encode(value.unwrap_or(MyValue::NULL), ty, out).map_err(DecodeError),
                    None => Err(DecodeError("the row has too few values".into())),
                })
                .map_err(|e| ConnectorError::permanent(format!("row {number}, field {:?}: {}", e.field, e.reason)))?;
            number += 1;
            if batch.len() >= rows || batch.byte_len() >= bytes {
                let full = std::mem::replace(&mut batch, RecordBatchBuilder::with_capacity(schema.clone(), 0));
                if sender.send(Ok(full.finish())).await.is_err() {
                    return Ok(false);
                }
            }
        }
        Ok(batch.is_empty() || sender.send(Ok(batch.finish())).await.is_ok())
    };
    match read.await {
        Ok(true) => guard.disarm(),
        // The reader went away: the guard kills the statement.
        Ok(false) => {}
        Err(e) => {
            let _ = sender.send(Err(e)).await;
        }
    }
}

/// What a read waits on besides the server: its reader, its idle deadline and its cancel.
struct Waits<'a> {
    sender: &'a Sender,
    idle: Duration,
    cancel: tokio_util::sync::CancellationToken,
}

impl Waits<'_> {
    /// The server's answer, waiting at most the idle deadline for it; `None` when the reader
    /// went away first, an error when the read was canceled.
    async fn answer<T>(
        &self,
        answer: impl Future<Output = Result<T, mysql_async::Error>>,
    ) -> Result<Option<T>, ConnectorError> {
        let answer = async { answer.await.map_err(|e| client::error(&e)) };
        tokio::select! {
            _ = self.sender.closed() => Ok(None),
            _ = self.cancel.cancelled() => Err(ConnectorError::permanent("the read was canceled")),
            result = within(self.idle, "the database", answer) => result.map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Dialect;

    #[test]
    fn never_null_keys_sort_on_the_column_alone() {
        let dialect = MysqlDialect { params: vec![], not_null: vec!["id".into(), "code".into()] };
        let field = |name: &str, field_type| Field { name: name.into(), field_type };
        assert_eq!(dialect.order_by("m.`id`", &field("id", FieldType::Int64)), "m.`id`");
        assert_eq!(dialect.order_by("m.`n`", &field("n", FieldType::Int64)), "m.`n` is null, m.`n`");
        assert_eq!(
            dialect.order_by("m.`code`", &field("code", FieldType::Text)),
            "cast(convert(m.`code` using utf8mb4) as binary)"
        );
    }
}
