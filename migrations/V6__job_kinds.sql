-- Executions of every job kind, keyed by kind and subject (a model sync, later a bulk sync
-- partition, an event load, a query run). At most one unfinished execution per subject.
alter table sync_executions rename to executions;
alter table executions rename column sync_id to subject_id;
alter table executions add column kind text not null default 'model_sync';
alter table executions alter column kind drop default;
alter table executions drop constraint sync_executions_sync_id_fkey;
drop index sync_executions_one_active;
create unique index executions_one_active on executions (kind, subject_id)
    where status in ('created', 'queued', 'running', 'canceling');
alter index sync_executions_sync rename to executions_subject;
alter index sync_executions_running rename to executions_running;

-- A subject has no foreign key any more: deleting a model sync deletes its executions here.
create function delete_model_sync_executions() returns trigger language plpgsql as $$
begin
    delete from executions where kind = 'model_sync' and subject_id = old.id;
    return old;
end $$;
create trigger model_syncs_executions after delete on model_syncs
    for each row execute function delete_model_sync_executions();

-- When each subject of every kind runs next: one table the scheduler reads. A subject has a row
-- while it is active and scheduled.
create table schedules (
    kind            text not null,
    subject_id      uuid not null,
    organization_id uuid not null references organizations (id) on delete cascade,
    schedule        jsonb not null,
    next_run_at     timestamptz not null,
    primary key (kind, subject_id)
);
create index schedules_due on schedules (next_run_at);
insert into schedules (kind, subject_id, organization_id, schedule, next_run_at)
    select 'model_sync', id, organization_id, coalesce(spec -> 'schedule', '{}'), next_run_at
    from model_syncs where active and next_run_at is not null;
drop index model_syncs_due;
alter table model_syncs drop column next_run_at;

create or replace function delete_model_sync_executions() returns trigger language plpgsql as $$
begin
    delete from executions where kind = 'model_sync' and subject_id = old.id;
    delete from schedules where kind = 'model_sync' and subject_id = old.id;
    return old;
end $$;
