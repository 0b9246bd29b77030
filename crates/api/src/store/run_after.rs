//! The upstreams each `runafter` model sync waits for (`model_sync_run_after`). The database
//! itself makes a sync due once they all finished (migration V17); what is kept here is which
//! syncs wait for which.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::StoreError;

/// An upstream: its job kind (`model_sync` or `bulk_sync`) and id.
pub type Upstream = (&'static str, Uuid);

/// Serializes, until the transaction ends, the changes of `org`'s run-after graph (a check for
/// cycles, a deleted upstream) with the others.
pub async fn lock(tx: &impl GenericClient, org: Uuid) -> Result<(), StoreError> {
    tx.execute("select pg_advisory_xact_lock(hashtextextended('model_sync_run_after ' || $1::uuid::text, 0))", &[&org])
        .await?;
    Ok(())
}

/// Whether model sync `target` is one of `from` or runs after one of them, directly or
/// transitively.
pub async fn reaches(client: &impl GenericClient, from: &[Uuid], target: Uuid) -> Result<bool, StoreError> {
    let row = client
        .query_one(
            "with recursive upstream (id) as (
                select unnest($1::uuid[])
                union
                select r.upstream_sync_id from model_sync_run_after r join upstream u on r.sync_id = u.id
                where r.upstream_sync_id is not null)
             select exists (select 1 from upstream where id = $2)",
            &[&from, &target],
        )
        .await?;
    row.try_get(0).map_err(|source| StoreError::Shape { what: "run-after graph", source })
}

/// Makes `upstreams` the ones sync `id` waits for (none: it waits for nothing). An upstream it
/// waited for already keeps whether it finished since the sync's last run; a new one has not.
pub async fn replace(tx: &impl GenericClient, id: Uuid, upstreams: &[Upstream]) -> Result<(), StoreError> {
    let (kinds, ids): (Vec<&str>, Vec<Uuid>) = upstreams.iter().copied().unzip();
    tx.execute(
        "delete from model_sync_run_after where sync_id = $1
            and (upstream_kind, upstream_id) not in (select * from unnest($2::text[], $3::uuid[]))",
        &[&id, &kinds, &ids],
    )
    .await?;
    tx.execute(
        "insert into model_sync_run_after (sync_id, upstream_kind, upstream_id)
         select $1, kind, upstream_id from unnest($2::text[], $3::uuid[]) as u(kind, upstream_id)
         on conflict do nothing",
        &[&id, &kinds, &ids],
    )
    .await?;
    Ok(())
}

/// The model syncs (id and name) that run after `upstream`.
pub async fn dependents(client: &impl GenericClient, upstream: Upstream) -> Result<Vec<(Uuid, String)>, StoreError> {
    let rows = client
        .query(
            "select s.id, s.name from model_sync_run_after r join model_syncs s on s.id = r.sync_id
             where r.upstream_kind = $1 and r.upstream_id = $2 order by s.name, s.id",
            &[&upstream.0, &upstream.1],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("name")?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|source| StoreError::Shape { what: "sync", source })
}
