-- Organizations, users and API keys.
create table organizations (
    id          uuid primary key,
    name        text not null unique,
    sso_domain  text,
    issuer      text,
    sso_org_id  text,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

create table users (
    id              uuid primary key,
    organization_id uuid not null references organizations (id) on delete cascade,
    email           text not null,
    role            text not null default 'admin',
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create unique index users_org_email on users (organization_id, lower(email));

create table api_keys (
    id              uuid primary key,
    user_id         uuid not null references users (id) on delete cascade,
    organization_id uuid not null references organizations (id) on delete cascade,
    key_hash        bytea not null unique,
    created_at      timestamptz not null default now(),
    last_used_at    timestamptz
);

-- Connections: `configuration` holds the non-secret settings, `secrets` the encrypted rest.
create table connections (
    id                   uuid primary key,
    organization_id      uuid not null references organizations (id) on delete cascade,
    name                 text not null,
    type                 text not null,
    configuration        jsonb not null,
    secrets              bytea,
    status               text not null default 'healthy',
    status_error         text,
    healthcheck_interval text,
    policies             text[] not null default '{}',
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now()
);
create index connections_org on connections (organization_id);

create table models (
    id               uuid primary key,
    organization_id  uuid not null references organizations (id) on delete cascade,
    connection_id    uuid not null references connections (id) on delete cascade,
    name             text not null,
    configuration    jsonb not null,
    fields           jsonb not null,
    identifier       text,
    tracking_columns text[] not null default '{}',
    labels           jsonb not null default '[]',
    policies         text[] not null default '{}',
    version          integer not null default 1,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);
create index models_org on models (organization_id);

-- Model syncs. `spec` is the full API body (echoed back); the columns are what the engine reads.
create table model_syncs (
    id                   uuid primary key,
    organization_id      uuid not null references organizations (id) on delete cascade,
    model_id             uuid not null references models (id) on delete cascade,
    target_connection_id uuid not null references connections (id) on delete cascade,
    name                 text not null,
    active               boolean not null default true,
    mode                 text not null,
    spec                 jsonb not null,
    next_run_at          timestamptz,
    -- Diff state committed by the last successful execution.
    snapshot_path        text,
    retry_identities     jsonb not null default '[]',
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now()
);
create index model_syncs_org on model_syncs (organization_id, updated_at desc);
create index model_syncs_due on model_syncs (next_run_at) where active and next_run_at is not null;

create table sync_executions (
    id               uuid primary key,
    sync_id          uuid not null references model_syncs (id) on delete cascade,
    organization_id  uuid not null references organizations (id) on delete cascade,
    status           text not null,
    trigger          text not null default 'manual',
    resync           boolean not null default false,
    cancel_requested boolean not null default false,
    worker           text,
    attempt          integer not null default 0,
    lease_until      timestamptz,
    requeued_at      timestamptz,
    records_read     bigint not null default 0,
    records_changed  bigint not null default 0,
    records_written  bigint not null default 0,
    insert_count     bigint not null default 0,
    update_count     bigint not null default 0,
    delete_count     bigint not null default 0,
    error_count      bigint not null default 0,
    errors           jsonb not null default '[]',
    created_at       timestamptz not null default now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz not null default now()
);
create index sync_executions_sync on sync_executions (sync_id, created_at desc);
-- At most one unfinished execution per sync: a concurrent start fails on this index (409).
create unique index sync_executions_one_active on sync_executions (sync_id)
    where status in ('created', 'queued', 'running', 'canceling');
create index sync_executions_running on sync_executions (lease_until) where status = 'running';

-- Per-record outcomes that failed, named by identity.
create table record_errors (
    execution_id uuid not null references sync_executions (id) on delete cascade,
    identity     text not null,
    message      text not null,
    primary key (execution_id, identity)
);

-- First outcome of each Idempotency-Key, replayed for 24 hours.
create table idempotency_keys (
    scope       text not null,
    key         text not null,
    request     text not null,
    status      integer,
    body        bytea,
    created_at  timestamptz not null default now(),
    primary key (scope, key)
);
