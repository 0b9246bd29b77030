-- A 12-column table of mixed types, shaped like the reference benchmark table.
create table users (
    id         bigint primary key,
    email      text not null,
    first_name text,
    last_name  text,
    company    text,
    score      int,
    revenue    numeric(12,2),
    active     boolean,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    attributes jsonb,
    country    text
);
