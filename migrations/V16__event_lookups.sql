-- A route's lookup from a model (`{"model_id", "key", "fields"}`), and its copy of the model's
-- rows by key, read again now and then; a row the model no longer has is removed.
alter table event_routes add column lookup jsonb;
create table event_lookups (
    route_id     uuid not null references event_routes (id) on delete cascade,
    key          text not null,
    fields       jsonb not null,
    refreshed_at timestamptz not null,
    primary key (route_id, key)
);
