//! Record logs: when its organization keeps them, an execution writes every record it
//! inserted, updated, deleted or failed to deliver — identity, operation, the values sent, the
//! error — as gzip-compressed JSON lines to the log store, one series of part files per type.
//! The values go nowhere else: not to the app log, not to the console log.

use std::io::Write;

use bytes::Bytes;
use flate2::{Compression, write::GzEncoder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use syncline_core::{connector::ConnectorError, payload::PayloadStore, record::Record};
use uuid::Uuid;

/// The types of record log an execution writes.
pub const TYPES: [&str; 4] = ["inserts", "updates", "deletes", "errors"];

/// Lines a part file holds before the next one starts.
const PART_LINES: u64 = 100_000;

/// Where an execution's record logs go in the log store.
pub fn dir(prefix: &str, organization_id: Uuid, (sync_id, execution_id): (Uuid, Uuid)) -> String {
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    format!("record-logs/{organization_id}/{prefix}{sync_id}/{execution_id}")
}

/// The files of one type, and how many lines they hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Files {
    pub count: u64,
    pub files: Vec<String>,
}

/// An execution's record logs as it keeps them (`record_logs`): the directory, and the files
/// of each type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    pub dir: String,
    pub types: std::collections::BTreeMap<String, Files>,
}

/// A record log being written.
pub(crate) struct RecordLog {
    store: PayloadStore,
    index: Index,
    open: Vec<Option<(GzEncoder<Vec<u8>>, u64)>>,
}

impl RecordLog {
    pub(crate) fn new(store: PayloadStore, dir: String) -> Self {
        Self { store, index: Index { dir, types: Default::default() }, open: TYPES.iter().map(|_| None).collect() }
    }

    /// Logs a record of `kind` (one of [`TYPES`]): its identity, the operation, its values
    /// under the target fields' names when given, and the error when it failed.
    pub(crate) async fn log(
        &mut self,
        kind: &'static str,
        (identity, operation): (String, &str),
        values: Option<(&Record<'_>, &[String])>,
        error: Option<&str>,
    ) -> Result<(), ConnectorError> {
        let mut line = Map::new();
        line.insert("identity".into(), Json::String(identity));
        line.insert("operation".into(), Json::String(operation.to_owned()));
        if let Some((record, targets)) = values {
            let values = record.json_under(targets).map_err(|e| ConnectorError::permanent(e.to_string()))?;
            line.insert("values".into(), Json::Object(values));
        }
        if let Some(error) = error {
            line.insert("error".into(), Json::String(error.to_owned()));
        }
        let at = TYPES.iter().position(|t| *t == kind).expect("a record log type");
        let (encoder, lines) =
            self.open[at].get_or_insert_with(|| (GzEncoder::new(Vec::new(), Compression::fast()), 0));
        serde_json::to_writer(&mut *encoder, &line).map_err(stored)?;
        encoder.write_all(b"\n").map_err(stored)?;
        *lines += 1;
        if *lines == PART_LINES {
            self.flush(at).await?;
        }
        Ok(())
    }

    /// Writes the open part of type `at`, if any.
    async fn flush(&mut self, at: usize) -> Result<(), ConnectorError> {
        let Some((encoder, lines)) = self.open[at].take() else { return Ok(()) };
        let files = self.index.types.entry(TYPES[at].to_owned()).or_default();
        let name = format!("{}-{:05}.jsonl.gz", TYPES[at], files.files.len());
        let bytes = encoder.finish().map_err(stored)?;
        self.store.put(&format!("{}/{name}", self.index.dir), Bytes::from(bytes)).await.map_err(stored)?;
        files.count += lines;
        files.files.push(name);
        Ok(())
    }

    /// Writes every open part; returns the index of what the execution logged.
    pub(crate) async fn finish(mut self) -> Result<Index, ConnectorError> {
        for at in 0..TYPES.len() {
            self.flush(at).await?;
        }
        Ok(self.index)
    }
}

/// A failure writing the log (the store may come back).
fn stored(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::transient(format!("writing the record log: {e}"))
}

#[cfg(test)]
mod tests {
    use std::{io::Read, sync::Arc};

    use syncline_core::record::{Field, FieldType, RecordBatchBuilder, Schema};

    use super::*;

    #[tokio::test]
    async fn writes_gzipped_json_lines_per_type() {
        let store = PayloadStore::in_memory();
        let schema = Arc::new(Schema { fields: vec![Field { name: "id".into(), field_type: FieldType::Int64 }] });
        let mut builder = RecordBatchBuilder::with_capacity(schema, 64);
        builder.push_values([Some(&7i64.to_be_bytes()[..])]);
        let batch = builder.finish();
        let mut log = RecordLog::new(store.clone(), "logs/x".into());
        let targets = vec!["user_id".to_owned()];
        log.log("inserts", ("id=7".into(), "insert"), Some((&batch.record(0), &targets)), None).await.expect("logs");
        log.log("errors", ("id=8".into(), "update"), None, Some("too long")).await.expect("logs");
        let index = log.finish().await.expect("finishes");
        assert_eq!(index.types["inserts"].files, vec!["inserts-00000.jsonl.gz"]);
        assert_eq!((index.types["inserts"].count, index.types["errors"].count), (1, 1));
        assert!(!index.types.contains_key("deletes"));
        let bytes = store.get("logs/x/inserts-00000.jsonl.gz").await.expect("stored");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).expect("gzip");
        assert_eq!(text, "{\"identity\":\"id=7\",\"operation\":\"insert\",\"values\":{\"user_id\":7}}\n");
    }
}
