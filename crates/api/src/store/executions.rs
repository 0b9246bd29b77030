//! The API's reads and requests on executions of every job kind (model syncs, bulk syncs). Their
//! life (claim, lease, finish) is `syncline_core::executions`; this module only lists them, shows
//! them and asks them to stop. An execution is found through its subject: the job kind and the
//! id of what it runs for.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use syncline_core::executions::BULK_CDC;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, Window, fetch_all, fetch_opt};

/// What executions run for: a job kind and the id of its subject (a model sync, a bulk sync).
pub type Subject<'a> = (&'a str, Uuid);

/// Statuses of executions that completed (with or without rejected records).
pub const COMPLETED: &[&str] = &["completed", "completed_with_errors"];

/// Statuses of executions that ended, however they ended.
pub const ENDED: &[&str] = &["completed", "completed_with_errors", "failed", "canceled"];

/// An execution with its counts and progress.
#[derive(Debug, Clone)]
pub struct Execution {
    pub id: Uuid,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub errors: Json,
    pub insert_count: i64,
    pub update_count: i64,
    pub delete_count: i64,
    pub error_count: i64,
    pub records_read: i64,
    pub records_changed: i64,
    pub records_written: i64,
    pub records_estimate: Option<i64>,
    pub trigger: String,
    pub attempt: i32,
    /// What kind of failure ended the run, or is being retried.
    pub error_class: Option<String>,
    /// How often the worker tried the run again after a transient failure.
    pub retries: i32,
    /// Whether the start asked to read everything again.
    pub resync: bool,
    /// The start's options of the execution's kind (`{}` when none).
    pub options: Json,
    /// What the run planned to write before writing, when it was reviewed first.
    pub plan: Option<Json>,
    /// What reading the written records back found and cost.
    pub verification: Option<Json>,
    /// The files of the record logs the run wrote, when its organization keeps them.
    pub record_logs: Option<Json>,
}

const COLUMNS: &str = "e.id, e.status, e.created_at, e.started_at, e.completed_at, e.updated_at, e.errors,
    e.insert_count, e.update_count, e.delete_count, e.error_count, e.records_read, e.records_changed,
    e.records_written, e.records_estimate, e.trigger, e.attempt, e.error_class, e.retries, e.resync, e.options,
    e.plan, e.verification, e.record_logs";

impl FromRow for Execution {
    const WHAT: &'static str = "execution";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            status: row.try_get("status")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            completed_at: row.try_get("completed_at")?,
            updated_at: row.try_get("updated_at")?,
            errors: row.try_get("errors")?,
            insert_count: row.try_get("insert_count")?,
            update_count: row.try_get("update_count")?,
            delete_count: row.try_get("delete_count")?,
            error_count: row.try_get("error_count")?,
            records_read: row.try_get("records_read")?,
            records_changed: row.try_get("records_changed")?,
            records_written: row.try_get("records_written")?,
            records_estimate: row.try_get("records_estimate")?,
            trigger: row.try_get("trigger")?,
            attempt: row.try_get("attempt")?,
            error_class: row.try_get("error_class")?,
            retries: row.try_get("retries")?,
            resync: row.try_get("resync")?,
            options: row.try_get("options")?,
            plan: row.try_get("plan")?,
            verification: row.try_get("verification")?,
            record_logs: row.try_get("record_logs")?,
        })
    }
}

/// Which executions of a subject to list, and in which order.
pub struct Filter<'a> {
    /// Only executions in one of these statuses (`None`: all).
    pub statuses: Option<&'a [&'a str]>,
    pub ascending: bool,
}

/// Execution `id`.
pub async fn get(client: &impl GenericClient, id: Uuid) -> Result<Option<Execution>, StoreError> {
    fetch_opt(client, &format!("select {COLUMNS} from executions e where e.id = $1"), &[&id]).await
}

/// Execution `id` of `subject`.
pub async fn get_of(
    client: &impl GenericClient,
    (kind, subject_id): Subject<'_>,
    id: Uuid,
) -> Result<Option<Execution>, StoreError> {
    let sql = format!("select {COLUMNS} from executions e where e.id = $1 and e.kind = $2 and e.subject_id = $3");
    fetch_opt(client, &sql, &[&id, &kind, &subject_id]).await
}

/// The executions of `subject` matching `filter`, by creation time.
pub async fn list(
    client: &impl GenericClient,
    (kind, subject_id): Subject<'_>,
    filter: &Filter<'_>,
    window: Window,
) -> Result<Vec<Execution>, StoreError> {
    let order = if filter.ascending { "asc" } else { "desc" };
    let sql = format!(
        "select {COLUMNS} from executions e
          where e.kind = $1 and e.subject_id = $2 and ($3::text[] is null or e.status = any($3))
          order by e.created_at {order}, e.id limit $4 offset $5"
    );
    fetch_all(client, &sql, &[&kind, &subject_id, &filter.statuses, &window.limit, &window.offset]).await
}

/// The newest execution of `subject` whose status is (`active`) or is not (`!active`) one of
/// `statuses`.
pub async fn latest(
    client: &impl GenericClient,
    (kind, subject_id): Subject<'_>,
    statuses: &[&str],
    active: bool,
) -> Result<Option<Execution>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from executions e where e.kind = $1 and e.subject_id = $2 and (e.status = any($3)) = $4
          order by e.created_at desc limit 1"
    );
    fetch_opt(client, &sql, &[&kind, &subject_id, &statuses, &active]).await
}

/// The change captures (kind `bulk_cdc`) of organization `org`'s bulk syncs reading from
/// connection `connection_id` (of bulk sync `sync_id` only, when given).
pub async fn captures_of(
    client: &impl GenericClient,
    (org, connection_id): (Uuid, Uuid),
    sync_id: Option<Uuid>,
) -> Result<Vec<Uuid>, StoreError> {
    let rows = client
        .query(
            "select e.id from executions e join bulk_syncs b on b.id = e.subject_id
             where e.kind = $1 and b.organization_id = $2 and b.source_connection_id = $3
               and ($4::uuid is null or b.id = $4)",
            &[&BULK_CDC, &org, &connection_id, &sync_id],
        )
        .await?;
    rows.iter().map(|r| r.try_get(0).map_err(|source| StoreError::Shape { what: "execution", source })).collect()
}

/// Cancels the unfinished executions of `subject` matching `execution`: waiting ones end at
/// once, running ones are asked to stop. Returns how many were affected.
pub async fn request_cancel(
    client: &impl GenericClient,
    (kind, subject_id): Subject<'_>,
    execution: Option<Uuid>,
) -> Result<u64, StoreError> {
    let count = client
        .execute(
            "update executions set
                status = case when status in ('created', 'queued', 'waiting') then 'canceled' else 'canceling' end,
                completed_at = case when status in ('created', 'queued', 'waiting') then now() else completed_at end,
                cancel_requested = true, updated_at = now()
             where kind = $1 and subject_id = $2 and ($3::uuid is null or id = $3)
               and status in ('created', 'queued', 'running', 'waiting')",
            &[&kind, &subject_id, &execution],
        )
        .await?;
    Ok(count)
}

/// Decides on the plan execution `id` of `subject` waits with: approved, it is queued to be
/// carried out; rejected, it ends `canceled` with `reason`. `false` when it was not waiting.
pub async fn decide(
    client: &impl GenericClient,
    (kind, subject_id): Subject<'_>,
    id: Uuid,
    approved: bool,
    reason: &Json,
) -> Result<bool, StoreError> {
    let updated = client
        .execute(
            "update executions set
                status = case when $4 then 'queued' else 'canceled' end,
                completed_at = case when $4 then null else now() end,
                errors = case when $4 then errors else $5 end,
                requeued_at = null, updated_at = now()
             where id = $3 and kind = $1 and subject_id = $2 and status = 'waiting'",
            &[&kind, &subject_id, &id, &approved, reason],
        )
        .await?;
    Ok(updated == 1)
}

/// Replaces the start options of execution `id` while it waits for a worker; `false` when a
/// worker took it already.
pub async fn set_waiting_options(client: &impl GenericClient, id: Uuid, options: &Json) -> Result<bool, StoreError> {
    let updated = client
        .execute(
            "update executions set options = $2, updated_at = now() where id = $1 and status in ('created', 'queued')",
            &[&id, options],
        )
        .await?;
    Ok(updated == 1)
}

/// Ends execution `id` as failed with `errors` (its job could not be enqueued).
pub async fn fail(client: &impl GenericClient, id: Uuid, errors: &Json) -> Result<(), StoreError> {
    client
        .execute(
            "update executions set status = 'failed', errors = $2, completed_at = now() where id = $1",
            &[&id, errors],
        )
        .await?;
    Ok(())
}
