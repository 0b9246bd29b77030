//! The process-global store of the memory connector: per dataset, the objects destinations
//! wrote, the fault counters (so a retry of the same work sees how many injected failures are
//! left) and the reads in progress. Everything lives and dies with the process.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{LazyLock, Mutex, MutexGuard},
};

use syncline_core::record::{Field, Value};

/// One object a destination wrote: its fields, its identity and its records.
#[derive(Debug, Clone, Default)]
pub(super) struct Object {
    pub(super) fields: Vec<Field>,
    pub(super) key: Vec<String>,
    /// Values in `fields` order.
    pub(super) rows: Vec<Vec<Value>>,
}

/// Everything stored under one dataset name.
#[derive(Debug, Default)]
pub(super) struct Namespace {
    pub(super) objects: BTreeMap<String, Object>,
    /// Injected failures already handed out, by kind.
    pub(super) transient_used: u32,
    pub(super) rate_limited_used: u32,
    /// Reads whose stream is still alive.
    pub(super) open_reads: usize,
}

static STORE: LazyLock<Mutex<HashMap<String, Namespace>>> = LazyLock::new(Mutex::default);

/// The store, locked. A panic never happens while it is held (faults panic before taking it),
/// but a poisoned lock is still usable: every change is complete before the lock is released.
fn lock() -> MutexGuard<'static, HashMap<String, Namespace>> {
    STORE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` on the namespace of `dataset`, created empty on first use.
pub(super) fn with<T>(dataset: &str, f: impl FnOnce(&mut Namespace) -> T) -> T {
    f(lock().entry(dataset.to_owned()).or_default())
}

/// A copy of `object` in `dataset`, if it exists.
pub(super) fn snapshot(dataset: &str, object: &str) -> Option<Object> {
    with(dataset, |ns| ns.objects.get(object).cloned())
}

/// How many reads of `dataset` are still open in this process (a dropped or finished read
/// is not).
pub fn open_reads(dataset: &str) -> usize {
    with(dataset, |ns| ns.open_reads)
}

/// Forgets everything stored under `dataset`.
pub fn clear(dataset: &str) {
    lock().remove(dataset);
}

/// Counts a read as open until dropped.
pub(super) struct ReadGuard(String);

impl ReadGuard {
    pub(super) fn open(dataset: &str) -> Self {
        with(dataset, |ns| ns.open_reads += 1);
        Self(dataset.to_owned())
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        with(&self.0, |ns| ns.open_reads = ns.open_reads.saturating_sub(1));
    }
}
