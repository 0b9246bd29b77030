//! Each schema of a bulk sync execution (`bulk_schema_executions`): its status, progress and
//! accounting as the engine writes them (its plan adds them). The API reads them and asks one
//! schema to stop.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use syncline_core::executions::{ACTIVE, BULK_SYNC};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_all};

/// One schema of an execution.
#[derive(Debug, Clone)]
pub struct SchemaExecution {
    pub execution_id: Uuid,
    pub schema_id: String,
    pub output_name: String,
    pub status: String,
    pub status_message: Option<String>,
    pub rows_total: Option<i64>,
    pub rows_read: i64,
    pub rows_written: i64,
    pub rows_rejected: i64,
    pub rows_skipped: i64,
    pub rows_deleted: i64,
    pub partitions: i32,
    pub partitions_committed: i32,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "s.execution_id, s.schema_id, s.output_name, s.status, s.status_message, s.rows_total,
    s.rows_read, s.rows_written, s.rows_rejected, s.rows_skipped, s.rows_deleted, s.partitions,
    s.partitions_committed, s.cancel_requested, s.created_at, s.started_at, s.completed_at, s.updated_at";

impl FromRow for SchemaExecution {
    const WHAT: &'static str = "schema execution";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            execution_id: row.try_get("execution_id")?,
            schema_id: row.try_get("schema_id")?,
            output_name: row.try_get("output_name")?,
            status: row.try_get("status")?,
            status_message: row.try_get("status_message")?,
            rows_total: row.try_get("rows_total")?,
            rows_read: row.try_get("rows_read")?,
            rows_written: row.try_get("rows_written")?,
            rows_rejected: row.try_get("rows_rejected")?,
            rows_skipped: row.try_get("rows_skipped")?,
            rows_deleted: row.try_get("rows_deleted")?,
            partitions: row.try_get("partitions")?,
            partitions_committed: row.try_get("partitions_committed")?,
            cancel_requested: row.try_get("cancel_requested")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            completed_at: row.try_get("completed_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// The schemas of executions `execution_ids`, by execution and schema.
pub async fn of_executions(
    client: &impl GenericClient,
    execution_ids: &[Uuid],
) -> Result<Vec<SchemaExecution>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from bulk_schema_executions s where s.execution_id = any($1) order by s.execution_id, s.schema_id"
    );
    fetch_all(client, &sql, &[&execution_ids]).await
}

/// Each schema of bulk sync `sync_id` once, in its latest execution: an execution in progress
/// before ended ones, then the newest.
pub async fn latest_of_sync(client: &impl GenericClient, sync_id: Uuid) -> Result<Vec<SchemaExecution>, StoreError> {
    let sql = format!(
        "select distinct on (s.schema_id) {COLUMNS} from bulk_schema_executions s
           join executions e on e.id = s.execution_id
          where e.kind = $1 and e.subject_id = $2
          order by s.schema_id, (e.status = any($3)) desc, e.created_at desc"
    );
    fetch_all(client, &sql, &[&BULK_SYNC, &sync_id, &ACTIVE]).await
}

/// Asks the engine to stop schema `schema_id` of execution `execution_id`; answers the schema's
/// status, or `None` when the engine has not planned it (yet).
pub async fn request_cancel(
    client: &impl GenericClient,
    execution_id: Uuid,
    schema_id: &str,
) -> Result<Option<String>, StoreError> {
    let row = client
        .query_opt(
            "update bulk_schema_executions set cancel_requested = true, updated_at = now()
              where execution_id = $1 and schema_id = $2 returning status",
            &[&execution_id, &schema_id],
        )
        .await?;
    row.map(|row| row.try_get("status"))
        .transpose()
        .map_err(|source| StoreError::Shape { what: "schema execution", source })
}
