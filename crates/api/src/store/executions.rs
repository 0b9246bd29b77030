//! The API's reads and requests on model sync executions. Their life (claim, lease, finish) is
//! `syncline_core::executions`; this module only lists them, shows them and asks them to stop.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, Window, fetch_all, fetch_opt};

/// An execution with its counts and progress.
#[derive(Debug, Clone)]
pub struct Execution {
    pub id: Uuid,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
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
}

const COLUMNS: &str = "e.id, e.status, e.created_at, e.started_at, e.completed_at, e.errors, e.insert_count,
    e.update_count, e.delete_count, e.error_count, e.records_read, e.records_changed, e.records_written,
    e.records_estimate, e.trigger, e.attempt, e.error_class, e.retries";

impl FromRow for Execution {
    const WHAT: &'static str = "execution";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            status: row.try_get("status")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            completed_at: row.try_get("completed_at")?,
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
        })
    }
}

/// Which executions of a sync to list, and in which order.
pub struct Filter {
    pub only_completed: bool,
    pub ascending: bool,
}

/// Execution `id`.
pub async fn get(client: &impl GenericClient, id: Uuid) -> Result<Option<Execution>, StoreError> {
    fetch_opt(client, &format!("select {COLUMNS} from executions e where e.id = $1"), &[&id]).await
}

/// Execution `id` of sync `sync_id`.
pub async fn get_of_sync(
    client: &impl GenericClient,
    sync_id: Uuid,
    id: Uuid,
) -> Result<Option<Execution>, StoreError> {
    let sql =
        format!("select {COLUMNS} from executions e where e.id = $1 and e.kind = 'model_sync' and e.subject_id = $2");
    fetch_opt(client, &sql, &[&id, &sync_id]).await
}

/// The executions of sync `sync_id` matching `filter`, by creation time.
pub async fn list(
    client: &impl GenericClient,
    sync_id: Uuid,
    filter: &Filter,
    window: Window,
) -> Result<Vec<Execution>, StoreError> {
    let order = if filter.ascending { "asc" } else { "desc" };
    let completed = match filter.only_completed {
        true => "and e.status in ('completed', 'completed_with_errors')",
        false => "",
    };
    let sql = format!(
        "select {COLUMNS} from executions e where e.kind = 'model_sync' and e.subject_id = $1 {completed}
          order by e.created_at {order}, e.id limit $2 offset $3"
    );
    fetch_all(client, &sql, &[&sync_id, &window.limit, &window.offset]).await
}

/// The newest execution of sync `sync_id` whose status is (`active`) or is not (`!active`)
/// one of `statuses`.
pub async fn latest(
    client: &impl GenericClient,
    sync_id: Uuid,
    statuses: &[&str],
    active: bool,
) -> Result<Option<Execution>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from executions e where e.kind = 'model_sync' and e.subject_id = $1 and (e.status = any($2)) = $3
          order by e.created_at desc limit 1"
    );
    fetch_opt(client, &sql, &[&sync_id, &statuses, &active]).await
}

/// Cancels the unfinished executions of `sync_id` matching `execution`: waiting ones end at
/// once, running ones are asked to stop. Returns how many were affected.
pub async fn request_cancel(
    client: &impl GenericClient,
    sync_id: Uuid,
    execution: Option<Uuid>,
) -> Result<u64, StoreError> {
    let count = client
        .execute(
            "update executions set
                status = case when status in ('created', 'queued') then 'canceled' else 'canceling' end,
                completed_at = case when status in ('created', 'queued') then now() else completed_at end,
                cancel_requested = true, updated_at = now()
             where kind = 'model_sync' and subject_id = $1 and ($2::uuid is null or id = $2)
               and status in ('created', 'queued', 'running')",
            &[&sync_id, &execution],
        )
        .await?;
    Ok(count)
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
