-- The replication slots (and publications) change capture created at a source, one per bulk
-- sync. No foreign key to bulk_syncs: the row outlives a deleted sync until the worker dropped
-- its slot at the source (the connection is kept to reach it).
create table capture_slots (
    bulk_sync_id  uuid primary key,
    connection_id uuid not null,
    slot          text not null,
    publication   text not null,
    created_at    timestamptz not null default now()
);
