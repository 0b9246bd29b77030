//! The generated dataset: `rows` records computed from their position and the seed, so every
//! process (the worker, a test checking the destination) computes the same values.
//!
//! The identity is composite, `(region, id)`: `id` repeats across the four regions. Each
//! `version` after the first rewrites exactly 1% of the records (one in every hundred
//! consecutive positions), so a sync of version `n + 1` after version `n` sends exactly the
//! records [`Dataset::changed`] names. `happened_at` grows with the position and never changes,
//! so it can be a cursor.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::json;
use syncline_core::record::{Field, FieldType, RecordBatch, RecordBatchBuilder, Schema, Value};

/// The identity of the generated records.
pub const KEY: [&str; 2] = ["region", "id"];
/// The field reads of the generated dataset can resume after.
pub const CURSOR: &str = "happened_at";

const REGIONS: [&str; 4] = ["apac", "eu", "latam", "us"];
const NAMES: [&str; 6] = ["Ada", "Grace", "Zoë", "O'Brien", "naïve \"quoted\"", "Łukasz"];
const EMOJI: [&str; 4] = ["🎉", "🚀", "👩🏽‍💻", "🇺🇳"];
const TAGS: [&str; 5] = ["new", "vip", "churned", "trial", "b2b"];

static SCHEMA: LazyLock<Arc<Schema>> = LazyLock::new(|| {
    let field = |name: &str, field_type: FieldType| Field { name: name.into(), field_type };
    Arc::new(Schema {
        fields: vec![
            field("region", FieldType::Text),
            field("id", FieldType::Int64),
            field("name", FieldType::Text),
            field("amount", FieldType::Decimal { precision: 38, scale: 10 }),
            field(CURSOR, FieldType::TimestampTz),
            field("tags", FieldType::List(Box::new(FieldType::Text))),
            field("payload", FieldType::Json),
            field("flag", FieldType::Bool),
            field("note", FieldType::Text),
            field("day", FieldType::Date),
            field("ref_id", FieldType::Uuid),
            field("score", FieldType::Float64),
        ],
    })
});

/// A generated dataset: how many records, from which seed, at which version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dataset {
    pub rows: u64,
    pub seed: u64,
    pub version: u32,
}

/// A well-mixed 64-bit hash of `value` (splitmix64).
pub(super) fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Dataset {
    /// The fields of every record.
    pub fn schema() -> Arc<Schema> {
        SCHEMA.clone()
    }

    /// Whether `version` rewrote record `i` (one record in every hundred per version).
    fn touched(&self, i: u64, version: u32) -> bool {
        version >= 2
            && i.wrapping_mul(7919).wrapping_add(self.seed).wrapping_add(u64::from(version) * 37).is_multiple_of(100)
    }

    /// Whether record `i` differs between this version and the one before.
    pub fn changed(&self, i: u64) -> bool {
        self.touched(i, self.version)
    }

    /// The last version that rewrote record `i` (1: never rewritten).
    fn revision(&self, i: u64) -> u32 {
        (2..=self.version).rev().find(|v| self.touched(i, *v)).unwrap_or(1)
    }

    /// The values of record `i`, in [`Dataset::schema`] order.
    pub fn row(&self, i: u64) -> Vec<Value> {
        let h = mix(self.seed ^ mix(i));
        let revision = u64::from(self.revision(i));
        let edited = revision > 1;
        let name = format!(
            "{} {i} {}{}",
            NAMES[(h % 6) as usize],
            EMOJI[((h >> 8) % 4) as usize],
            if edited { format!(" (rev {revision})") } else { String::new() }
        );
        let units = (h >> 16) % 5_000_000_000 + revision - 1;
        let amount = format!("{}{units}.{:010}", if h & 1 == 1 { "-" } else { "" }, h % 10_000_000_000);
        let epoch = DateTime::<Utc>::from_timestamp(1_704_067_200, 0).unwrap_or_default();
        let happened_at = epoch + Duration::seconds(i as i64 * 60) + Duration::microseconds((h % 60_000_000) as i64);
        let mut tags: Vec<Value> =
            (0..h % 4).map(|t| Value::Text(TAGS[((h >> (t * 4)) % 5) as usize].into())).collect();
        if edited {
            tags.push(Value::Text("edited".into()));
        }
        let flag = if i % 7 == 3 { Value::Null } else { Value::Bool(h & 2 != 0) };
        let note = if h.is_multiple_of(2) { Value::Null } else { Value::Text(format!("note\t{i}\n")) };
        let day = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default() + Duration::days((h % 2000) as i64);
        let ref_id = uuid::Uuid::from_u64_pair(h, mix(h));
        vec![
            Value::Text(REGIONS[(i % 4) as usize].into()),
            Value::Int((i / 4) as i64 + 1),
            Value::Text(name),
            Value::Decimal(amount),
            Value::TimestampTz(happened_at),
            Value::List(tags),
            Value::Json(
                json!({"i": i, "bucket": h % 1000, "nested": {"revision": revision, "even": i.is_multiple_of(2)}}),
            ),
            flag,
            note,
            Value::Date(day),
            Value::Uuid(ref_id),
            Value::Float((h % 100_000) as f64 / 8.0),
        ]
    }

    /// Every record in position order, as one batch (for tests that compare a destination
    /// with the model).
    pub fn batch(&self) -> RecordBatch {
        let mut builder = RecordBatchBuilder::with_capacity(Self::schema(), 256 * self.rows as usize);
        for i in 0..self.rows {
            builder.push_row(&self.row(i)).expect("generated rows fit the schema");
        }
        builder.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_deterministic_and_a_version_changes_one_percent() {
        let v1 = Dataset { rows: 1000, seed: 7, version: 1 };
        let v2 = Dataset { version: 2, ..v1 };
        assert_eq!(v1.row(17), Dataset { ..v1 }.row(17));
        let changed: Vec<u64> = (0..1000).filter(|i| v1.row(*i) != v2.row(*i)).collect();
        assert_eq!(changed.len(), 10);
        assert!(changed.iter().all(|i| v2.changed(*i)));
        let v3 = Dataset { version: 3, ..v1 };
        let again = (0..1000).filter(|i| v2.row(*i) != v3.row(*i)).count();
        assert_eq!(again, 10, "each version changes another 1%");
        assert_eq!(v1.batch().len(), 1000);
    }

    #[test]
    fn the_identity_is_unique_and_the_cursor_grows() {
        let data = Dataset { rows: 400, seed: 1, version: 1 };
        let keys: std::collections::HashSet<String> =
            (0..400).map(|i| format!("{}/{}", data.row(i)[0], data.row(i)[1])).collect();
        assert_eq!(keys.len(), 400);
        let times: Vec<Value> = (0..400).map(|i| data.row(i)[4].clone()).collect();
        assert!(
            times.windows(2).all(|w| matches!((&w[0], &w[1]), (Value::TimestampTz(a), Value::TimestampTz(b)) if a < b))
        );
    }
}
