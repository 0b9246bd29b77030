-- Event sources: where producers send events, each with a write key stored only as its SHA-256
-- digest (the key is random, so no salt is needed) and the key's last characters as a hint.
create table event_sources (
    id              uuid primary key,
    organization_id uuid not null references organizations (id) on delete cascade,
    name            text not null,
    write_key_hash  bytea not null unique,
    write_key_hint  text not null,
    policies        text[] not null default '{}',
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create unique index event_sources_org_name on event_sources (organization_id, lower(name));
