//! External sort: puts the records of a source that cannot sort into identity-key order in
//! bounded memory. Records are gathered into runs of about [`RUN_BYTES`]; a run that fills up
//! is sorted and spilled to the payload store (`JOB_PAYLOAD_PATH`) in parts, and the runs are
//! then merged reading one part of each at a time. Input that fits in one run never leaves
//! memory. Records without an identity come first, unsorted: the diff rejects them.
//!
//! A spilled part is a sequence of entries `u32 key length, key, u32 tuple length, tuple`.

use std::{cmp::Reverse, collections::BinaryHeap, sync::Arc};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use syncline_core::{
    connector::{ConnectorError, ReadEvent},
    payload::PayloadStore,
    record::{RecordBatch, RecordBatchBuilder, Schema, key::KeyLayout},
};

/// Bytes of records one run holds in memory before it is spilled.
pub(crate) const RUN_BYTES: usize = 32 << 20;
const PART_BYTES: usize = 4 << 20;

type Events = futures::stream::BoxStream<'static, Result<ReadEvent, ConnectorError>>;

/// Where and how to sort.
pub(crate) struct Sorter {
    pub(crate) store: PayloadStore,
    /// Payload prefix for the spilled runs (removed with the execution's other payloads).
    pub(crate) dir: String,
    pub(crate) layout: KeyLayout,
    pub(crate) schema: Arc<Schema>,
    pub(crate) run_bytes: usize,
    pub(crate) batch_rows: usize,
}

/// Records in key order, handed out batch by batch.
pub(crate) struct Sorted {
    schema: Arc<Schema>,
    batch_rows: usize,
    /// Records without an identity, handed out first.
    unkeyed: Vec<Bytes>,
    source: Merge,
}

enum Merge {
    /// Everything fitted in one run: sorted, in reverse so the next entry pops off the end.
    Memory(Vec<(Vec<u8>, Bytes)>),
    /// Spilled runs, merged through a heap of each run's next key.
    Runs { runs: Vec<RunReader>, heads: BinaryHeap<Reverse<(Vec<u8>, usize)>>, tuples: Vec<Option<Bytes>> },
}

fn transient(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::transient(format!("sorting the source's records: {e}"))
}

impl Sorter {
    /// Reads every event of `events` and sorts the records.
    pub(crate) async fn sort(self, mut events: Events) -> Result<Sorted, ConnectorError> {
        let mut entries: Vec<(Vec<u8>, Bytes)> = Vec::new();
        let mut unkeyed = Vec::new();
        let (mut held, mut runs) = (0usize, Vec::new());
        while let Some(event) = events.next().await {
            let ReadEvent::Batch(batch) = event? else { continue };
            for record in batch.records() {
                let tuple = batch.slice_data(record.index()..record.index() + 1);
                let mut key = Vec::new();
                match self.layout.encode(&record, &mut key) {
                    Ok(()) => {
                        held += key.len() + tuple.len();
                        entries.push((key, tuple));
                    }
                    Err(_) => unkeyed.push(tuple),
                }
            }
            if held >= self.run_bytes {
                runs.push(self.spill(runs.len(), &mut entries).await?);
                held = 0;
            }
        }
        let source = if runs.is_empty() {
            entries.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            Merge::Memory(entries)
        } else {
            if !entries.is_empty() {
                runs.push(self.spill(runs.len(), &mut entries).await?);
            }
            let mut readers: Vec<RunReader> = runs
                .into_iter()
                .map(|parts| RunReader {
                    store: self.store.clone(),
                    dir: parts.0,
                    parts: parts.1,
                    next: 0,
                    current: Bytes::new(),
                })
                .collect();
            let mut heads = BinaryHeap::new();
            let mut tuples = Vec::with_capacity(readers.len());
            for (i, reader) in readers.iter_mut().enumerate() {
                let head = reader.next().await?;
                tuples.push(head.as_ref().map(|(_, t)| t.clone()));
                if let Some((key, _)) = head {
                    heads.push(Reverse((key, i)));
                }
            }
            Merge::Runs { runs: readers, heads, tuples }
        };
        Ok(Sorted { schema: self.schema, batch_rows: self.batch_rows.max(1), unkeyed, source })
    }

    /// Sorts `entries` and writes them as run `n`; returns its directory and part count.
    async fn spill(&self, n: usize, entries: &mut Vec<(Vec<u8>, Bytes)>) -> Result<(String, usize), ConnectorError> {
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let dir = format!("{}/run-{n:04}", self.dir);
        let mut parts = 0;
        let mut buf = BytesMut::with_capacity(PART_BYTES + 1024);
        for (key, tuple) in entries.drain(..) {
            buf.put_u32(key.len() as u32);
            buf.put_slice(&key);
            buf.put_u32(tuple.len() as u32);
            buf.put_slice(&tuple);
            if buf.len() >= PART_BYTES {
                self.store.put(&format!("{dir}/part-{parts:06}.bin"), buf.split().freeze()).await.map_err(transient)?;
                parts += 1;
            }
        }
        if !buf.is_empty() {
            self.store.put(&format!("{dir}/part-{parts:06}.bin"), buf.freeze()).await.map_err(transient)?;
            parts += 1;
        }
        Ok((dir, parts))
    }
}

/// Reads one spilled run, one part in memory at a time.
struct RunReader {
    store: PayloadStore,
    dir: String,
    parts: usize,
    next: usize,
    current: Bytes,
}

impl RunReader {
    async fn next(&mut self) -> Result<Option<(Vec<u8>, Bytes)>, ConnectorError> {
        while !self.current.has_remaining() {
            if self.next == self.parts {
                return Ok(None);
            }
            let key = format!("{}/part-{:06}.bin", self.dir, self.next);
            self.current = self.store.get(&key).await.map_err(transient)?;
            self.next += 1;
        }
        let mut take = |what: &str| -> Result<Bytes, ConnectorError> {
            if self.current.remaining() < 4 {
                return Err(transient(format!("run {} is truncated in a {what}", self.dir)));
            }
            let len = self.current.get_u32() as usize;
            if self.current.remaining() < len {
                return Err(transient(format!("run {} is truncated in a {what}", self.dir)));
            }
            Ok(self.current.split_to(len))
        };
        let key = take("key")?.to_vec();
        let tuple = take("record")?;
        Ok(Some((key, tuple)))
    }
}

impl Sorted {
    /// The next batch of records in key order, `None` at the end.
    pub(crate) async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let mut builder = RecordBatchBuilder::with_capacity(self.schema.clone(), 1 << 16);
        while builder.len() < self.batch_rows {
            let tuple = match self.unkeyed.pop() {
                Some(tuple) => tuple,
                None => match self.next_tuple().await? {
                    Some(tuple) => tuple,
                    None => break,
                },
            };
            builder.push_tuple(&tuple);
        }
        Ok((!builder.is_empty()).then(|| builder.finish()))
    }

    async fn next_tuple(&mut self) -> Result<Option<Bytes>, ConnectorError> {
        match &mut self.source {
            Merge::Memory(entries) => Ok(entries.pop().map(|(_, tuple)| tuple)),
            Merge::Runs { runs, heads, tuples } => {
                let Some(Reverse((_, i))) = heads.pop() else { return Ok(None) };
                let tuple = tuples[i].take();
                if let Some((key, next)) = runs[i].next().await? {
                    tuples[i] = Some(next);
                    heads.push(Reverse((key, i)));
                }
                Ok(tuple)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use syncline_core::record::{Field, FieldType, Value};

    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema {
            fields: vec![
                Field { name: "region".into(), field_type: FieldType::Text },
                Field { name: "id".into(), field_type: FieldType::Int32 },
            ],
        })
    }

    /// `n` records in a scrambled order, a few without an identity, in batches of 7.
    fn events(n: i64) -> Events {
        let mut batches = Vec::new();
        let mut builder = RecordBatchBuilder::with_capacity(schema(), 1024);
        for i in 0..n {
            let id = (i * 7919) % n;
            let region = if id % 2 == 0 { Value::Text("eu".into()) } else { Value::Text("us".into()) };
            let id = if i % 50 == 49 { Value::Null } else { Value::Int(id) };
            builder.push_row(&[region, id]).expect("row");
            if builder.len() == 7 {
                batches.push(Ok(ReadEvent::Batch(
                    std::mem::replace(&mut builder, RecordBatchBuilder::with_capacity(schema(), 1024)).finish(),
                )));
            }
        }
        batches.push(Ok(ReadEvent::Batch(builder.finish())));
        futures::stream::iter(batches).boxed()
    }

    async fn drain(run_bytes: usize) -> (Vec<Vec<u8>>, usize) {
        let layout = KeyLayout::new(&schema(), &["region".into(), "id".into()]).expect("layout");
        let sorter = Sorter {
            store: PayloadStore::in_memory(),
            dir: "sort".into(),
            layout: layout.clone(),
            schema: schema(),
            run_bytes,
            batch_rows: 10,
        };
        let mut sorted = sorter.sort(events(1000)).await.expect("sorts");
        let (mut keys, mut unkeyed) = (Vec::new(), 0);
        while let Some(batch) = sorted.next_batch().await.expect("batch") {
            assert!(batch.len() <= 10);
            for record in batch.records() {
                let mut key = Vec::new();
                match layout.encode(&record, &mut key) {
                    Ok(()) => keys.push(key),
                    Err(_) => unkeyed += 1,
                }
            }
        }
        (keys, unkeyed)
    }

    #[tokio::test]
    async fn sorts_in_memory_and_through_spilled_runs_alike() {
        let (in_memory, unkeyed) = drain(RUN_BYTES).await;
        let (spilled, spilled_unkeyed) = drain(512).await;
        assert_eq!((in_memory.len(), unkeyed), (980, 20));
        assert!(in_memory.windows(2).all(|w| w[0] < w[1]), "in key order");
        assert_eq!(spilled, in_memory);
        assert_eq!(spilled_unkeyed, 20);
    }
}
