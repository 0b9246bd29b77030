//! Reviewing a run before it writes: the tally of what it would insert, update and delete,
//! with samples; the blast-radius check; and the plan a waiting execution keeps, from which the
//! run a user approves carries on without reading the model again.

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use syncline_core::record::{Record, Schema};

use super::plan::RetryIdentity;

/// Samples kept per operation.
const SAMPLES: usize = 10;

/// What a run would write, counted as the extract stage decides it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub unchanged: u64,
    /// Records the sync had delivered before the run (its last snapshot's size).
    pub delivered: u64,
    pub samples: Samples,
}

/// The first records of each operation: identity, and the values to be written by target field.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Samples {
    pub inserts: Vec<Json>,
    pub updates: Vec<Json>,
    pub deletes: Vec<Json>,
}

/// A record as a sample: its identity and its values under the target fields' names.
fn sample(identity: String, record: Option<(&Record<'_>, &[String])>) -> Json {
    let values = record.map(|(record, targets)| {
        record
            .json_under(targets)
            .unwrap_or_else(|e| serde_json::Map::from_iter([("error".to_owned(), json!(e.to_string()))]))
    });
    match values {
        Some(values) => json!({ "identity": identity, "values": values }),
        None => json!({ "identity": identity }),
    }
}

impl Tally {
    /// Counts a record written as an insert (`true`) or an update; `identity` names it.
    pub fn upsert(&mut self, insert: bool, identity: impl FnOnce() -> String, record: &Record<'_>, targets: &[String]) {
        let (count, samples) = match insert {
            true => (&mut self.inserts, &mut self.samples.inserts),
            false => (&mut self.updates, &mut self.samples.updates),
        };
        *count += 1;
        if samples.len() < SAMPLES {
            samples.push(sample(identity(), Some((record, targets))));
        }
    }

    /// Counts a record to delete, named by `identity`.
    pub fn delete(&mut self, identity: impl FnOnce() -> String) {
        self.deletes += 1;
        if self.samples.deletes.len() < SAMPLES {
            self.samples.deletes.push(sample(identity(), None));
        }
    }
}

/// What a run that waits for approval kept, to be carried out by the run after the approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kept {
    /// The records' schema and identity fields, as the change chunks were written.
    pub schema: Schema,
    pub identity: Vec<String>,
    /// The change chunks in the payload store, in order.
    pub chunks: Vec<String>,
    /// The new snapshot, and the one it replaces.
    pub snapshot: Option<String>,
    pub superseded: Option<String>,
    /// The mapping's fingerprint when planned: a sync changed since is planned again.
    pub fingerprint: String,
    /// Records read, and the ones the model got wrong (recorded when planned).
    pub read: i64,
    pub rejected: i64,
    /// Records rejected before that the diff held back unchanged (see
    /// `auto_retry_record_errors`): still rejected after the run.
    #[serde(default)]
    pub held: Vec<RetryIdentity>,
}

/// A run's plan as the execution shows it (`plan`), with what a waiting run kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    #[serde(flatten)]
    pub tally: Tally,
    /// The blast-radius limits the plan exceeds (waiting for approval when any).
    pub exceeded: Vec<String>,
    /// A test run: planned only, nothing written.
    pub test: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<Kept>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use syncline_core::record::{Field, FieldType, RecordBatchBuilder};

    use super::*;

    #[test]
    fn counts_everything_and_samples_the_first() {
        let schema = Arc::new(Schema { fields: vec![Field { name: "id".into(), field_type: FieldType::Int64 }] });
        let mut builder = RecordBatchBuilder::with_capacity(schema, 64);
        for n in 0..12i64 {
            builder.push_values([Some(&n.to_be_bytes()[..])]);
        }
        let batch = builder.finish();
        let mut tally = Tally::default();
        let targets = vec!["user_id".to_owned()];
        for record in batch.records() {
            tally.upsert(record.index() % 2 == 0, || format!("id={}", record.index()), &record, &targets);
            tally.delete(|| format!("id={}", record.index()));
        }
        assert_eq!((tally.inserts, tally.updates, tally.deletes), (6, 6, 12));
        assert_eq!(tally.samples.inserts.len(), 6);
        assert_eq!(tally.samples.deletes.len(), SAMPLES);
        assert_eq!(tally.samples.inserts[1], json!({"identity": "id=2", "values": {"user_id": 2}}));
        assert_eq!(tally.samples.deletes[0], json!({"identity": "id=0"}));
    }
}
