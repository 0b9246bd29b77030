//! Console log lines of executions (`execution_logs`), as the engine writes them: of the whole
//! execution, or of one of its schemas.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_all};

/// One line.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Increasing: a cursor for the lines after it.
    pub id: i64,
    pub schema_id: Option<String>,
    pub at: DateTime<Utc>,
    pub level: String,
    pub message: String,
}

impl FromRow for LogLine {
    const WHAT: &'static str = "log line";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            schema_id: row.try_get("schema_id")?,
            at: row.try_get("at")?,
            level: row.try_get("level")?,
            message: row.try_get("message")?,
        })
    }
}

/// Which lines of one or more executions to read.
pub struct Query<'a> {
    /// Only those of this schema (`None`: every line).
    pub schema_id: Option<&'a str>,
    /// Only those after this cursor, the oldest first (`None`: the newest lines).
    pub after: Option<i64>,
    pub limit: i64,
}

/// Up to `query.limit` lines of the executions `execution_ids`, in the order they were written.
pub async fn read(
    client: &impl GenericClient,
    execution_ids: &[Uuid],
    query: &Query<'_>,
) -> Result<Vec<LogLine>, StoreError> {
    let sql = "select * from (
                 select id, schema_id, at, level, message from execution_logs
                  where execution_id = any($1) and ($2::text is null or schema_id = $2) and ($3::bigint is null or id > $3)
                  order by case when $3::bigint is null then -id else id end limit $4) lines
               order by id";
    fetch_all(client, sql, &[&execution_ids, &query.schema_id, &query.after, &query.limit]).await
}
