//! Reading the generated dataset or a stored object: in a scrambled order unless the
//! connection sorts, after a cursor, one partition of several, with a checkpoint after every
//! batch (`{"cursor": …}` for cursor reads, else `{"position": n}`, which a read resumes from).

use std::{cmp::Ordering, sync::Arc};

use async_trait::async_trait;
use futures::{StreamExt, stream};
use serde_json::{Map, Value as Json, json};
use syncline_core::{
    connector::{
        Catalog, ConnectorError, Context, ModelInput, ModelOption, Partition, ReadEvent, ReadRequest, Readable,
        Reading, Source, Stream, StreamCapabilities,
    },
    record::{Field, FieldType, RecordBatchBuilder, Schema, Value, key::KeyLayout},
};

use super::{
    Faults, MemoryConfig,
    dataset::{self, Dataset, mix},
    store::{self, Object, ReadGuard},
};

pub(super) struct MemorySource {
    ctx: Context,
    config: MemoryConfig,
}

/// What a model or stream names: the generated dataset or an object of the store.
enum Table {
    Generated(Dataset),
    Stored(Object),
}

impl Table {
    fn fields(&self) -> Vec<Field> {
        match self {
            Table::Generated(_) => Dataset::schema().fields.clone(),
            Table::Stored(object) => object.fields.clone(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Table::Generated(data) => data.rows as usize,
            Table::Stored(object) => object.rows.len(),
        }
    }

    fn row(&self, i: usize) -> Vec<Value> {
        match self {
            Table::Generated(data) => data.row(i as u64),
            Table::Stored(object) => object.rows[i].clone(),
        }
    }

    fn stream(&self, name: &str, sorted_reads: bool) -> Stream {
        let fields = self.fields();
        let (key, cursor_fields) = match self {
            // `id` grows too, but repeats across regions: only the timestamp is a cursor.
            Table::Generated(_) => (dataset::KEY.map(String::from).to_vec(), vec![dataset::CURSOR.to_owned()]),
            Table::Stored(object) => (
                object.key.clone(),
                fields.iter().filter(|f| f.field_type.can_be_cursor()).map(|f| f.name.clone()).collect(),
            ),
        };
        let capabilities =
            StreamCapabilities { sorted_reads, cursor_fields, partitionable: true, change_capture: false };
        Stream { name: name.to_owned(), fields, key, capabilities }
    }
}

/// The order of two values of a cursor field.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Date(a), Value::Date(b)) => a.cmp(b),
        (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
        (Value::TimestampTz(a), Value::TimestampTz(b)) => a.cmp(b),
        _ => Ordering::Equal,
    }
}

/// A cursor position saved as JSON, as a value of the cursor field's type.
fn cursor_value(ty: &FieldType, saved: &Json) -> Result<Value, ConnectorError> {
    let bad = || ConnectorError::config(format!("cursor position {saved} is not a {}", ty.postgres_name()));
    match saved {
        Json::String(text) => Value::parse(ty, text).map_err(|_| bad()),
        Json::Number(n) => n.as_i64().map(Value::Int).ok_or_else(bad),
        _ => Err(bad()),
    }
}

impl MemorySource {
    pub(super) fn new(ctx: Context, config: MemoryConfig) -> Self {
        Self { ctx, config }
    }

    fn table(&self, name: &str) -> Result<Table, ConnectorError> {
        if name == self.config.dataset {
            return Ok(Table::Generated(self.config.dataset()));
        }
        let object = store::snapshot(&self.config.dataset, name).ok_or_else(|| {
            ConnectorError::not_found(format!("dataset {:?} has no object {name:?}", self.config.dataset))
        })?;
        Ok(Table::Stored(object))
    }

    /// The table a model configuration (`{"dataset": "<name>"}`) or stream names.
    fn readable(&self, readable: &Readable) -> Result<Table, ConnectorError> {
        match readable {
            Readable::Model(model) => {
                let name = model["dataset"].as_str().filter(|d| !d.is_empty()).ok_or_else(|| {
                    ConnectorError::config("configuration.dataset (the dataset or an object written to it) is required")
                })?;
                self.table(name)
            }
            Readable::Stream(name) => self.table(name),
        }
    }
}

/// The positions of the table's records a read returns, in order, and where the cursor is.
fn plan(
    table: &Table,
    schema: &Arc<Schema>,
    positions: &[usize],
    request: &ReadRequest,
    config: &MemoryConfig,
) -> Result<(Vec<usize>, Option<usize>), ConnectorError> {
    let mut order: Vec<usize> = (0..table.len()).collect();
    if let Some(Partition { index, count }) = request.partition {
        if count == 0 || index >= count {
            return Err(ConnectorError::config(format!("partition {index} of {count} does not exist")));
        }
        order.retain(|i| mix(*i as u64 ^ 0x0005_eed0) % u64::from(count) == u64::from(index));
    }
    if let Some(cursor) = &request.cursor {
        let at = schema
            .index_of(&cursor.field)
            .ok_or_else(|| ConnectorError::config(format!("{:?} is not a selected field", cursor.field)))?;
        let ty = &schema.fields[at].field_type;
        if !ty.can_be_cursor() {
            return Err(ConnectorError::config(format!(
                "{:?} cannot be a cursor: it is not a number, date or timestamp",
                cursor.field
            )));
        }
        let saved = request.state.as_ref().and_then(|s| s.get("cursor")).or(cursor.after.as_ref());
        let after = saved.filter(|s| !s.is_null()).map(|s| cursor_value(ty, s)).transpose()?;
        let mut keyed: Vec<(Value, usize)> = order
            .into_iter()
            .map(|i| (table.row(i).swap_remove(positions[at]), i))
            .filter(|(v, _)| *v != Value::Null && after.as_ref().is_none_or(|a| compare(v, a) == Ordering::Greater))
            .collect();
        keyed.sort_by(|a, b| compare(&a.0, &b.0).then(a.1.cmp(&b.1)));
        return Ok((keyed.into_iter().map(|(_, i)| i).collect(), Some(at)));
    }
    if config.sorted && !request.order_by.is_empty() {
        let layout = KeyLayout::new(schema, &request.order_by).map_err(ConnectorError::config)?;
        let mut keyed: Vec<(Option<Vec<u8>>, usize)> = Vec::with_capacity(order.len());
        for i in order {
            let row = table.row(i);
            let mut one = RecordBatchBuilder::with_capacity(schema.clone(), 256);
            one.push_row(positions.iter().map(|p| &row[*p])).map_err(|e| ConnectorError::permanent(e.to_string()))?;
            let mut key = Vec::new();
            let ok = layout.encode(&one.finish().record(0), &mut key).is_ok();
            keyed.push((ok.then_some(key), i));
        }
        // Records with a NULL in the identity come last.
        keyed.sort_by(|a, b| match (&a.0, &b.0) {
            (Some(a), Some(b)) => a.cmp(b),
            (a, b) => b.is_some().cmp(&a.is_some()),
        });
        return Ok((keyed.into_iter().map(|(_, i)| i).collect(), None));
    }
    if !config.sorted {
        order.sort_by_key(|i| mix(config.seed ^ mix(*i as u64 ^ 0x00ab_cdef)));
    }
    Ok((order, None))
}

/// A read in progress.
struct ReadState {
    table: Arc<Table>,
    schema: Arc<Schema>,
    positions: Vec<usize>,
    order: Vec<usize>,
    next: usize,
    cursor: Option<usize>,
    batch_rows: usize,
    batch_bytes: usize,
    batches: u32,
    faults: Faults,
    ctx: Context,
    done: bool,
    _open: ReadGuard,
}

type Events = Vec<Result<ReadEvent, ConnectorError>>;

impl ReadState {
    /// The next batch and its checkpoint; `None` at the end.
    fn next_events(&mut self) -> Option<Events> {
        if self.done || self.next >= self.order.len() {
            return None;
        }
        if self.ctx.cancel.is_cancelled() {
            self.done = true;
            return Some(vec![Err(ConnectorError::permanent("the read was canceled"))]);
        }
        self.batches += 1;
        self.faults.on_batch(self.batches, "read");
        let mut builder = RecordBatchBuilder::with_capacity(self.schema.clone(), 64 << 10);
        while self.next < self.order.len() && builder.len() < self.batch_rows && builder.byte_len() < self.batch_bytes {
            let row = self.table.row(self.order[self.next]);
            if let Err(e) = builder.push_row(self.positions.iter().map(|p| &row[*p])) {
                self.done = true;
                return Some(vec![Err(ConnectorError::permanent(e.to_string()))]);
            }
            self.next += 1;
        }
        let batch = builder.finish();
        let checkpoint = match self.cursor {
            Some(at) => match batch.record(batch.len() - 1).get(at) {
                Ok(value) => json!({ "cursor": value.to_json() }),
                Err(e) => return Some(vec![Err(ConnectorError::permanent(e.to_string()))]),
            },
            None => json!({ "position": self.next }),
        };
        Some(vec![Ok(ReadEvent::Batch(batch)), Ok(ReadEvent::Checkpoint(checkpoint))])
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        let stored: Vec<String> = store::with(&self.config.dataset, |ns| ns.objects.keys().cloned().collect());
        let mut streams =
            vec![Table::Generated(self.config.dataset()).stream(&self.config.dataset, self.config.sorted)];
        for name in stored {
            if let Ok(table) = self.table(&name) {
                streams.push(table.stream(&name, self.config.sorted));
            }
        }
        Ok(Catalog { streams })
    }

    fn model_options(&self) -> &'static [ModelOption] {
        &[ModelOption { name: "dataset", input: ModelInput::Stream }]
    }

    async fn model_fields(&self, model: &Json) -> Result<Vec<Field>, ConnectorError> {
        Ok(self.readable(&Readable::Model(model.clone()))?.fields())
    }

    async fn estimate_rows(&self, readable: &Readable) -> Result<Option<u64>, ConnectorError> {
        Ok(Some(self.readable(readable)?.len() as u64))
    }

    async fn sample(&self, model: &Json, limit: usize) -> Result<Vec<Map<String, Json>>, ConnectorError> {
        let table = self.readable(&Readable::Model(model.clone()))?;
        let fields = table.fields();
        let rows = (0..table.len().min(limit)).map(|i| {
            fields.iter().zip(table.row(i)).map(|(field, value)| (field.name.clone(), value.to_json())).collect()
        });
        Ok(rows.collect())
    }

    async fn read(&self, request: ReadRequest) -> Result<Reading, ConnectorError> {
        self.config.faults.on_call(&self.config.dataset, "read")?;
        let table = self.readable(&request.readable)?;
        let fields = table.fields();
        let positions = request
            .fields
            .iter()
            .map(|name| {
                fields
                    .iter()
                    .position(|f| &f.name == name)
                    .ok_or_else(|| ConnectorError::config(format!("the model has no field {name:?}")))
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let schema = Arc::new(Schema { fields: positions.iter().map(|p| fields[*p].clone()).collect() });
        let (order, cursor) = plan(&table, &schema, &positions, &request, &self.config)?;
        let resume = match (cursor, &request.state) {
            (None, Some(state)) => state["position"].as_u64().unwrap_or(0) as usize,
            _ => 0,
        };
        let state = ReadState {
            table: Arc::new(table),
            schema: schema.clone(),
            positions,
            order,
            next: resume,
            cursor,
            batch_rows: request.batch_rows.max(1),
            batch_bytes: request.batch_bytes.max(1),
            batches: 0,
            faults: self.config.faults.clone(),
            ctx: self.ctx.clone(),
            done: false,
            _open: ReadGuard::open(&self.config.dataset),
        };
        let events = stream::unfold(state, |mut state| async move {
            // Batches are computed, not awaited: give the runtime a turn between them.
            tokio::task::yield_now().await;
            state.next_events().map(|events| (stream::iter(events), state))
        })
        .flatten()
        .boxed();
        let sorted = self.config.sorted && !request.order_by.is_empty() && request.cursor.is_none();
        Ok(Reading { schema, sorted, events })
    }
}
