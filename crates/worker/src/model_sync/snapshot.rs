//! Diff state: for every record a sync delivered, its identity and a hash of its values,
//! sorted by identity and stored as chunked files under the payload store.
//!
//! Each part file is a sequence of entries `u32 key length, key bytes, u64 row hash`. A
//! `manifest.json` beside the parts names their count and a fingerprint of the sync's mapping
//! and key format; a snapshot whose fingerprint differs is ignored (everything is resent). Keys
//! are identity keys (`syncline_core::record::key`): they compare bytewise.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use syncline_core::payload::{PayloadError, PayloadStore};

const PART_BYTES: usize = 4 << 20;

/// Describes a complete snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub parts: usize,
    pub entries: u64,
    pub fingerprint: String,
}

/// Writes a snapshot's entries in key order.
pub struct SnapshotWriter {
    store: PayloadStore,
    dir: String,
    buf: BytesMut,
    parts: usize,
    entries: u64,
}

impl SnapshotWriter {
    /// Starts a snapshot under `dir`.
    pub fn new(store: PayloadStore, dir: String) -> Self {
        Self { store, dir, buf: BytesMut::with_capacity(PART_BYTES + 1024), parts: 0, entries: 0 }
    }

    /// Appends one entry; keys must come in ascending order.
    pub async fn push(&mut self, key: &[u8], hash: u64) -> Result<(), PayloadError> {
        self.buf.put_u32(key.len() as u32);
        self.buf.put_slice(key);
        self.buf.put_u64(hash);
        self.entries += 1;
        if self.buf.len() >= PART_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), PayloadError> {
        let part = self.buf.split().freeze();
        self.store.put(&format!("{}/part-{:06}.bin", self.dir, self.parts), part).await?;
        self.parts += 1;
        Ok(())
    }

    /// Writes the last part and the manifest; returns the snapshot's directory.
    pub async fn finish(mut self, fingerprint: String) -> Result<String, PayloadError> {
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        let manifest = Manifest { parts: self.parts, entries: self.entries, fingerprint };
        let json = serde_json::to_vec(&manifest).expect("a manifest serializes");
        self.store.put(&format!("{}/manifest.json", self.dir), Bytes::from(json)).await?;
        Ok(self.dir)
    }
}

/// Reads a snapshot's entries in key order, one part in memory at a time.
pub struct SnapshotReader {
    store: PayloadStore,
    dir: String,
    entries: u64,
    parts: usize,
    next_part: usize,
    current: Bytes,
}

impl SnapshotReader {
    /// Opens the snapshot at `dir` if it exists and matches `fingerprint`.
    pub async fn open(store: &PayloadStore, dir: &str, fingerprint: &str) -> Result<Option<Self>, PayloadError> {
        let Some(bytes) = store.get_optional(&format!("{dir}/manifest.json")).await? else { return Ok(None) };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else { return Ok(None) };
        if manifest.fingerprint != fingerprint {
            return Ok(None);
        }
        Ok(Some(Self {
            store: store.clone(),
            dir: dir.to_owned(),
            entries: manifest.entries,
            parts: manifest.parts,
            next_part: 0,
            current: Bytes::new(),
        }))
    }

    /// How many entries the snapshot holds.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The next entry, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<(Bytes, u64)>, PayloadError> {
        while !self.current.has_remaining() {
            if self.next_part == self.parts {
                return Ok(None);
            }
            self.current = self.store.get(&format!("{}/part-{:06}.bin", self.dir, self.next_part)).await?;
            self.next_part += 1;
        }
        let len = self.current.get_u32() as usize;
        let key = self.current.split_to(len);
        let hash = self.current.get_u64();
        Ok(Some((key, hash)))
    }
}

/// How a record compares with what the sync delivered last time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Insert,
    Update,
    Unchanged,
}

/// The records the destination rejected on earlier runs, as this run's diff treats them.
#[derive(Debug, Clone, Default)]
pub struct Rejected {
    /// Their identities, each with whether the record was new to the destination then.
    pub identities: HashMap<Vec<u8>, bool>,
    /// Whether they are sent again even when unchanged; if not, an unchanged one is held back
    /// (still rejected) until it changes.
    pub resend: bool,
    /// The identities held back this run.
    pub held: Held,
}

/// A rejected identity, with whether its record is new to the destination.
pub type Identity = (Vec<u8>, bool);

/// Rejected identities a run held back, shared with whoever commits the run once the diff is
/// done.
#[derive(Debug, Clone, Default)]
pub struct Held(Arc<Mutex<Vec<Identity>>>);

impl Held {
    fn push(&self, key: &[u8], insert: bool) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((key.to_vec(), insert));
    }

    /// The identities held back.
    pub fn take(&self) -> Vec<Identity> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Merges the sorted records of this run against the previous snapshot.
pub struct Differ {
    old: Option<SnapshotReader>,
    peeked: Option<(Bytes, u64)>,
    rejected: Rejected,
}

impl Differ {
    /// A differ against `old` (`None` on a first run or a resync: every record is an insert).
    pub async fn new(mut old: Option<SnapshotReader>, rejected: Rejected) -> Result<Self, PayloadError> {
        let peeked = match old.as_mut() {
            Some(reader) => reader.next().await?,
            None => None,
        };
        Ok(Self { old, peeked, rejected })
    }

    /// Classifies the record with `key` and `hash`; previous entries that sort before `key`
    /// and were not seen again are appended to `gone`.
    pub async fn classify(
        &mut self,
        key: &[u8],
        hash: u64,
        gone: &mut Vec<(Bytes, u64)>,
    ) -> Result<Change, PayloadError> {
        while let Some((old_key, old_hash)) = &self.peeked {
            match old_key.as_ref().cmp(key) {
                std::cmp::Ordering::Less => {
                    gone.push((old_key.clone(), *old_hash));
                    self.advance().await?;
                }
                std::cmp::Ordering::Equal => {
                    let rejected = &self.rejected;
                    let change = match rejected.identities.get(key) {
                        Some(&insert) if rejected.resend || *old_hash != hash => match insert {
                            true => Change::Insert,
                            false => Change::Update,
                        },
                        Some(&insert) => {
                            rejected.held.push(key, insert);
                            Change::Unchanged
                        }
                        None if *old_hash == hash => Change::Unchanged,
                        None => Change::Update,
                    };
                    self.advance().await?;
                    return Ok(change);
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        Ok(Change::Insert)
    }

    /// Notes that previous entry `key` stays as it was, unread by a run that reads some of the
    /// model's records: a record rejected before stays to be sent again.
    pub fn unread(&self, key: &[u8]) {
        if let Some(&insert) = self.rejected.identities.get(key) {
            self.rejected.held.push(key, insert);
        }
    }

    /// Appends every remaining previous entry to `gone`.
    pub async fn remaining(&mut self, gone: &mut Vec<(Bytes, u64)>) -> Result<(), PayloadError> {
        while let Some(entry) = self.peeked.take() {
            gone.push(entry);
            self.advance().await?;
        }
        Ok(())
    }

    async fn advance(&mut self) -> Result<(), PayloadError> {
        self.peeked = match self.old.as_mut() {
            Some(reader) => reader.next().await?,
            None => None,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity key of integer `n` (sign bit flipped, big-endian).
    fn key(n: i64) -> [u8; 8] {
        ((n as u64) ^ (1 << 63)).to_be_bytes()
    }

    async fn snapshot(store: &PayloadStore, entries: &[(i64, u64)]) -> String {
        let mut writer = SnapshotWriter::new(store.clone(), "snap/a".into());
        for (k, h) in entries {
            writer.push(&key(*k), *h).await.expect("push");
        }
        writer.finish("fp".into()).await.expect("finish")
    }

    #[tokio::test]
    async fn round_trips_entries() {
        let store = PayloadStore::in_memory();
        let dir = snapshot(&store, &[(-3, 1), (7, 2)]).await;
        let mut reader = SnapshotReader::open(&store, &dir, "fp").await.expect("open").expect("exists");
        assert_eq!(reader.next().await.expect("next"), Some((Bytes::copy_from_slice(&key(-3)), 1)));
        assert_eq!(reader.next().await.expect("next"), Some((Bytes::copy_from_slice(&key(7)), 2)));
        assert_eq!(reader.next().await.expect("next"), None);
        assert!(SnapshotReader::open(&store, &dir, "other").await.expect("open").is_none());
        assert!(SnapshotReader::open(&store, "missing", "fp").await.expect("open").is_none());
    }

    #[tokio::test]
    async fn classifies_inserts_updates_and_deletes() {
        let store = PayloadStore::in_memory();
        let dir = snapshot(&store, &[(1, 10), (2, 20), (4, 40), (6, 60)]).await;
        let reader = SnapshotReader::open(&store, &dir, "fp").await.expect("open");
        let identities = HashMap::from([(key(4).to_vec(), false), (key(1).to_vec(), true)]);
        let rejected = Rejected { identities, resend: true, held: Held::default() };
        let mut differ = Differ::new(reader, rejected.clone()).await.expect("differ");
        let mut deleted = Vec::new();
        let mut changes = Vec::new();
        for (k, h) in [(1, 10), (3, 30), (4, 40), (5, 50), (6, 61)] {
            changes.push(differ.classify(&key(k), h, &mut deleted).await.expect("classify"));
        }
        differ.remaining(&mut deleted).await.expect("rest");
        assert_eq!(changes, vec![Change::Insert, Change::Insert, Change::Update, Change::Insert, Change::Update]);
        assert_eq!(deleted, vec![(Bytes::copy_from_slice(&key(2)), 20)]);
        assert!(rejected.held.take().is_empty(), "rejected records are resent");
    }

    #[tokio::test]
    async fn rejected_records_wait_until_they_change_unless_resent() {
        let store = PayloadStore::in_memory();
        let dir = snapshot(&store, &[(1, 10), (2, 20), (3, 30)]).await;
        let reader = SnapshotReader::open(&store, &dir, "fp").await.expect("open");
        let identities = HashMap::from([(key(1).to_vec(), true), (key(2).to_vec(), false), (key(3).to_vec(), true)]);
        let rejected = Rejected { identities, resend: false, held: Held::default() };
        let mut differ = Differ::new(reader, rejected.clone()).await.expect("differ");
        let mut gone = Vec::new();
        let mut changes = Vec::new();
        // 1 and 2 are unchanged, 3 changed since it was rejected.
        for (k, h) in [(1, 10), (2, 20), (3, 31)] {
            changes.push(differ.classify(&key(k), h, &mut gone).await.expect("classify"));
        }
        assert_eq!(changes, vec![Change::Unchanged, Change::Unchanged, Change::Insert]);
        assert_eq!(rejected.held.take(), vec![(key(1).to_vec(), true), (key(2).to_vec(), false)]);
        differ.unread(&key(2));
        differ.unread(&key(9));
        assert_eq!(rejected.held.take(), vec![(key(2).to_vec(), false)], "an unread rejected record stays rejected");
    }
}
