//! Executions' console logs (`execution_logs`): the lines people read through the API, of a
//! whole execution or of one of its schemas. Writing is best effort: a line that cannot be
//! written is a warning in the worker's own log, never a failure of the run.

use syncline_core::db::DbPool;
use uuid::Uuid;

use crate::connections::state;

/// Adds a line to the console log of `execution_id` (of one schema, if given).
pub async fn log(pool: &DbPool, execution_id: Uuid, schema_id: Option<&str>, level: &str, message: &str) {
    let logged = async {
        let client = pool.get().await.map_err(state)?;
        client
            .execute(
                "insert into execution_logs (execution_id, schema_id, level, message) values ($1, $2, $3, $4)",
                &[&execution_id, &schema_id, &level, &message],
            )
            .await
            .map_err(state)
    };
    if let Err(e) = logged.await {
        tracing::warn!(%execution_id, error = %e.message, "could not write a console log line");
    }
}
