-- Routes: where an event source's events are delivered. Each route has its own delivery (an
-- `event_delivery` execution kept running by the `schedules` row the API writes), its own
-- position in every partition of the event store, its counts and its dead letters.
create table event_routes (
    id              uuid primary key,
    organization_id uuid not null references organizations (id) on delete cascade,
    source_id       uuid not null references event_sources (id) on delete cascade,
    connection_id   uuid not null references connections (id) on delete cascade,
    layout          text not null check (layout in ('source_table', 'segment')),
    schema_name     text not null,
    -- Which events the route takes: `{"types": [...], "events": [...], "match": {path: value}}`.
    filters         jsonb not null default '{}',
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index event_routes_source on event_routes (source_id);

-- The last event of its source each route delivered (or dead-lettered) in each partition.
create table event_route_cursors (
    route_id     uuid not null references event_routes (id) on delete cascade,
    partition_id bigint not null,
    seq          bigint not null,
    primary key (route_id, partition_id)
);

-- What each route did: events delivered (new rows), dropped as duplicates of rows the
-- destination had, left out by its filters, and dead-lettered; when it last delivered and the
-- arrival time of the newest event it delivered.
create table event_route_counts (
    route_id         uuid primary key references event_routes (id) on delete cascade,
    delivered        bigint not null default 0,
    filtered         bigint not null default 0,
    deduplicated     bigint not null default 0,
    dead_lettered    bigint not null default 0,
    last_received_at timestamptz,
    delivered_at     timestamptz
);

-- Events a route could not deliver, with why and after how many attempts, kept until their route
-- is deleted. A replay asked for marks them; the delivery then tries them again, and records
-- when they were delivered (or why they failed again).
create table event_dead_letters (
    id          bigserial primary key,
    route_id    uuid not null references event_routes (id) on delete cascade,
    message_id  text not null,
    received_at timestamptz not null,
    message     bytea not null,
    reason      text not null,
    attempts    integer not null,
    created_at  timestamptz not null default now(),
    replay_requested_at timestamptz,
    replayed_at timestamptz
);
create index event_dead_letters_route on event_dead_letters (route_id, id);
create index event_dead_letters_replays on event_dead_letters (route_id, id) where replay_requested_at is not null;

-- A route's delivery runs as long as the route exists; its schedule only restarts it.
create function delete_event_route_runs() returns trigger language plpgsql as $$
begin
    delete from schedules where kind = 'event_delivery' and subject_id = old.id;
    return old;
end $$;
create trigger event_routes_runs after delete on event_routes
    for each row execute function delete_event_route_runs();
