//! The console log of a model sync execution: one line at each stage boundary — started (the
//! model and the target), the source's estimate, extract done, load done, and how the run
//! ended. Lines hold names and counts, never values of records (identities included).

use std::sync::atomic::Ordering;

use syncline_core::{
    db::DbPool,
    executions::{Counts, Outcome},
};
use uuid::Uuid;

use super::{SyncState, extract::Progress, plan::Plan, review::Tally};
use crate::{
    console,
    kind::{RunEnd, Stop},
};

/// A stage boundary of a run.
pub(super) enum Stage<'a> {
    Started(&'a Plan),
    /// The source's estimate of the model's records.
    Estimated(u64),
    /// The extract stage ended: what it read, and what it sends.
    Extracted(&'a Progress, &'a Tally),
    /// The load drained every change; `resend` says whether rejected records are sent again
    /// unchanged next run.
    Loaded {
        counts: &'a Counts,
        resend: bool,
    },
    /// More records were rejected than a sync remembers.
    Forgotten(usize),
    Ended(&'a RunEnd<SyncState>),
}

impl Stage<'_> {
    /// The line's level and message.
    fn line(&self) -> (&'static str, String) {
        match self {
            Stage::Started(plan) => {
                let object = plan.spec.target.object.as_deref().unwrap_or("(none)");
                let (model, target, mode) = (&plan.model_name, &plan.target_name, plan.spec.mode.as_str());
                ("info", format!("started: model {model:?} into {object} on {target:?} (mode {mode})"))
            }
            Stage::Estimated(rows) => ("info", format!("the source estimates {rows} records")),
            Stage::Extracted(progress, tally) => {
                let (read, rejected) =
                    (progress.read.load(Ordering::Relaxed), progress.rejected.load(Ordering::Relaxed));
                let Tally { inserts, updates, deletes, .. } = tally;
                let message = format!(
                    "extract done: {read} records read; {inserts} new, {updates} changed, {deletes} to delete; \
                     {rejected} rejected (NULL or repeated identity)"
                );
                ("info", message)
            }
            Stage::Loaded { counts, resend } => {
                let Counts { inserted, updated, deleted, rejected, .. } = counts;
                let retry = match (rejected, resend) {
                    (0, _) => "",
                    (_, true) => " (sent again on the next run)",
                    (_, false) => " (not sent again until they change)",
                };
                let message = format!(
                    "load done: {inserted} inserted, {updated} updated, {deleted} deleted, {rejected} rejected by the destination{retry}"
                );
                ("info", message)
            }
            Stage::Forgotten(rejected) => {
                let message = format!(
                    "{rejected} records were rejected, more than a sync remembers: the next run writes every record again"
                );
                ("warning", message)
            }
            Stage::Ended(end) => ended(end),
        }
    }
}

/// The line of how a run ended.
fn ended(end: &RunEnd<SyncState>) -> (&'static str, String) {
    match end {
        RunEnd::Finished { outcome: Outcome::Completed(SyncState::Unchanged), .. } => {
            ("info", "completed: a test run, planned without writing".into())
        }
        RunEnd::Finished { outcome: Outcome::Completed(SyncState::Advanced(_)), counts } => {
            ("info", format!("completed: {} records written, {} errors", counts.written, counts.errors))
        }
        RunEnd::Waiting { .. } => {
            ("info", "waiting for approval: the plan exceeds the sync's blast-radius limits".into())
        }
        RunEnd::Finished { outcome: Outcome::Failed { error, class }, .. } => {
            ("error", format!("failed ({}): {error}", class.as_str()))
        }
        RunEnd::Finished { outcome: Outcome::Canceled, .. } | RunEnd::Stopped { stop: Stop::Cancel, .. } => {
            ("info", "canceled".into())
        }
        RunEnd::Stopped { stop: Stop::Shutdown, .. } => {
            ("info", "stopped: the worker is shutting down; the execution goes back to the queue".into())
        }
        RunEnd::Stopped { stop: Stop::Lost, .. } => {
            ("warning", "stopped: this worker lost the execution's lease; another worker continues it".into())
        }
    }
}

/// Writes the line of `stage` to the console log of `execution_id`.
pub(super) async fn note(pool: &DbPool, execution_id: Uuid, stage: Stage<'_>) {
    let (level, message) = stage.line();
    console::log(pool, execution_id, None, level, &message).await;
}

#[cfg(test)]
mod tests {
    use syncline_core::connector::ErrorClass;

    use super::*;

    #[test]
    fn stage_lines_hold_counts() {
        let progress = Progress::default();
        progress.read.store(40, Ordering::Relaxed);
        progress.rejected.store(1, Ordering::Relaxed);
        let tally = Tally { inserts: 5, updates: 2, deletes: 3, unchanged: 32, ..Tally::default() };
        assert_eq!(
            Stage::Extracted(&progress, &tally).line().1,
            "extract done: 40 records read; 5 new, 2 changed, 3 to delete; 1 rejected (NULL or repeated identity)"
        );
        let counts = Counts { inserted: 4, updated: 1, deleted: 2, rejected: 1, ..Counts::default() };
        let (level, message) = Stage::Loaded { counts: &counts, resend: false }.line();
        assert_eq!(level, "info");
        assert_eq!(
            message,
            "load done: 4 inserted, 1 updated, 2 deleted, 1 rejected by the destination (not sent again until they change)"
        );
        let clean = Counts { rejected: 0, ..counts };
        assert!(Stage::Loaded { counts: &clean, resend: true }.line().1.ends_with("0 rejected by the destination"));
    }

    #[test]
    fn the_end_says_how_the_run_ended() {
        let failed = RunEnd::Finished {
            outcome: Outcome::Failed { error: "relation \"x\" does not exist".into(), class: ErrorClass::Config },
            counts: Counts::default(),
        };
        assert_eq!(ended(&failed), ("error", "failed (config): relation \"x\" does not exist".into()));
        let canceled = RunEnd::Stopped { stop: Stop::Cancel, counts: Counts::default() };
        assert_eq!(ended(&canceled), ("info", "canceled".into()));
    }
}
