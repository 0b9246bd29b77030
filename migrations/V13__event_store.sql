-- The partitions of the event store: tables events_<id>, each filled by one api process (its
-- writer) that numbers their events itself, dropped whole once delivered and past retention.
create table event_partitions (
    id         bigserial primary key,
    writer     text not null,
    created_at timestamptz not null default now()
);
