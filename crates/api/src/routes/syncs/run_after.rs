//! The syncs a `runafter` model sync runs after: which it may name, that they form no cycle, and
//! that none is deleted while a sync runs after it.
//!
//! A sync runs once every upstream it lists (model syncs in `run_after.sync_ids`, bulk syncs in
//! `run_after.bulk_sync_ids`) has finished an execution since the sync's last run was created:
//! a join. With `run_after_success_only` only a `completed` execution counts, otherwise any that
//! ended (failed and canceled ones too). The transaction that ends the execution completing the
//! join makes the sync due (migration V17), and the scheduler starts it exactly once. An
//! upstream that finishes while the sync runs makes it run again once it ends. A new upstream
//! (on create, or added by an update) has finished nothing yet; an inactive sync is not made due
//! (a finished upstream is remembered).

use serde_json::json;
use syncline_core::{
    executions::{BULK_SYNC, MODEL_SYNC},
    sync::Schedule,
};
use uuid::Uuid;

use crate::{
    AppState,
    access::Action,
    auth::Caller,
    error::ApiError,
    extract::authorized,
    store::{
        self,
        bulk_syncs::BulkSync,
        run_after::{self, Upstream},
        syncs::ModelSync,
    },
};

const FIELD: &str = "schedule.run_after";

fn invalid(message: String) -> ApiError {
    ApiError::unprocessable(format!("{FIELD}: {message}")).with_metadata(json!({ "field": FIELD }))
}

/// The upstreams `schedule` lists, each a model sync or bulk sync of the caller's organization
/// the caller may read (else 422 naming `schedule.run_after`).
pub(super) async fn upstreams(
    state: &AppState,
    caller: &Caller,
    schedule: &Schedule,
) -> Result<Vec<Upstream>, ApiError> {
    let (sync_ids, bulk_sync_ids) = schedule.run_after_ids();
    let mut upstreams: Vec<Upstream> = Vec::new();
    for (kind, ids, what) in [(MODEL_SYNC, sync_ids, "model sync"), (BULK_SYNC, bulk_sync_ids, "bulk sync")] {
        for id in ids {
            let unknown = || invalid(format!("{id:?} names no {what} of this organization you may read"));
            let id = Uuid::parse_str(id).map_err(|_| unknown())?;
            let readable = match kind {
                MODEL_SYNC => authorized::<ModelSync>(state, caller, id, Action::Read).await.map(drop),
                _ => authorized::<BulkSync>(state, caller, id, Action::Read).await.map(drop),
            };
            match readable {
                Ok(()) => upstreams.push((kind, id)),
                Err(e) if matches!(e.status.as_u16(), 403 | 404) => return Err(unknown()),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(upstreams)
}

/// Refuses (422) upstreams that would make sync `id` of `org` (`None`: a new one, which no sync
/// runs after yet) run after itself, directly or through other syncs. Holds the organization's
/// run-after lock until `tx` ends when there are upstreams, so that neither the check nor the
/// upstreams change before they are written.
pub(super) async fn acyclic(
    tx: &impl deadpool_postgres::GenericClient,
    (org, id): (Uuid, Option<Uuid>),
    upstreams: &[Upstream],
) -> Result<(), ApiError> {
    if upstreams.is_empty() {
        return Ok(());
    }
    run_after::lock(tx, org).await?;
    let Some(id) = id else { return Ok(()) };
    let syncs: Vec<Uuid> = upstreams.iter().filter(|(kind, _)| *kind == MODEL_SYNC).map(|(_, id)| *id).collect();
    match run_after::reaches(tx, &syncs, id).await? {
        true => Err(invalid("the sync would run after itself (the upstreams form a cycle)".into())),
        false => Ok(()),
    }
}

/// Refuses (409, naming them) to delete `upstream` of `org` while syncs run after it: they
/// would never run again. Holds the organization's run-after lock until `tx` ends.
pub(crate) async fn refuse_deleting_upstream(
    tx: &impl deadpool_postgres::GenericClient,
    org: Uuid,
    upstream: Upstream,
) -> Result<(), ApiError> {
    run_after::lock(tx, org).await?;
    let dependents = store::run_after::dependents(tx, upstream).await?;
    if dependents.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = dependents.iter().map(|(_, name)| format!("{name:?}")).collect();
    let ids: Vec<Uuid> = dependents.iter().map(|(id, _)| *id).collect();
    Err(ApiError::conflict(format!("syncs run after this one: {}; change their schedules first", names.join(", ")))
        .with_metadata(json!({ "dependent_sync_ids": ids })))
}
