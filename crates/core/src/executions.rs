//! The life of an execution in Postgres, for every job kind: created by a start (API or
//! scheduler) for a subject (a model sync, …), claimed by exactly one worker with a conditional
//! update, kept alive by a lease the worker renews, and finished in one transaction with its
//! outcome's [`Effects`] on the subject (a model sync's new diff state).
//!
//! ```text
//! queued ──claim──▶ running ──finish──▶ completed | completed_with_errors | failed
//!   │  ▲              │  ▲ lease expired: claimable again       ▲
//!   │  │ approve      │  │
//!   │  └── waiting ◀─┘ plan over its limits (the worker lets go)
//!   │       │ reject / cancel ─────────────────────────────────▶ canceled
//!   │ cancel          │ cancel ──▶ canceling ──(worker stops)──▶ canceled
//!   └────────────────▶ canceled
//! ```

use std::time::Duration;

use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use uuid::Uuid;

use crate::{
    connector::ErrorClass,
    db::{DbError, DbPool, Transaction},
};

/// Statuses in which an execution still occupies its sync.
pub const ACTIVE: &[&str] = &["created", "queued", "running", "canceling", "waiting"];

/// Why a start was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the sync already has an execution in progress")]
    AlreadyRunning,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The job kind of model sync executions.
pub const MODEL_SYNC: &str = "model_sync";

/// The job kind of bulk sync executions: one per run of a bulk sync, which plans the run, waits
/// for its partitions and settles each schema.
pub const BULK_SYNC: &str = "bulk_sync";

/// The job kind of one partition of a bulk sync execution's schema (its subject is the
/// partition), run by any worker.
pub const BULK_PARTITION: &str = "bulk_partition";

/// The job kind of a bulk sync's change capture (its subject is the bulk sync): streams the
/// source's changes into the destination until it is stopped.
pub const BULK_CDC: &str = "bulk_cdc";

/// The job kind of an event route's delivery (its subject is the route): delivers the route's
/// source's events to its destination in micro-batches for as long as the route exists.
pub const EVENT_DELIVERY: &str = "event_delivery";

/// Every job kind, each with its own queue.
pub const KINDS: &[&str] = &[MODEL_SYNC, BULK_SYNC, BULK_PARTITION, BULK_CDC, EVENT_DELIVERY];

/// Inserts a queued execution of `kind` for `subject_id`; fails with
/// [`StartError::AlreadyRunning`] when one is in progress (a unique partial index makes this
/// race-free across replicas). `options` is what the start asked for beyond `resync` (a kind's
/// own start options), handed to the run in its [`Claim`].
pub async fn create(
    client: &impl GenericClient,
    (kind, subject_id, organization_id): (&str, Uuid, Uuid),
    trigger: &str,
    resync: bool,
    options: &Json,
) -> Result<Uuid, StartError> {
    let id = Uuid::new_v4();
    let inserted = client
        .execute(
            "insert into executions (id, kind, subject_id, organization_id, status, trigger, resync, options)
             values ($1, $2, $3, $4, 'queued', $5, $6, $7) on conflict do nothing",
            &[&id, &kind, &subject_id, &organization_id, &trigger, &resync, options],
        )
        .await
        .map_err(DbError::from)?;
    if inserted == 0 {
        return Err(StartError::AlreadyRunning);
    }
    Ok(id)
}

/// The organization of `execution_id` while it still waits or runs (`None` once it ended or
/// when it does not exist).
pub async fn waiting_organization(pool: &DbPool, execution_id: Uuid) -> Result<Option<Uuid>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "select organization_id from executions where id = $1 and status = any($2)",
            &[&execution_id, &ACTIVE],
        )
        .await?;
    Ok(row.map(|r| r.try_get("organization_id")).transpose()?)
}

/// An execution this worker now owns.
#[derive(Debug, Clone)]
pub struct Claim {
    pub execution_id: Uuid,
    /// What the execution runs for (the model sync, …).
    pub subject_id: Uuid,
    pub attempt: i32,
    pub resync: bool,
    /// The start's options of the execution's kind (`{}` when none).
    pub options: Json,
    /// The plan an earlier run of the execution made and a user approved, which this run
    /// carries out instead of planning again.
    pub approved_plan: Option<Json>,
}

/// Claims `execution_id` for `worker` if it is waiting, or running under an expired lease
/// (its worker died). Returns `None` when another worker owns it or it already ended, which
/// makes duplicate deliveries harmless. A re-claimed execution starts over from zero counts.
pub async fn claim(pool: &DbPool, execution_id: Uuid, worker: &str, lease: Duration) -> Result<Option<Claim>, DbError> {
    let client = pool.get().await?;
    let lease_secs = lease.as_secs_f64();
    // An abandoned cancel just ends.
    client
        .execute(
            "update executions set status = 'canceled', completed_at = now(), updated_at = now()
             where id = $1 and status = 'canceling' and lease_until < now()",
            &[&execution_id],
        )
        .await?;
    let row = client
        .query_opt(
            "update executions set status = 'running', worker = $2, attempt = attempt + 1,
                lease_until = now() + make_interval(secs => $3), started_at = coalesce(started_at, now()),
                records_read = 0, records_changed = 0, records_written = 0, insert_count = 0, update_count = 0,
                delete_count = 0, error_count = 0, errors = '[]', updated_at = now()
             where id = $1 and (status in ('created', 'queued') or (status = 'running' and lease_until < now()))
             returning subject_id, attempt, resync, options, plan",
            &[&execution_id, &worker, &lease_secs],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let approved_plan: Option<Json> = row.try_get("plan")?;
    // An approved plan's records the model got wrong were recorded when it was made.
    if approved_plan.is_none() {
        client.execute("delete from record_errors where execution_id = $1", &[&execution_id]).await?;
    }
    Ok(Some(Claim {
        execution_id,
        subject_id: row.try_get("subject_id")?,
        attempt: row.try_get("attempt")?,
        resync: row.try_get("resync")?,
        options: row.try_get("options")?,
        approved_plan,
    }))
}

/// What the worker should do after renewing its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Keep going.
    Held,
    /// A cancel was requested: stop and finish as `canceled`.
    CancelRequested,
    /// The execution is no longer ours (taken over, or deleted): stop without writing.
    Lost,
}

/// Renews `worker`'s lease on the execution.
pub async fn renew(pool: &DbPool, execution_id: Uuid, worker: &str, lease: Duration) -> Result<Lease, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "update executions set lease_until = now() + make_interval(secs => $3), updated_at = now()
             where id = $1 and worker = $2 and status in ('running', 'canceling') returning cancel_requested",
            &[&execution_id, &worker, &lease.as_secs_f64()],
        )
        .await?;
    lease_state(row)
}

/// The lease state from a row returning `cancel_requested` (none: not ours any more).
fn lease_state(row: Option<tokio_postgres::Row>) -> Result<Lease, DbError> {
    Ok(match row {
        None => Lease::Lost,
        Some(row) if row.try_get::<_, bool>("cancel_requested")? => Lease::CancelRequested,
        Some(_) => Lease::Held,
    })
}

/// Counts accumulated while an execution runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub read: i64,
    pub changed: i64,
    pub written: i64,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    /// Records the destination rejected.
    pub rejected: i64,
    /// All failed records: rejected by the destination or by the model (bad identity).
    pub errors: i64,
}

/// Assignments of every counter from parameters `$3`…`$9` (see [`Counts::params`]).
const SET_COUNTS: &str = "records_read = $3, records_changed = $4, records_written = $5, insert_count = $6,
    update_count = $7, delete_count = $8, error_count = $9, updated_at = now()";

impl Counts {
    /// The counters in the order [`SET_COUNTS`] assigns them.
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 7] {
        [&self.read, &self.changed, &self.written, &self.inserted, &self.updated, &self.deleted, &self.errors]
    }
}

/// Records progress; the answer says whether to go on (like a lease renewal, without renewing).
pub async fn record_progress(
    pool: &DbPool,
    execution_id: Uuid,
    worker: &str,
    counts: &Counts,
) -> Result<Lease, DbError> {
    let client = pool.get().await?;
    let sql = format!(
        "update executions set {SET_COUNTS} where id = $1 and worker = $2 and status in ('running', 'canceling')
         returning cancel_requested"
    );
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        [&execution_id as _, &worker as _].into_iter().chain(counts.params()).collect();
    lease_state(client.query_opt(&sql, &params).await?)
}

/// Records how many records the source expects to yield.
pub async fn record_estimate(pool: &DbPool, execution_id: Uuid, worker: &str, estimate: i64) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .execute(
            "update executions set records_estimate = $3 where id = $1 and worker = $2",
            &[&execution_id, &worker, &estimate],
        )
        .await?;
    Ok(())
}

/// Stores rejected records, keyed by their identity (the first failure per identity wins).
pub async fn record_errors(pool: &DbPool, execution_id: Uuid, errors: &[(String, String)]) -> Result<(), DbError> {
    if errors.is_empty() {
        return Ok(());
    }
    let client = pool.get().await?;
    let (identities, messages): (Vec<&str>, Vec<&str>) = errors.iter().map(|(i, m)| (i.as_str(), m.as_str())).unzip();
    client
        .execute(
            "insert into record_errors (execution_id, identity, message)
             select $1, i, m from unnest($2::text[], $3::text[]) as e(i, m) on conflict do nothing",
            &[&execution_id, &identities, &messages],
        )
        .await?;
    Ok(())
}

/// What a completed execution changes on its subject, applied in the transaction that
/// finishes it (so a crash leaves either both or neither).
#[async_trait::async_trait]
pub trait Effects: Send + Sync {
    /// Applies the effects to `subject_id` within `tx`.
    async fn apply(&self, tx: &Transaction<'_>, subject_id: Uuid) -> Result<(), DbError>;
}

/// How an execution ended; a completed one carries its effects on the subject.
#[derive(Debug, Clone)]
pub enum Outcome<E> {
    /// Every record was handled.
    Completed(E),
    Canceled,
    Failed {
        error: String,
        /// What kind of failure ended the run (recorded as `error_class`).
        class: ErrorClass,
    },
}

/// Finishes the execution and, when it completed, applies its effects in the same transaction.
/// Returns `false` if the execution was no longer this worker's (nothing written).
pub async fn finish<E: Effects>(
    pool: &DbPool,
    execution_id: Uuid,
    worker: &str,
    counts: &Counts,
    outcome: &Outcome<E>,
) -> Result<bool, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (status, errors, class) = match outcome {
        Outcome::Completed(_) if counts.errors > 0 => ("completed_with_errors", vec![], None),
        Outcome::Completed(_) => ("completed", vec![], None),
        Outcome::Canceled => ("canceled", vec![], None),
        Outcome::Failed { error, class } => ("failed", vec![error.clone()], Some(class.as_str())),
    };
    let errors = serde_json::json!(errors);
    let sql = format!(
        "update executions set {SET_COUNTS}, status = $10, errors = $11, error_class = $12, completed_at = now(),
            lease_until = null
         where id = $1 and worker = $2 and status in ('running', 'canceling') returning subject_id"
    );
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = [&execution_id as _, &worker as _]
        .into_iter()
        .chain(counts.params())
        .chain([&status as _, &errors as _, &class as _])
        .collect();
    let row = tx.query_opt(&sql, &params).await?;
    let Some(row) = row else { return Ok(false) };
    if status == "completed_with_errors" {
        // Surface a sample of the rejected records on the execution itself.
        tx.execute(
            "update executions set errors = (select coalesce(jsonb_agg(message), '[]') from
                (select message from record_errors where execution_id = $1 order by identity limit 10) sample)
             where id = $1",
            &[&execution_id],
        )
        .await?;
    }
    if let Outcome::Completed(effects) = outcome {
        effects.apply(&tx, row.try_get("subject_id")?).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// What a run reports about itself on its execution, shown with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// What it would write, with samples (a reviewed run).
    Plan,
    /// What reading its written records back found and cost.
    Verification,
    /// The files of the record logs it wrote.
    RecordLogs,
}

impl Report {
    fn column(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::Verification => "verification",
            Self::RecordLogs => "record_logs",
        }
    }
}

/// Records `report` of `execution_id`'s run, while `worker` owns it.
pub async fn report(
    pool: &DbPool,
    execution_id: Uuid,
    worker: &str,
    report: Report,
    value: &Json,
) -> Result<(), DbError> {
    let client = pool.get().await?;
    let sql = format!("update executions set {} = $3 where id = $1 and worker = $2", report.column());
    client.execute(&sql, &[&execution_id, &worker, value]).await?;
    Ok(())
}

/// Parks the run of `execution_id` until a user approves or rejects its recorded plan: the
/// worker lets go of it, and it keeps its subject (no other run starts meanwhile). Returns
/// `false` if the execution was no longer this worker's.
pub async fn wait_for_approval(
    pool: &DbPool,
    execution_id: Uuid,
    worker: &str,
    counts: &Counts,
) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let sql = format!(
        "update executions set {SET_COUNTS}, status = 'waiting', worker = null, lease_until = null
         where id = $1 and worker = $2 and status = 'running'"
    );
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        [&execution_id as _, &worker as _].into_iter().chain(counts.params()).collect();
    Ok(client.execute(&sql, &params).await? == 1)
}

/// Records that the run of `execution_id` failed with a retryable `class` and is tried again:
/// the retry count goes up and the records the failed try rejected are forgotten.
pub async fn record_retry(pool: &DbPool, execution_id: Uuid, worker: &str, class: ErrorClass) -> Result<i32, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "update executions set retries = retries + 1, error_class = $3, updated_at = now()
             where id = $1 and worker = $2 and status = 'running' returning retries",
            &[&execution_id, &worker, &class.as_str()],
        )
        .await?;
    client.execute("delete from record_errors where execution_id = $1", &[&execution_id]).await?;
    Ok(match row {
        Some(row) => row.try_get("retries")?,
        None => 0,
    })
}

/// Returns the execution to the queue (the worker is shutting down) so another worker takes it.
pub async fn hand_back(pool: &DbPool, execution_id: Uuid, worker: &str) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let updated = client
        .execute(
            "update executions set status = 'queued', worker = null, lease_until = null, updated_at = now()
             where id = $1 and worker = $2 and status = 'running'",
            &[&execution_id, &worker],
        )
        .await?;
    Ok(updated == 1)
}

/// Executions that need their job pushed again: running under a lease that expired (the worker
/// died and the queue did not redeliver), or queued for longer than `stale` with no taker
/// (e.g. Redis lost the job), with their kind. Each is returned at most once per `stale` period.
pub async fn reclaimable(pool: &DbPool, stale: Duration) -> Result<Vec<(String, Uuid)>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "update executions set requeued_at = now()
             where id in (
                select id from executions
                where ((status in ('running', 'canceling') and lease_until < now())
                       or (status in ('created', 'queued') and coalesce(requeued_at, created_at) < now() - make_interval(secs => $1)))
                  and (requeued_at is null or requeued_at < now() - make_interval(secs => $1))
                for update skip locked limit 100)
             returning kind, id",
            &[&stale.as_secs_f64()],
        )
        .await?;
    rows.iter().map(|r| Ok((r.try_get("kind")?, r.try_get("id")?))).collect()
}
