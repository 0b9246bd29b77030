//! Delivering one batch to a route's warehouse, so that one bad event never holds up the rest:
//! - an event that cannot be laid out goes straight to dead letters;
//! - a load the warehouse refuses for its data (a value its column cannot take) is split in
//!   halves and each half loaded again, until the events at fault stand alone and go to dead
//!   letters with the warehouse's reason;
//! - a warehouse that fails otherwise (down, refusing the credentials, out of space) is tried
//!   again with backoff for the retry budget, after which the events still undelivered go to
//!   dead letters with the last error and the number of attempts.
//!
//! Loads are idempotent, so an event loaded again (a retry whose commit was lost, a crash
//! before the position was recorded, a replay) adds nothing and is counted as a duplicate.

use std::{
    collections::{HashMap, HashSet},
    ops::Range,
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value as Json};
use syncline_core::{
    connector::{ErrorClass, EventWarehouse, TableRows},
    events::{
        layout::{self, Merge, Row},
        store::StoredEvent,
    },
};

use super::{
    lookup,
    store::Route,
    users::{self, Traits},
};

/// The first wait before trying a failing warehouse again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What delivering a batch came to.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Events whose rows were new to the warehouse.
    pub delivered: i64,
    /// Events the warehouse had already.
    pub deduplicated: i64,
    /// Events the route's filters left out.
    pub filtered: i64,
    /// Events that could not be delivered.
    pub failed: Vec<Failure>,
}

/// An event of the batch that could not be delivered, and why.
#[derive(Debug)]
pub struct Failure {
    /// Its place in the batch.
    pub index: usize,
    pub reason: String,
    pub attempts: i32,
}

/// The messages of `batch`, or why one cannot be read.
pub fn parse(batch: &[StoredEvent]) -> Vec<Result<Map<String, Json>, String>> {
    batch
        .iter()
        .map(|event| serde_json::from_slice(&event.message).map_err(|e| format!("the stored message is not JSON: {e}")))
        .collect()
}

/// The rows each of `messages` becomes in `route`'s layout, enriched with its user's `traits`
/// and `looked_up` fields and stamped with the load time (none when the route's filters leave
/// it out), or why it cannot be laid out.
pub fn lay_out(
    route: &Route,
    messages: &[Result<Map<String, Json>, String>],
    (traits, looked_up): (&Traits, &Traits),
) -> Vec<Result<Vec<Row>, String>> {
    let loaded_at = Json::String(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
    messages
        .iter()
        .map(|message| {
            let message = message.as_ref().map_err(Clone::clone)?;
            if !route.filter.takes(message) {
                return Ok(vec![]);
            }
            let mut extra = users::columns(&route.enrichment, traits, message);
            if let Some(lookup) = &route.lookup {
                extra.extend(lookup::columns(lookup, looked_up, message));
            }
            extra.push(("uuid_ts".to_owned(), loaded_at.clone()));
            layout::rows(route.layout, &route.source_name, message, &extra)
        })
        .collect()
}

/// Delivers the events laid out as `rows` (by [`lay_out`]) to `warehouse` for `route`, trying a
/// failing warehouse for `retry_for`.
pub async fn deliver(
    warehouse: &dyn EventWarehouse,
    route: &Route,
    rows: Vec<Result<Vec<Row>, String>>,
    retry_for: Duration,
) -> Delivered {
    let mut outcome = Delivered::default();
    let failure = |index, reason, attempts| Failure { index, reason, attempts };
    let mut laid_out: Vec<(usize, Vec<Row>)> = Vec::with_capacity(rows.len());
    for (i, rows) in rows.into_iter().enumerate() {
        match rows {
            Ok(rows) if rows.is_empty() => outcome.filtered += 1,
            Ok(rows) => laid_out.push((i, rows)),
            Err(reason) => outcome.failed.push(failure(i, reason, 1)),
        }
    }
    let mut pending: Vec<Range<usize>> = Vec::new();
    pending.push(0..laid_out.len());
    let mut failing_since: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        let part = &laid_out[range.clone()];
        attempts += 1;
        let (tables, primary) = tables(part);
        match warehouse.load(&route.schema, &tables).await {
            Ok(loaded) => {
                let new: u64 =
                    loaded.iter().zip(&tables).filter(|(_, t)| primary.contains(&t.table)).map(|(n, _)| n).sum();
                outcome.delivered += new as i64;
                outcome.deduplicated += part.len() as i64 - new as i64;
                (failing_since, backoff) = (None, FIRST_BACKOFF);
            }
            Err(e) if e.class == ErrorClass::Permanent && range.len() > 1 => {
                let middle = range.start + range.len() / 2;
                pending.push(middle..range.end);
                pending.push(range.start..middle);
            }
            Err(e) if e.class == ErrorClass::Permanent => {
                outcome.failed.push(failure(part[0].0, e.message, attempts));
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= retry_for {
                    let reason = format!(
                        "the destination failed for {} s, past the retry budget: {}",
                        since.elapsed().as_secs(),
                        e.message
                    );
                    for range in std::iter::once(range).chain(pending.drain(..)) {
                        for (i, _) in &laid_out[range] {
                            outcome.failed.push(failure(*i, reason.clone(), attempts));
                        }
                    }
                    continue;
                }
                let wait = match e.class {
                    ErrorClass::RateLimited { retry_after: Some(after) } => after,
                    _ => backoff,
                };
                tracing::warn!(route_id = %route.id, error = %e.message, wait_ms = wait.as_millis() as u64,
                               "the destination failed; trying again");
                tokio::time::sleep(wait.min(MAX_BACKOFF)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pending.push(range);
            }
        }
    }
    outcome
}

/// `part`'s rows by table, in the order tables first appear (each `users` id once, its
/// columns merged newest last), and the tables that hold the events' own rows.
fn tables(part: &[(usize, Vec<Row>)]) -> (Vec<TableRows>, HashSet<String>) {
    let mut tables: Vec<TableRows> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut latest: HashMap<(usize, String), usize> = HashMap::new();
    let mut primary = HashSet::new();
    for (_, rows) in part {
        for (n, row) in rows.iter().enumerate() {
            if n == 0 {
                primary.insert(row.table.clone());
            }
            let t = *index.entry(row.table.clone()).or_insert_with(|| {
                tables.push(TableRows { table: row.table.clone(), merge: row.merge, rows: Vec::new() });
                tables.len() - 1
            });
            let rows = &mut tables[t].rows;
            let id = row.values.get("id").and_then(Json::as_str).unwrap_or_default().to_owned();
            match row.merge {
                Merge::Latest => match latest.get(&(t, id.clone())) {
                    Some(&at) => rows[at].extend(row.values.clone()),
                    None => {
                        latest.insert((t, id), rows.len());
                        rows.push(row.values.clone());
                    }
                },
                Merge::Keep => rows.push(row.values.clone()),
            }
        }
    }
    (tables, primary)
}
