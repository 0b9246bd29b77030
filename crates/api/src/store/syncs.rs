//! Model syncs. `spec` is the API body as given (echoed back); the columns beside it are what
//! the engine reads. When an active sync runs next is its row of the `schedules` table, written
//! in the same transaction as the sync, after the upstreams it runs after (the order in which
//! the transaction ending an upstream's execution locks them).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use tokio_postgres::{Row, types::ToSql};
use uuid::Uuid;

use syncline_core::{executions::MODEL_SYNC, schedule, sync::Schedule};

use super::{FromRow, StoreError, Window, exists, fetch_all, fetch_one, fetch_opt, keyed, run_after};
use crate::access::Readable;

#[derive(Debug, Clone)]
pub struct ModelSync {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub active: bool,
    pub mode: String,
    pub spec: Json,
    pub model_id: Uuid,
    pub target_connection_id: Uuid,
    pub policies: Vec<String>,
    /// Whether records the destination rejected are sent again unchanged on the next run.
    pub auto_retry_record_errors: bool,
    /// Whether its first run with record errors is emailed to its subscribers.
    pub notify_on_record_errors: bool,
    /// Who gets its error emails, beside the organization's global error subscribers.
    pub error_subscribers: Vec<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, organization_id, name, active, mode, spec, model_id, target_connection_id, policies,
    auto_retry_record_errors, notify_on_record_errors, error_subscribers,
    (select next_run_at from schedules where kind = 'model_sync' and subject_id = model_syncs.id) as next_run_at,
    created_at, updated_at";

impl FromRow for ModelSync {
    const WHAT: &'static str = "sync";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            organization_id: row.try_get("organization_id")?,
            name: row.try_get("name")?,
            active: row.try_get("active")?,
            mode: row.try_get("mode")?,
            spec: row.try_get("spec")?,
            model_id: row.try_get("model_id")?,
            target_connection_id: row.try_get("target_connection_id")?,
            policies: row.try_get("policies")?,
            auto_retry_record_errors: row.try_get("auto_retry_record_errors")?,
            notify_on_record_errors: row.try_get("notify_on_record_errors")?,
            error_subscribers: row.try_get::<_, tokio_postgres::types::Json<_>>("error_subscribers")?.0,
            next_run_at: row.try_get("next_run_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// What a create or an update stores.
pub struct Values<'a> {
    pub model_id: Uuid,
    pub target_connection_id: Uuid,
    pub name: &'a str,
    pub active: bool,
    pub mode: &'a str,
    pub spec: &'a Json,
    pub schedule: &'a Schedule,
    /// When the sync runs next (`None`: inactive, manual or run after other syncs).
    pub next_run_at: Option<DateTime<Utc>>,
    /// The syncs it runs after.
    pub upstreams: &'a [run_after::Upstream],
    pub policies: &'a [String],
}

impl Values<'_> {
    /// `$3` to `$9` of [`insert`] and [`update`]: the model, the target, then the settings.
    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [&self.model_id, &self.target_connection_id, &self.name, &self.active, &self.mode, self.spec, &self.policies]
    }

    /// Writes what the sync runs after and when it runs next, and returns it with that.
    async fn schedule(&self, tx: &impl GenericClient, mut sync: ModelSync) -> Result<ModelSync, StoreError> {
        run_after::replace(tx, sync.id, self.upstreams).await?;
        schedule::set(tx, (MODEL_SYNC, sync.id, sync.organization_id), self.schedule, self.next_run_at).await?;
        sync.next_run_at = self.next_run_at;
        Ok(sync)
    }
}

/// Which syncs of an organization to list.
pub struct Filter<'a> {
    pub active: Option<bool>,
    pub mode: Option<&'a str>,
    pub target_connection_id: Option<Uuid>,
}

pub async fn get(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<Option<ModelSync>, StoreError> {
    let sql = format!("select {COLUMNS} from model_syncs where id = $1 and organization_id = $2");
    fetch_opt(client, &sql, &[&id, &org]).await
}

/// The syncs of `org` matching `filter` that the caller may read, last changed first.
pub async fn list(
    client: &impl GenericClient,
    org: Uuid,
    filter: &Filter<'_>,
    readable: &Readable,
    window: Window,
) -> Result<Vec<ModelSync>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from model_syncs where organization_id = $1 and ($2::bool is null or active = $2)
                and ($3::text is null or mode = $3) and ($4::uuid is null or target_connection_id = $4)
                and ($7 or policies && $8) order by updated_at desc, id limit $5 offset $6"
    );
    let params: &super::Params<'_> = &[
        &org,
        &filter.active,
        &filter.mode,
        &filter.target_connection_id,
        &window.limit,
        &window.offset,
        &readable.everywhere,
        &readable.policies,
    ];
    fetch_all(client, &sql, params).await
}

/// Stores a new sync of `org` and its schedule (pass a transaction: both or neither).
pub async fn insert(tx: &impl GenericClient, org: Uuid, values: &Values<'_>) -> Result<ModelSync, StoreError> {
    let sql = format!(
        "insert into model_syncs (id, organization_id, model_id, target_connection_id, name, active, mode, spec, policies)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning {COLUMNS}"
    );
    let sync = fetch_one(tx, &sql, &keyed(&Uuid::new_v4(), &org, values.params())).await?;
    values.schedule(tx, sync).await
}

/// Replaces sync `id` and its schedule (pass a transaction: both or neither).
pub async fn update(
    tx: &impl GenericClient,
    org: Uuid,
    id: Uuid,
    values: &Values<'_>,
) -> Result<Option<ModelSync>, StoreError> {
    let sql = format!(
        "update model_syncs set model_id = $3, target_connection_id = $4, name = $5, active = $6, mode = $7, spec = $8,
                policies = $9, updated_at = now()
          where id = $1 and organization_id = $2 returning {COLUMNS}"
    );
    match fetch_opt(tx, &sql, &keyed(&id, &org, values.params())).await? {
        Some(sync) => Ok(Some(values.schedule(tx, sync).await?)),
        None => Ok(None),
    }
}

/// Turns sync `id` on or off (its spec says so too) and sets when it runs next (pass a
/// transaction: both or neither).
pub async fn set_active(
    tx: &impl GenericClient,
    (org, id): (Uuid, Uuid),
    active: bool,
    when: (&Schedule, Option<DateTime<Utc>>),
) -> Result<(), StoreError> {
    tx.execute(
        "update model_syncs set active = $3, spec = jsonb_set(spec, '{active}', to_jsonb($3::boolean)),
                updated_at = now() where id = $1 and organization_id = $2",
        &[&id, &org, &active],
    )
    .await?;
    schedule::set(tx, (MODEL_SYNC, id, org), when.0, when.1).await?;
    Ok(())
}

/// Waits until no other transaction is creating target `object` of connection `connection_id`,
/// then holds that claim until this transaction ends.
pub async fn claim_new_target(tx: &impl GenericClient, connection_id: Uuid, object: &str) -> Result<(), StoreError> {
    let claim = format!("model sync target {connection_id} {object}");
    tx.execute("select pg_advisory_xact_lock(hashtextextended($1, 0))", &[&claim]).await?;
    Ok(())
}

/// A sync's error handling (see [`ModelSync`]).
pub struct ErrorHandling<'a> {
    pub auto_retry_record_errors: bool,
    pub notify_on_record_errors: bool,
    pub subscribers: &'a [String],
}

/// Replaces sync `id`'s error handling; `None` when there is no such sync.
pub async fn set_error_handling(
    client: &impl GenericClient,
    (org, id): (Uuid, Uuid),
    handling: &ErrorHandling<'_>,
) -> Result<Option<ModelSync>, StoreError> {
    let sql = format!(
        "update model_syncs set auto_retry_record_errors = $3, notify_on_record_errors = $4, error_subscribers = $5,
                updated_at = now()
          where id = $1 and organization_id = $2 returning {COLUMNS}"
    );
    let subscribers = serde_json::json!(handling.subscribers);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&id, &org, &handling.auto_retry_record_errors, &handling.notify_on_record_errors, &subscribers];
    fetch_opt(client, &sql, &params).await
}

/// Deletes sync `id`; `false` when there was none.
pub async fn delete(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<bool, StoreError> {
    exists(client, "delete from model_syncs where id = $1 and organization_id = $2 returning id", &[&id, &org]).await
}
