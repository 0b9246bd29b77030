//! What bulk sync runs keep in Postgres: the sync and its schemas, the plan of an execution
//! (its schemas and their partitions), progress, and how each schema ended.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use syncline_core::{
    bulk::{BulkMode, SchemaConfig},
    connector::ConnectorError,
    db::DbPool,
    executions,
};
use tokio_postgres::Row;
use uuid::Uuid;

use syncline_connectors::postgres::cdc::Lsn;

use super::plan::{Finish, PlannedSchema, Task};
use crate::connections::state;

/// A bulk sync as a run reads it, with its connections' rows.
pub struct SyncRow {
    pub organization_id: Uuid,
    pub mode: BulkMode,
    pub spec: Json,
    /// Holds `source_type/config/secrets` and `target_type/config/secrets`.
    pub connections: Row,
}

/// Loads bulk sync `sync_id`.
pub async fn sync(pool: &DbPool, sync_id: Uuid) -> Result<SyncRow, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let row = client
        .query_opt(
            "select b.organization_id, b.mode, b.spec, b.source_connection_id,
                    sc.type as source_type, sc.configuration as source_config, sc.secrets as source_secrets,
                    tc.type as target_type, tc.configuration as target_config, tc.secrets as target_secrets
             from bulk_syncs b join connections sc on sc.id = b.source_connection_id
             join connections tc on tc.id = b.destination_connection_id
             where b.id = $1",
            &[&sync_id],
        )
        .await
        .map_err(state)?
        .ok_or_else(|| ConnectorError::not_found("the bulk sync was deleted"))?;
    let mode: String = row.try_get("mode").map_err(state)?;
    let mode = serde_json::from_value(Json::String(mode.clone()))
        .map_err(|_| ConnectorError::config(format!("mode {mode:?} is not a bulk sync mode")))?;
    Ok(SyncRow {
        organization_id: row.try_get("organization_id").map_err(state)?,
        mode,
        spec: row.try_get("spec").map_err(state)?,
        connections: row,
    })
}

/// What the engine keeps of a schema between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaState {
    /// The highest tracking field value delivered; incremental runs read after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Json>,
}

/// A schema of a bulk sync.
pub struct SchemaRow {
    pub schema_id: String,
    pub enabled: bool,
    pub config: SchemaConfig,
    pub state: SchemaState,
}

/// The schemas of `sync_id`, by id.
pub async fn schemas(pool: &DbPool, sync_id: Uuid) -> Result<Vec<SchemaRow>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select schema_id, enabled, config, state from bulk_sync_schemas where bulk_sync_id = $1 order by schema_id",
            &[&sync_id],
        )
        .await
        .map_err(state)?;
    rows.iter()
        .map(|row| {
            let schema_id: String = row.try_get("schema_id").map_err(state)?;
            let config = serde_json::from_value(row.try_get("config").map_err(state)?)
                .map_err(|e| ConnectorError::config(format!("schema {schema_id:?} configuration: {e}")))?;
            Ok(SchemaRow {
                enabled: row.try_get("enabled").map_err(state)?,
                config,
                state: serde_json::from_value(row.try_get("state").map_err(state)?).unwrap_or_default(),
                schema_id,
            })
        })
        .collect()
}

/// The primary keys users set on the source connection's schemas.
pub async fn key_overrides(pool: &DbPool, connection_id: Uuid) -> Result<HashMap<String, Vec<String>>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select schema_id, primary_keys from schema_overrides where connection_id = $1 and primary_keys is not null",
            &[&connection_id],
        )
        .await
        .map_err(state)?;
    rows.iter().map(|r| Ok((r.try_get(0).map_err(state)?, r.try_get(1).map_err(state)?))).collect()
}

/// Whether execution `execution_id` was planned already (it is being resumed).
pub async fn planned(pool: &DbPool, execution_id: Uuid) -> Result<bool, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let row = client
        .query_one("select exists (select 1 from bulk_schema_executions where execution_id = $1)", &[&execution_id])
        .await
        .map_err(state)?;
    row.try_get(0).map_err(state)
}

/// Records the plan of an execution in one transaction: each schema (running, or failed with
/// its reason) and its partitions.
pub async fn save_plan(pool: &DbPool, execution_id: Uuid, schemas: &[PlannedSchema]) -> Result<(), ConnectorError> {
    let mut client = pool.get().await.map_err(state)?;
    let tx = client.transaction().await.map_err(state)?;
    for schema in schemas {
        let (status, completed) = match &schema.failure {
            Some(_) => ("failed", true),
            None => ("running", false),
        };
        let partitions = schema.tasks.len() as i32;
        let total = schema.total.map(|t| t as i64);
        let finish = schema.finish.as_ref().map(|f| serde_json::to_value(f).expect("a finish serializes"));
        tx.execute(
            "insert into bulk_schema_executions (execution_id, schema_id, output_name, status, status_message,
                rows_total, partitions, plan, started_at, completed_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, now(), case when $9 then now() end)",
            &[
                &execution_id,
                &schema.schema_id,
                &schema.output_name,
                &status,
                &schema.failure,
                &total,
                &partitions,
                &finish,
                &completed,
            ],
        )
        .await
        .map_err(state)?;
        for (index, task) in schema.tasks.iter().enumerate() {
            let task = serde_json::to_value(task).expect("a task serializes");
            tx.execute(
                "insert into bulk_partitions (id, execution_id, schema_id, index, task) values ($1, $2, $3, $4, $5)",
                &[&Uuid::new_v4(), &execution_id, &schema.schema_id, &(index as i32), &task],
            )
            .await
            .map_err(state)?;
        }
    }
    tx.commit().await.map_err(state)
}

/// The running schemas of `execution_id` with partitions left to load that read at a shared
/// source snapshot.
pub async fn unshared(pool: &DbPool, execution_id: Uuid) -> Result<Vec<String>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select distinct s.schema_id from bulk_schema_executions s
             join bulk_partitions p on p.execution_id = s.execution_id and p.schema_id = s.schema_id
             where s.execution_id = $1 and s.status = 'running' and p.status <> 'committed'
               and p.task ->> 'snapshot' is not null
             order by 1",
            &[&execution_id],
        )
        .await
        .map_err(state)?;
    rows.iter().map(|r| r.try_get(0).map_err(state)).collect()
}

/// Forgets the plan of `schema_ids` in `execution_id` (their partitions and counts), so they
/// can be planned again.
pub async fn forget(pool: &DbPool, execution_id: Uuid, schema_ids: &[String]) -> Result<(), ConnectorError> {
    let mut client = pool.get().await.map_err(state)?;
    let tx = client.transaction().await.map_err(state)?;
    for table in ["bulk_partitions", "bulk_schema_executions"] {
        let sql = format!("delete from {table} where execution_id = $1 and schema_id = any($2)");
        tx.execute(&sql, &[&execution_id, &schema_ids]).await.map_err(state)?;
    }
    tx.commit().await.map_err(state)
}

/// Where a partition stands.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub id: Uuid,
    pub schema_id: String,
    pub committed: bool,
    /// The status of its execution, once it was started.
    pub execution: Option<String>,
    pub error: Option<String>,
}

/// The partitions of `execution_id` of schemas still running.
pub async fn partitions(pool: &DbPool, execution_id: Uuid) -> Result<Vec<PartitionState>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select p.id, p.schema_id, p.status = 'committed' as committed, e.status as execution, e.errors ->> 0 as error
             from bulk_partitions p
             join bulk_schema_executions s on s.execution_id = p.execution_id and s.schema_id = p.schema_id
             left join executions e on e.kind = $2 and e.subject_id = p.id
             where p.execution_id = $1 and s.status = 'running'
             order by p.schema_id, p.index",
            &[&execution_id, &executions::BULK_PARTITION],
        )
        .await
        .map_err(state)?;
    rows.iter()
        .map(|r| {
            Ok(PartitionState {
                id: r.try_get("id").map_err(state)?,
                schema_id: r.try_get("schema_id").map_err(state)?,
                committed: r.try_get("committed").map_err(state)?,
                execution: r.try_get("execution").map_err(state)?,
                error: r.try_get("error").map_err(state)?,
            })
        })
        .collect()
}

/// Creates the execution of partition `partition_id`; `false` when it exists already.
pub async fn start_partition(
    pool: &DbPool,
    partition_id: Uuid,
    organization_id: Uuid,
) -> Result<Option<Uuid>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let options = Json::Object(Default::default());
    match executions::create(
        &client,
        (executions::BULK_PARTITION, partition_id, organization_id),
        "bulk_sync",
        false,
        &options,
    )
    .await
    {
        Ok(id) => Ok(Some(id)),
        Err(executions::StartError::AlreadyRunning) => Ok(None),
        Err(executions::StartError::Db(e)) => Err(state(e)),
    }
}

/// Asks the running partitions of `execution_id` (of `schema_id` only, if given) to stop, and
/// ends the waiting ones.
pub async fn cancel_partitions(
    pool: &DbPool,
    execution_id: Uuid,
    schema_id: Option<&str>,
) -> Result<(), ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    client
        .execute(
            "update executions e set cancel_requested = true,
                status = case when e.status in ('created', 'queued') then 'canceled' else e.status end,
                completed_at = case when e.status in ('created', 'queued') then now() else e.completed_at end,
                updated_at = now()
             from bulk_partitions p
             where e.kind = $3 and e.subject_id = p.id and p.execution_id = $1 and ($2::text is null or p.schema_id = $2)
               and e.status = any($4)",
            &[&execution_id, &schema_id, &executions::BULK_PARTITION, &executions::ACTIVE],
        )
        .await
        .map_err(state)?;
    Ok(())
}

/// Brings each running schema's `rows_read` up to date with its partitions in flight.
pub async fn refresh_progress(pool: &DbPool, execution_id: Uuid) -> Result<(), ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    client
        .execute(
            "update bulk_schema_executions s set updated_at = now(), rows_read = coalesce((
                select sum(case when p.status = 'committed' then p.rows_read else coalesce(e.records_read, 0) end)
                from bulk_partitions p left join executions e on e.kind = $2 and e.subject_id = p.id
                where p.execution_id = s.execution_id and p.schema_id = s.schema_id), 0)
             where s.execution_id = $1 and s.status = 'running'",
            &[&execution_id, &executions::BULK_PARTITION],
        )
        .await
        .map_err(state)?;
    Ok(())
}

/// The counts of a schema's committed partitions, and the cursors they saw.
#[derive(Debug, Clone, Default)]
pub struct SchemaTotals {
    pub read: i64,
    pub written: i64,
    pub rejected: i64,
    pub skipped: i64,
    /// The rows the table did not hold before, when every partition's destination told.
    pub added: Option<i64>,
    /// The highest tracking value each partition read, where it read any.
    pub cursors: Vec<Json>,
}

/// Sums the committed partitions of one schema of `execution_id`.
pub async fn totals(pool: &DbPool, execution_id: Uuid, schema_id: &str) -> Result<SchemaTotals, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select rows_read, rows_written, rows_rejected, rows_skipped, rows_added, checkpoint from bulk_partitions
             where execution_id = $1 and schema_id = $2 and status = 'committed'",
            &[&execution_id, &schema_id],
        )
        .await
        .map_err(state)?;
    let mut totals = SchemaTotals { added: Some(0), ..SchemaTotals::default() };
    for row in rows {
        let added = row.try_get::<_, Option<i64>>("rows_added").map_err(state)?;
        totals.added = totals.added.zip(added).map(|(sum, added)| sum + added);
        totals.read += row.try_get::<_, i64>("rows_read").map_err(state)?;
        totals.written += row.try_get::<_, i64>("rows_written").map_err(state)?;
        totals.rejected += row.try_get::<_, i64>("rows_rejected").map_err(state)?;
        totals.skipped += row.try_get::<_, i64>("rows_skipped").map_err(state)?;
        if let Some(cursor) = row.try_get::<_, Option<Json>>("checkpoint").map_err(state)? {
            totals.cursors.push(cursor);
        }
    }
    Ok(totals)
}

/// Records that `schema_id`'s shadow is about to be swapped in, having deleted `deleted` rows.
pub async fn start_swap(
    pool: &DbPool,
    execution_id: Uuid,
    schema_id: &str,
    deleted: i64,
) -> Result<(), ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    client
        .execute(
            "update bulk_schema_executions set swap_started_at = now(), rows_deleted = $3, updated_at = now()
             where execution_id = $1 and schema_id = $2",
            &[&execution_id, &schema_id, &deleted],
        )
        .await
        .map_err(state)?;
    Ok(())
}

/// The rows `schema_id`'s retirement deleted, when its shadow's swap already started.
pub async fn swap_started(pool: &DbPool, execution_id: Uuid, schema_id: &str) -> Result<Option<i64>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let row = client
        .query_one(
            "select case when swap_started_at is not null then rows_deleted end from bulk_schema_executions
             where execution_id = $1 and schema_id = $2",
            &[&execution_id, &schema_id],
        )
        .await
        .map_err(state)?;
    row.try_get(0).map_err(state)
}

/// How a schema of an execution ended.
pub struct SchemaEnd<'a> {
    pub status: &'a str,
    pub message: Option<String>,
    pub deleted: i64,
    /// The schema's state for the next run (`None`: unchanged).
    pub state: Option<SchemaState>,
}

/// Records how `schema_id` ended and, in the same transaction, its state for the next run.
pub async fn end_schema(
    pool: &DbPool,
    (sync_id, execution_id): (Uuid, Uuid),
    schema_id: &str,
    end: SchemaEnd<'_>,
) -> Result<(), ConnectorError> {
    let mut client = pool.get().await.map_err(state)?;
    let tx = client.transaction().await.map_err(state)?;
    tx.execute(
        "update bulk_schema_executions set status = $3, status_message = $4, rows_deleted = $5,
            rows_read = coalesce((select sum(p.rows_read) from bulk_partitions p where p.execution_id = $1
                and p.schema_id = $2 and p.status = 'committed'), 0),
            completed_at = now(), updated_at = now()
         where execution_id = $1 and schema_id = $2 and status = 'running'",
        &[&execution_id, &schema_id, &end.status, &end.message, &end.deleted],
    )
    .await
    .map_err(state)?;
    if let Some(schema_state) = &end.state {
        let schema_state = serde_json::to_value(schema_state).expect("a state serializes");
        tx.execute(
            "update bulk_sync_schemas set state = $3 where bulk_sync_id = $1 and schema_id = $2",
            &[&sync_id, &schema_id, &schema_state],
        )
        .await
        .map_err(state)?;
    }
    tx.commit().await.map_err(state)
}

/// How the schemas of `execution_id` ended: rows read, written, rejected, skipped, deleted, and
/// each failed schema with its message; and how many schemas ran.
pub async fn outcome(
    pool: &DbPool,
    execution_id: Uuid,
) -> Result<(executions::Counts, Vec<String>, usize), ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select schema_id, status, status_message, rows_read, rows_written, rows_rejected, rows_deleted
             from bulk_schema_executions where execution_id = $1 order by schema_id",
            &[&execution_id],
        )
        .await
        .map_err(state)?;
    let mut counts = executions::Counts::default();
    let mut failures = Vec::new();
    let schemas = rows.len();
    for row in rows {
        let get = |name: &str| row.try_get::<_, i64>(name).map_err(state);
        counts.read += get("rows_read")?;
        counts.written += get("rows_written")?;
        counts.rejected += get("rows_rejected")?;
        counts.deleted += get("rows_deleted")?;
        if row.try_get::<_, String>("status").map_err(state)? == "failed" {
            let schema: String = row.try_get("schema_id").map_err(state)?;
            let message: Option<String> = row.try_get("status_message").map_err(state)?;
            failures.push(format!("{schema}: {}", message.unwrap_or_default()));
        }
    }
    counts.inserted = counts.written;
    counts.changed = counts.written;
    counts.errors = counts.rejected + failures.len() as i64;
    Ok((counts, failures, schemas))
}

/// The task and schema of partition `partition_id`, with its bulk execution and sync, unless it
/// committed already.
pub async fn partition(pool: &DbPool, partition_id: Uuid) -> Result<Option<(Task, Uuid, Uuid)>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let row = client
        .query_opt(
            "select p.task, p.execution_id, e.subject_id as sync_id from bulk_partitions p
             join executions e on e.id = p.execution_id
             where p.id = $1 and p.status <> 'committed'",
            &[&partition_id],
        )
        .await
        .map_err(state)?;
    let Some(row) = row else { return Ok(None) };
    let task = serde_json::from_value(row.try_get("task").map_err(state)?)
        .map_err(|e| ConnectorError::permanent(format!("partition task: {e}")))?;
    Ok(Some((task, row.try_get("execution_id").map_err(state)?, row.try_get("sync_id").map_err(state)?)))
}

/// How each running schema of `execution_id` ends, by schema.
pub async fn finishes(pool: &DbPool, execution_id: Uuid) -> Result<HashMap<String, Finish>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select schema_id, plan from bulk_schema_executions where execution_id = $1 and plan is not null",
            &[&execution_id],
        )
        .await
        .map_err(state)?;
    rows.iter()
        .map(|r| {
            let finish = serde_json::from_value(r.try_get("plan").map_err(state)?)
                .map_err(|e| ConnectorError::permanent(format!("schema plan: {e}")))?;
            Ok((r.try_get("schema_id").map_err(state)?, finish))
        })
        .collect()
}

/// The schemas of `execution_id` still running, each with whether a user asked to cancel it.
pub async fn running(pool: &DbPool, execution_id: Uuid) -> Result<Vec<(String, bool)>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select schema_id, cancel_requested from bulk_schema_executions
             where execution_id = $1 and status = 'running' order by schema_id",
            &[&execution_id],
        )
        .await
        .map_err(state)?;
    rows.iter().map(|r| Ok((r.try_get(0).map_err(state)?, r.try_get(1).map_err(state)?))).collect()
}

/// Whether bulk sync `sync_id` is active; `None` once it is deleted.
pub async fn active(pool: &DbPool, sync_id: Uuid) -> Result<Option<bool>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let row = client.query_opt("select active from bulk_syncs where id = $1", &[&sync_id]).await.map_err(state)?;
    row.map(|r| r.try_get(0)).transpose().map_err(state)
}

/// The position sync `sync_id`'s capture last recorded, if any.
pub async fn recorded_position(pool: &DbPool, sync_id: Uuid) -> Result<Option<Lsn>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let sql = "select position from capture_slots where bulk_sync_id = $1";
    let row = client.query_opt(sql, &[&sync_id]).await.map_err(state)?;
    Ok(row.map(|r| r.try_get(0)).transpose().map_err(state)?.flatten())
}

/// The completed schemas of load `execution_id` as change capture writes them, by source
/// stream: how each ended and one of its tasks (fields and columns).
pub async fn capture_targets(
    pool: &DbPool,
    execution_id: Uuid,
) -> Result<HashMap<String, (Finish, Task)>, ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select distinct on (s.schema_id) s.plan, p.task from bulk_schema_executions s
             join bulk_partitions p on p.execution_id = s.execution_id and p.schema_id = s.schema_id
             where s.execution_id = $1 and s.status = 'completed' and s.plan is not null",
            &[&execution_id],
        )
        .await
        .map_err(state)?;
    let parse = |e: serde_json::Error| ConnectorError::permanent(format!("schema plan: {e}"));
    rows.iter()
        .map(|r| {
            let finish: Finish = serde_json::from_value(r.try_get("plan").map_err(state)?).map_err(parse)?;
            let task: Task = serde_json::from_value(r.try_get("task").map_err(state)?).map_err(parse)?;
            Ok((finish.stream.clone(), (finish, task)))
        })
        .collect()
}

/// Records a capture's confirmed `position`, the source's `highwater` mark its poll saw, the
/// commit time of the last change it applied (when it applied any) and how many more changes it
/// applied.
pub async fn record_position(
    pool: &DbPool,
    sync_id: Uuid,
    (position, highwater, time): (Lsn, Option<Lsn>, Option<chrono::DateTime<chrono::Utc>>),
    applied: i64,
) -> Result<(), ConnectorError> {
    let client = pool.get().await.map_err(state)?;
    client
        .execute(
            "update capture_slots set position = $2, highwater_mark = coalesce($3, highwater_mark),
                position_time = coalesce($4, position_time), applied = applied + $5, updated_at = now()
             where bulk_sync_id = $1",
            &[&sync_id, &position, &highwater, &time, &applied],
        )
        .await
        .map_err(state)?;
    Ok(())
}
