-- Sync error emails. Who gets them: the organization's global error subscribers and a sync's
-- own subscribers (a model sync's record-error emails only when it asks for them). What goes
-- out: an execution event that changes a sync's state — its first failure, its recovery, its
-- first run with record errors — marked `alert` when the event is written; and an execution
-- running longer than LONGSYNC_THRESHOLD, for which a worker writes one `long_running` alert
-- (the unique index makes it one across workers; `events.list` does not show it, Polytomic
-- documents no such event). A worker claims each alert (`email_claimed_until`) and sends it
-- until it is sent or given up (`emailed_at`).
alter table organizations add column error_subscribers jsonb not null default '[]';
alter table model_syncs add column error_subscribers jsonb not null default '[]',
                        add column notify_on_record_errors boolean not null default false;
alter table events add column subject_id uuid,
                   add column alert text check (alert in ('failed', 'recovered', 'record_errors', 'long_running')),
                   add column email_claimed_until timestamptz,
                   add column email_attempts integer not null default 0,
                   add column emailed_at timestamptz,
                   add column email_error text;
create index events_unsent_alerts on events (id) where alert is not null and emailed_at is null;
create unique index events_long_running on events ((payload ->> 'execution_id')) where alert = 'long_running';

-- An ended execution's alert: how its status differs from the subject's previous ended one.
create function execution_alert(execution executions) returns text language sql stable as $$
    select case
        when execution.status = 'failed' and previous is distinct from 'failed' then 'failed'
        when execution.status = 'completed' and previous = 'failed' then 'recovered'
        when execution.status = 'completed_with_errors' and previous is distinct from 'completed_with_errors'
            then 'record_errors'
    end
    from (select (select status from executions
                  where kind = execution.kind and subject_id = execution.subject_id and id <> execution.id
                    and status in ('completed', 'completed_with_errors', 'failed') and completed_at is not null
                  order by completed_at desc limit 1) as previous) p
$$;

-- An alert written with the event (`long_running`) is kept.
create or replace function execution_event_alert() returns trigger language plpgsql as $$
declare
    execution executions;
begin
    select * into execution from executions where id = (new.payload ->> 'execution_id')::uuid;
    if found then
        new.subject_id := execution.subject_id;
        if new.alert is null and new.type not like '%.running' then
            new.alert := execution_alert(execution);
        end if;
    end if;
    return new;
end $$;

create trigger event_alerts before insert on events for each row execute function execution_event_alert();
