-- What identify calls said of each user of an organization: the lookup routes enrich events
-- from (user id → name, email, …), and when the user was first named.
create table event_users (
    organization_id uuid not null references organizations (id) on delete cascade,
    user_id         text not null,
    traits          jsonb not null default '{}',
    named_at        timestamptz,
    updated_at      timestamptz not null default now(),
    primary key (organization_id, user_id)
);

-- How each route enriches its events: the traits of the event's user it adds as `user_<trait>`.
alter table event_routes add column enrichment jsonb not null default '[]';

-- Log events of event streams (`user.first_named`, `delivery.dead_lettered`), kept for the
-- notification rules, each sent once. A user is named once per organization.
create table event_log (
    id              bigserial primary key,
    organization_id uuid not null references organizations (id) on delete cascade,
    source_id       uuid references event_sources (id) on delete set null,
    kind            text not null,
    subject         text not null,
    payload         jsonb not null,
    created_at      timestamptz not null default now(),
    notified_at     timestamptz
);
create unique index event_log_first_named on event_log (organization_id, subject) where kind = 'user.first_named';
create index event_log_pending on event_log (id) where notified_at is null;

-- Notification rules of each source: which log events go to which Slack channel
-- (`[{"events": ["user.first_named"], "channel": "#polku"}]`).
alter table event_sources add column notifications jsonb not null default '[]';

-- Sending log events: claimed by one worker at a time, tried again after a failure.
alter table event_log add column claimed_until timestamptz;
alter table event_log add column attempts integer not null default 0;
alter table event_log add column last_error text;

-- Events each source accepted, by partition: each writer adds what it committed about once a
-- second, and moves its partition's `counted_through` (the last event number counted) in the
-- same transaction, so the accepted count is these rows plus the events past that number (no
-- foreign key: a source deleted meanwhile must not fail a writer).
create table event_source_counts (
    source_id        uuid not null,
    partition_id     bigint not null,
    accepted         bigint not null default 0,
    last_received_at timestamptz,
    primary key (source_id, partition_id)
);
alter table event_partitions add column counted_through bigint not null default 0;
-- The secrets of the rules (a bot token or an incoming webhook URL each), sealed.
alter table event_sources add column notification_secrets bytea;
