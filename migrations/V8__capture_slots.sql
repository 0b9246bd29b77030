-- The replication slots (and publications) change capture created at a source, one per bulk
-- sync. No foreign key to bulk_syncs: the row outlives a deleted sync until the worker dropped
-- its slot at the source (the connection is kept to reach it). The capture's progress, for the
-- sync's ingestion status: the confirmed position, the commit time of the last change applied
-- (lag = now - it while changes wait) and how many changes were applied.
create table capture_slots (
    bulk_sync_id  uuid primary key,
    connection_id uuid not null,
    slot          text not null,
    publication   text not null,
    position      pg_lsn,
    position_time timestamptz,
    applied       bigint not null default 0,
    created_at    timestamptz not null default now()
);
