//! Starting an execution of any job kind: created for its subject (409 while one is in
//! progress) and enqueued on the kind's queue; when the queue cannot take it, it fails at once
//! (503) instead of waiting for a job that never comes.

use actix_web::http::StatusCode;
use serde_json::{Value as Json, json};
use syncline_core::executions::{self, StartError};
use uuid::Uuid;

use crate::{
    AppState,
    error::ApiError,
    store::{self, executions::Execution},
};

/// Starts an execution of `kind` for `subject_id` of organization `org`, with the kind's start
/// `options`, and enqueues it.
pub async fn start(
    state: &AppState,
    (kind, subject_id, org): (&str, Uuid, Uuid),
    trigger: &str,
    resync: bool,
    options: &Json,
) -> Result<Execution, ApiError> {
    let client = state.pool.get().await?;
    let id =
        executions::create(&client, (kind, subject_id, org), trigger, resync, options).await.map_err(|e| match e {
            StartError::AlreadyRunning => ApiError::conflict(e.to_string()),
            StartError::Db(e) => e.into(),
        })?;
    if let Err(e) = state.queues.enqueue(kind, id).await {
        tracing::error!(execution_id = %id, error = %e, "cannot enqueue execution");
        store::executions::fail(&client, id, &json!(["the job queue is unavailable"])).await?;
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the job queue is unavailable"));
    }
    store::executions::get(&client, id).await?.ok_or_else(|| ApiError::not_found("execution"))
}
