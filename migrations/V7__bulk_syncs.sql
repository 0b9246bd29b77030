-- Bulk syncs (ELT): whole objects (tables, API objects) of a source connection replicated into
-- a destination. `spec` is the top-level configuration as the API echoes it; the columns are
-- what the engine and the scheduler read.
create table bulk_syncs (
    id                        uuid primary key,
    organization_id           uuid not null references organizations (id) on delete cascade,
    name                      text not null,
    source_connection_id      uuid not null references connections (id) on delete cascade,
    destination_connection_id uuid not null references connections (id) on delete cascade,
    mode                      text not null check (mode in ('replicate', 'snapshot', 'append')),
    active                    boolean not null default false,
    spec                      jsonb not null,
    created_at                timestamptz not null default now(),
    updated_at                timestamptz not null default now()
);
create index bulk_syncs_org on bulk_syncs (organization_id, created_at);

-- The schemas a bulk sync replicates: their configuration as the API echoes it (fields,
-- filters, tracking field, partition key, output name, …) and what the engine keeps between
-- runs (`state`: the tracking cursor, the columns the destination has, why a schema stopped).
create table bulk_sync_schemas (
    bulk_sync_id uuid not null references bulk_syncs (id) on delete cascade,
    schema_id    text not null,
    enabled      boolean not null default true,
    config       jsonb not null default '{}',
    state        jsonb not null default '{}',
    primary key (bulk_sync_id, schema_id)
);

-- The catalog discovery found on a connection (`core::connector::Catalog` as JSON), kept until
-- a refresh replaces it.
create table connection_catalogs (
    connection_id       uuid primary key references connections (id) on delete cascade,
    status              text not null check (status in ('refreshing', 'fresh', 'failed')),
    catalog             jsonb,
    error               text,
    refresh_started_at  timestamptz,
    refresh_finished_at timestamptz
);

-- What users changed of a connection's discovered schemas: the primary key, and fields of
-- their own (`[{id, name, type, …}]`).
create table schema_overrides (
    connection_id uuid not null references connections (id) on delete cascade,
    schema_id     text not null,
    primary_keys  text[],
    fields        jsonb not null default '[]',
    primary key (connection_id, schema_id)
);

-- What a start asked for beyond `resync` (a bulk sync's `fetch_mode`, `resync_mode`,
-- `schemas`, `test`).
alter table executions add column options jsonb not null default '{}';

-- Each schema of a bulk sync execution: its progress and its accounting. A schema completes
-- only when rows read = written + rejected + skipped.
create table bulk_schema_executions (
    execution_id         uuid not null references executions (id) on delete cascade,
    schema_id            text not null,
    output_name          text not null,
    status               text not null default 'created',
    status_message       text,
    rows_total           bigint,
    rows_read            bigint not null default 0,
    rows_written         bigint not null default 0,
    rows_rejected        bigint not null default 0,
    rows_skipped         bigint not null default 0,
    rows_deleted         bigint not null default 0,
    partitions           integer not null default 0,
    partitions_committed integer not null default 0,
    cancel_requested     boolean not null default false,
    -- How the engine finishes the schema once its partitions committed (swap, sweep, cursor).
    plan                 jsonb,
    created_at           timestamptz not null default now(),
    started_at           timestamptz,
    completed_at         timestamptz,
    updated_at           timestamptz not null default now(),
    primary key (execution_id, schema_id)
);

-- The slices one schema's load is cut into. Each is the subject of an execution of kind
-- `bulk_partition` that any worker may run; a committed partition is a checkpoint of the
-- bulk execution, never loaded again.
create table bulk_partitions (
    id            uuid primary key,
    execution_id  uuid not null references executions (id) on delete cascade,
    schema_id     text not null,
    index         integer not null,
    task          jsonb not null,
    status        text not null default 'queued' check (status in ('queued', 'committed', 'failed')),
    worker        text,
    rows_read     bigint not null default 0,
    rows_written  bigint not null default 0,
    rows_rejected bigint not null default 0,
    rows_skipped  bigint not null default 0,
    rows_deleted  bigint not null default 0,
    -- The highest tracking field value the partition read.
    checkpoint    jsonb,
    committed_at  timestamptz,
    unique (execution_id, schema_id, index)
);

-- Console log lines of an execution (and of one of its schemas).
create table execution_logs (
    id           bigint generated always as identity primary key,
    execution_id uuid not null references executions (id) on delete cascade,
    schema_id    text,
    at           timestamptz not null default now(),
    level        text not null,
    message      text not null
);
create index execution_logs_execution on execution_logs (execution_id, id);

-- A subject may have several schedules (a bulk sync's default and additional ones), each
-- starting executions with its own options.
alter table schedules
    add column schedule_id text not null default 'default',
    add column options jsonb not null default '{}';
alter table schedules drop constraint schedules_pkey;
alter table schedules add primary key (kind, subject_id, schedule_id);

create function delete_bulk_sync_subjects() returns trigger language plpgsql as $$
begin
    delete from executions where kind = 'bulk_sync' and subject_id = old.id;
    delete from schedules where kind = 'bulk_sync' and subject_id = old.id;
    return old;
end $$;
create trigger bulk_syncs_subjects after delete on bulk_syncs
    for each row execute function delete_bulk_sync_subjects();

create function delete_bulk_partition_executions() returns trigger language plpgsql as $$
begin
    delete from executions where kind = 'bulk_partition' and subject_id = old.id;
    return old;
end $$;
create trigger bulk_partitions_executions after delete on bulk_partitions
    for each row execute function delete_bulk_partition_executions();
