//! The event store: accepted events, durable before the producer hears so. Each api process
//! has one writer, which appends to partitions of its own (tables `events_<n>`, listed in
//! `event_partitions`) and numbers their events itself, so within a partition the order of the
//! numbers is the order of the commits. Concurrent requests share a commit: while one binary
//! `COPY` commits, the requests that arrive wait and then go together in the next (group
//! commit), so a busy api makes few, large transactions and an idle one answers at once.
//!
//! Each writer counts what it committed, by source, about once a second (after answering, so
//! no request waits for it); [`accepted`] adds what is not counted yet.
//!
//! A request the writer has no room for is refused at once ([`WriteError::Busy`]) rather than
//! queued without bound; one whose `COPY` fails is refused whole (nothing of it was stored).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{IsolationLevel, binary_copy::BinaryCopyInWriter, error::SqlState, types::Type};
use uuid::Uuid;

use super::message::Message;
use crate::db::{DbError, DbPool};

/// Requests waiting for the writer, at most.
const WAITING: usize = 1024;
/// Events a partition holds, and how long it is written, before its writer starts the next one
/// (so an idle source's partitions close too and can be dropped).
const PARTITION_EVENTS: i64 = 1_000_000;
const PARTITION_AGE: std::time::Duration = std::time::Duration::from_secs(3600);
/// How often a writer counts what it committed into `event_source_counts`.
const COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// One event to store: its source and its normalized message, serialized by the request that
/// brought it (the writer, which every request waits on, only copies bytes).
#[derive(Debug, Clone)]
pub struct NewEvent {
    source_id: Uuid,
    message_id: String,
    received_at: DateTime<Utc>,
    message: Vec<u8>,
}

impl NewEvent {
    /// `message` of source `source_id`, ready to store.
    pub fn new(source_id: Uuid, message: Message) -> Self {
        let bytes = serde_json::to_vec(&message.body).expect("a JSON object serializes");
        Self { source_id, message_id: message.message_id, received_at: message.received_at, message: bytes }
    }
}

/// Why events were not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// More requests wait than the writer takes: try again shortly.
    #[error("the event store is busy")]
    Busy,
    /// The state database refused or could not be reached.
    #[error("the event store cannot write: {0}")]
    Store(String),
}

/// Events of one request and who waits for their commit.
struct Pending {
    events: Vec<NewEvent>,
    done: oneshot::Sender<Result<(), WriteError>>,
}

/// The api process's event writer.
#[derive(Clone)]
pub struct EventWriter {
    tx: mpsc::Sender<Pending>,
}

impl EventWriter {
    /// Starts the writer of process `writer` (a name no other process uses).
    pub fn start(pool: DbPool, writer: String) -> Self {
        let (tx, rx) = mpsc::channel(WAITING);
        tokio::spawn(run(pool, writer, rx));
        Self { tx }
    }

    /// Stores `events`; returns once they are committed.
    pub async fn write(&self, events: Vec<NewEvent>) -> Result<(), WriteError> {
        let (done, committed) = oneshot::channel();
        self.tx.try_send(Pending { events, done }).map_err(|_| WriteError::Busy)?;
        committed.await.map_err(|_| WriteError::Store("the event writer stopped".into()))?
    }
}

/// The partition a writer appends to.
struct Partition {
    id: i64,
    table: String,
    /// The number the next event gets.
    next: i64,
    started: std::time::Instant,
    /// Events committed but not yet counted in `event_source_counts`, by source, with the
    /// newest arrival; and when they were last counted.
    uncounted: HashMap<Uuid, (i64, DateTime<Utc>)>,
    counted_at: std::time::Instant,
}

async fn run(pool: DbPool, writer: String, mut rx: mpsc::Receiver<Pending>) {
    let mut partition = None;
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let result = commit(&pool, &writer, &mut partition, &group).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "events were not stored");
        }
        for pending in group {
            let _ = pending.done.send(result.clone());
        }
        if let Some(current) = partition.as_mut().filter(|p| p.counted_at.elapsed() >= COUNT_EVERY)
            && let Ok(client) = pool.get().await
        {
            count(&client, current).await;
        }
    }
}

/// Appends the events of `group` in one transaction, starting a partition when needed.
async fn commit(
    pool: &DbPool,
    writer: &str,
    partition: &mut Option<Partition>,
    group: &[Pending],
) -> Result<(), WriteError> {
    let store = |e: &dyn std::fmt::Display| WriteError::Store(e.to_string());
    let client = pool.get().await.map_err(|e| store(&e))?;
    let current = match partition.take() {
        Some(current) if current.next <= PARTITION_EVENTS && current.started.elapsed() < PARTITION_AGE => current,
        full => {
            if let Some(mut full) = full {
                count(&client, &mut full).await;
            }
            start_partition(&client, writer).await.map_err(|e| store(&e))?
        }
    };
    let sql =
        format!("copy {} (seq, source_id, message_id, received_at, message) from stdin (format binary)", current.table);
    let sink = client.copy_in(&sql).await.map_err(|e| store(&e))?;
    let types = [Type::INT8, Type::UUID, Type::TEXT, Type::TIMESTAMPTZ, Type::BYTEA];
    let copy = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(copy);
    let mut seq = current.next;
    for event in group.iter().flat_map(|p| &p.events) {
        let row: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&seq, &event.source_id, &event.message_id, &event.received_at, &event.message];
        copy.as_mut().write(&row).await.map_err(|e| store(&e))?;
        seq += 1;
    }
    copy.finish().await.map_err(|e| store(&e))?;
    let mut current = current;
    for event in group.iter().flat_map(|p| &p.events) {
        let count = current.uncounted.entry(event.source_id).or_insert((0, event.received_at));
        *count = (count.0 + 1, count.1.max(event.received_at));
    }
    *partition = Some(Partition { next: seq, ..current });
    Ok(())
}

/// Adds what `partition` committed since its last count to `event_source_counts`, and moves
/// its `counted_through`, in one transaction. A count that fails stays to count next time (and
/// readers count what is past `counted_through` themselves meanwhile).
async fn count(client: &deadpool_postgres::Client, partition: &mut Partition) {
    partition.counted_at = std::time::Instant::now();
    if partition.uncounted.is_empty() {
        return;
    }
    let (sources, counts): (Vec<Uuid>, Vec<(i64, DateTime<Utc>)>) =
        partition.uncounted.iter().map(|(source, count)| (*source, *count)).unzip();
    let (counts, latest): (Vec<i64>, Vec<DateTime<Utc>>) = counts.into_iter().unzip();
    let (id, through) = (partition.id, partition.next - 1);
    let counted = async {
        client.batch_execute("begin").await?;
        client
            .execute(
                "insert into event_source_counts (source_id, partition_id, accepted, last_received_at)
                 select s, $4, n, t from unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) as u(s, n, t)
                 on conflict (source_id, partition_id) do update set
                     accepted = event_source_counts.accepted + excluded.accepted,
                     last_received_at = greatest(event_source_counts.last_received_at, excluded.last_received_at)",
                &[&sources, &counts, &latest, &id],
            )
            .await?;
        client.execute("update event_partitions set counted_through = $2 where id = $1", &[&id, &through]).await?;
        client.batch_execute("commit").await
    }
    .await;
    match counted {
        Ok(()) => partition.uncounted.clear(),
        Err(e) => {
            let _ = client.batch_execute("rollback").await;
            tracing::warn!(error = %e, "could not count accepted events");
        }
    }
}

/// Creates a new partition's table, then registers it as `writer`'s: readers only see
/// partitions whose table exists.
async fn start_partition(client: &tokio_postgres::Client, writer: &str) -> Result<Partition, tokio_postgres::Error> {
    let id: i64 = client.query_one("select nextval('event_partitions_id_seq')", &[]).await?.get(0);
    let table = partition_table(id);
    client
        .batch_execute(&format!(
            "create table {table} (seq bigint not null, source_id uuid not null, message_id text not null,
                received_at timestamptz not null, message bytea not null);
             create index on {table} using brin (seq);
             create index on {table} using brin (received_at)"
        ))
        .await?;
    client.execute("insert into event_partitions (id, writer) values ($1, $2)", &[&id, &writer]).await?;
    let now = std::time::Instant::now();
    Ok(Partition { id, table, next: 1, started: now, uncounted: HashMap::new(), counted_at: now })
}

/// The table of partition `id`.
fn partition_table(id: i64) -> String {
    format!("events_{id}")
}

/// A stored event, as deliveries read it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub partition: i64,
    pub seq: i64,
    pub message_id: String,
    pub received_at: DateTime<Utc>,
    /// The normalized message, as JSON.
    pub message: Vec<u8>,
}

/// The partitions of the store, oldest first.
pub async fn partitions(client: &impl GenericClient) -> Result<Vec<i64>, DbError> {
    let rows = client.query("select id from event_partitions order by id", &[]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Up to `limit` events of source `source_id` in partition `partition` after number `after`,
/// in order (none when the partition was dropped meanwhile).
pub async fn read_after(
    client: &impl GenericClient,
    partition: i64,
    source_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, DbError> {
    let sql = format!(
        "select seq, message_id, received_at, message from {} where source_id = $1 and seq > $2 order by seq limit $3",
        partition_table(partition)
    );
    let rows = match client.query(&sql, &[&source_id, &after, &limit]).await {
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(vec![]),
        rows => rows?,
    };
    Ok(rows.iter().map(|r| stored(partition, r)).collect())
}

/// The number of the first event of source `source_id` in partition `partition` received at
/// or after `since` (`None` when there is none, or the partition was dropped meanwhile).
pub async fn first_since(
    client: &impl GenericClient,
    partition: i64,
    source_id: Uuid,
    since: DateTime<Utc>,
) -> Result<Option<i64>, DbError> {
    let sql = format!("select min(seq) from {} where source_id = $1 and received_at >= $2", partition_table(partition));
    match client.query_one(&sql, &[&source_id, &since]).await {
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
        row => Ok(row?.get(0)),
    }
}

/// The newest events of source `source_id` in partition `partition` received since `since`,
/// newest first, at most `limit`.
pub async fn newest(
    client: &impl GenericClient,
    partition: i64,
    source_id: Uuid,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<StoredEvent>, DbError> {
    let sql = format!(
        "select seq, message_id, received_at, message from {} where source_id = $1 and received_at >= $2
         order by seq desc limit $3",
        partition_table(partition)
    );
    let rows = match client.query(&sql, &[&source_id, &since, &limit]).await {
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(vec![]),
        rows => rows?,
    };
    Ok(rows.iter().map(|r| stored(partition, r)).collect())
}

fn stored(partition: i64, row: &tokio_postgres::Row) -> StoredEvent {
    StoredEvent { partition, seq: row.get(0), message_id: row.get(1), received_at: row.get(2), message: row.get(3) }
}

/// Drops the partitions that are done with: a newer partition exists (its writer moved on, or
/// another writer is newer), its newest event arrived more than `retention` ago, and every
/// route has delivered (or dead-lettered) every event of its source in it. Each is checked
/// under a lock on its table, so no event is committed into it meanwhile (a writer that still
/// appends to it gets an error, answers 503 and starts a new partition). Returns the ids
/// dropped.
pub async fn drop_done(pool: &DbPool, retention: std::time::Duration) -> Result<Vec<i64>, DbError> {
    let mut client = pool.get().await?;
    let since = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| Utc::now().checked_sub_signed(r))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    // A partition made after `since` holds newer events: only older ones are looked into.
    let candidates: Vec<i64> = client
        .query(
            "select id from event_partitions
             where created_at < $1 and id < (select max(id) from event_partitions) order by id",
            &[&since],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut dropped = Vec::new();
    for partition in candidates {
        let table = partition_table(partition);
        let tx = client.transaction().await?;
        let lock = format!("set local lock_timeout = '1s'; lock table {table} in access exclusive mode");
        match tx.batch_execute(&lock).await {
            // Busy (a delivery reads it): the next sweep tries again.
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => continue,
            locked => locked?,
        }
        let done: bool = tx
            .query_one(
                &format!(
                    "select coalesce((select max(received_at) from {table}) < $1, true)
                       and not exists (
                         select 1 from event_routes r
                         left join event_route_cursors c on c.route_id = r.id and c.partition_id = $2
                         where exists (select 1 from {table} e where e.source_id = r.source_id and e.seq > coalesce(c.seq, 0)))"
                ),
                &[&since, &partition],
            )
            .await?
            .get(0);
        if done {
            // What its writer did not count (it died first) is counted before the events go.
            let tail = format!(
                "insert into event_source_counts (source_id, partition_id, accepted, last_received_at)
                 select e.source_id, p.id, count(*), max(e.received_at)
                 from {table} e join event_partitions p on p.id = $1 where e.seq > p.counted_through
                 group by e.source_id, p.id
                 on conflict (source_id, partition_id) do update set
                     accepted = event_source_counts.accepted + excluded.accepted,
                     last_received_at = greatest(event_source_counts.last_received_at, excluded.last_received_at)"
            );
            tx.execute(&tail, &[&partition]).await?;
            tx.batch_execute(&format!("drop table {table}")).await?;
            tx.execute("delete from event_route_cursors where partition_id = $1", &[&partition]).await?;
            tx.execute("delete from event_partitions where id = $1", &[&partition]).await?;
            tx.commit().await?;
            dropped.push(partition);
        }
    }
    Ok(dropped)
}

/// How many events source `source_id` accepted, and when the newest counted arrived: the
/// writers' counts plus the events past what each partition counted, read in one snapshot.
pub async fn accepted(
    client: &mut deadpool_postgres::Client,
    source_id: Uuid,
) -> Result<(i64, Option<DateTime<Utc>>), DbError> {
    let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
    let counted = tx
        .query_one(
            "select coalesce(sum(accepted), 0)::bigint, max(last_received_at) from event_source_counts where source_id = $1",
            &[&source_id],
        )
        .await?;
    let (mut accepted, mut latest): (i64, Option<DateTime<Utc>>) = (counted.get(0), counted.get(1));
    for row in tx.query("select id, counted_through from event_partitions", &[]).await? {
        let (partition, through): (i64, i64) = (row.get(0), row.get(1));
        let sql = format!(
            "select count(*), max(received_at) from {} where source_id = $1 and seq > $2",
            partition_table(partition)
        );
        let tail = tx.query_one(&sql, &[&source_id, &through]).await?;
        accepted += tail.get::<_, i64>(0);
        latest = latest.max(tail.get(1));
    }
    tx.commit().await?;
    Ok((accepted, latest))
}
