-- Model syncs on a `runafter` schedule. A sync runs once every upstream it lists (a model sync
-- or a bulk sync) has finished an execution since the sync's last run was created: each edge
-- keeps when its upstream last finished in a way that counts, each sync when its last run was
-- created, both as ticks of one sequence (no clocks compared). The transaction that ends the
-- upstream execution completing the join makes the sync due (its `schedules` row, which the
-- scheduler starts exactly once). The API refuses to delete an upstream while syncs run after
-- it; an upstream deleted with its connection, model or organization leaves its dependents'
-- joins (a sync with no upstream left never runs on its own).
create sequence run_after_ticks;

create table model_sync_run_after (
    sync_id               uuid not null references model_syncs (id) on delete cascade,
    upstream_kind         text not null check (upstream_kind in ('model_sync', 'bulk_sync')),
    upstream_id           uuid not null,
    upstream_sync_id      uuid generated always as (case when upstream_kind = 'model_sync' then upstream_id end) stored
                          references model_syncs (id) on delete cascade,
    upstream_bulk_sync_id uuid generated always as (case when upstream_kind = 'bulk_sync' then upstream_id end) stored
                          references bulk_syncs (id) on delete cascade,
    -- When the upstream last finished an execution that counts for this sync (none yet: null).
    finished_tick         bigint,
    primary key (sync_id, upstream_kind, upstream_id)
);
create index model_sync_run_after_upstream on model_sync_run_after (upstream_kind, upstream_id);
create index model_sync_run_after_sync on model_sync_run_after (upstream_sync_id);
create index model_sync_run_after_bulk_sync on model_sync_run_after (upstream_bulk_sync_id);

-- When each model sync's last run (however started) was created. No foreign key: the start of
-- a run must not wait for the sync's row (the scheduler holds the due `schedules` row then, and
-- deleting a sync takes its row first, then its schedules).
create table model_sync_run_starts (
    sync_id uuid primary key,
    tick    bigint not null
);
create or replace function delete_model_sync_executions() returns trigger language plpgsql as $$
begin
    delete from executions where kind = 'model_sync' and subject_id = old.id;
    delete from schedules where kind = 'model_sync' and subject_id = old.id;
    delete from model_sync_run_starts where sync_id = old.id;
    return old;
end $$;

create function run_after_start() returns trigger language plpgsql as $$
begin
    insert into model_sync_run_starts (sync_id, tick) values (new.subject_id, nextval('run_after_ticks'))
        on conflict (sync_id) do update set tick = excluded.tick;
    return null;
end $$;
create trigger executions_run_after_start after insert on executions
    for each row when (new.kind = 'model_sync') execute function run_after_start();

-- When an execution ends: the dependents of its subject note that it finished (only a
-- `completed` one counts for a dependent with `run_after_success_only`), and each affected sync
-- that is active, not running, and whose every upstream finished since its last run is made
-- due. The subject itself is one of them: an upstream that finished while it ran makes it run
-- again. Deferred to the commit, after the subject's own effects: the affected syncs' edges are
-- locked in one order, so the last of several upstreams ending together sees the others.
create function run_after_release() returns trigger language plpgsql as $$
declare
    affected uuid[];
begin
    select coalesce(array_agg(distinct sync_id), '{}') into affected from model_sync_run_after
        where (upstream_kind = new.kind and upstream_id = new.subject_id)
           or (new.kind = 'model_sync' and sync_id = new.subject_id);
    if cardinality(affected) = 0 then
        return null;
    end if;
    perform 1 from model_sync_run_after where sync_id = any(affected)
        order by sync_id, upstream_kind, upstream_id for update;
    update model_sync_run_after r set finished_tick = nextval('run_after_ticks')
        from model_syncs s
        where s.id = r.sync_id and r.upstream_kind = new.kind and r.upstream_id = new.subject_id
          and (new.status = 'completed' or not coalesce((s.spec #>> '{schedule,run_after_success_only}')::boolean, false));
    insert into schedules (kind, subject_id, organization_id, schedule, next_run_at)
        select 'model_sync', s.id, s.organization_id, s.spec -> 'schedule', now() from model_syncs s
        where s.id = any(affected) and s.active and s.spec #>> '{schedule,frequency}' = 'runafter'
          and not exists (
              select 1 from model_sync_run_after r
              left join model_sync_run_starts started on started.sync_id = r.sync_id
              where r.sync_id = s.id and (r.finished_tick is null or r.finished_tick <= coalesce(started.tick, 0)))
          and not exists (select 1 from executions e where e.kind = 'model_sync' and e.subject_id = s.id
                          and e.status in ('created', 'queued', 'running', 'canceling'))
        on conflict (kind, subject_id, schedule_id) do update set next_run_at = least(schedules.next_run_at, now());
    return null;
end $$;
create constraint trigger executions_run_after_release after update of status on executions
    deferrable initially deferred
    for each row when (new.kind in ('model_sync', 'bulk_sync')
                       and old.status in ('created', 'queued', 'running', 'canceling')
                       and new.status not in ('created', 'queued', 'running', 'canceling'))
    execute function run_after_release();
