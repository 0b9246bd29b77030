-- What happened to executions of model and bulk syncs, as `events.list` shows it (and webhooks
-- and notifications will deliver it): one event per change of an execution's status to running
-- or to an end, written by the transaction that changes it, with the payload Polytomic
-- documents for its type. Events are kept 48 hours.
create table events (
    id              uuid primary key default gen_random_uuid(),
    organization_id uuid not null references organizations (id) on delete cascade,
    type            text not null,
    payload         jsonb not null,
    created_at      timestamptz not null default clock_timestamp()
);
create index events_org on events (organization_id, created_at);

create function execution_event() returns trigger language plpgsql as $$
declare
    payload jsonb;
    type text;
begin
    if new.kind = 'model_sync' then
        select jsonb_build_object('execution_id', new.id, 'organization_id', new.organization_id, 'sync_id', s.id,
                                  'sync_name', s.name, 'target_connection_id', s.target_connection_id,
                                  'schedule', jsonb_build_object('frequency', s.spec #>> '{schedule,frequency}'))
          into payload from model_syncs s where s.id = new.subject_id;
        type := 'sync.' || new.status;
    else
        select jsonb_build_object('execution_id', new.id, 'organization_id', new.organization_id, 'sync_id', b.id,
                                  'sync_name', b.name, 'source_connection_id', b.source_connection_id,
                                  'destination_connection_id', b.destination_connection_id,
                                  'schedule', jsonb_build_object('frequency', b.spec #>> '{schedule,frequency}'),
                                  'trigger_source', new.trigger)
          into payload from bulk_syncs b where b.id = new.subject_id;
        type := 'bulk_sync.' || case new.status when 'completed_with_errors' then 'completed_with_error' else new.status end;
    end if;
    if payload is null then
        return null;
    end if;
    payload := payload || case new.status
        when 'failed' then jsonb_build_object('error', new.errors ->> 0)
        when 'canceled' then jsonb_build_object('status', new.status)
        when 'completed_with_errors' then jsonb_build_object('status', new.status, 'error', new.errors ->> 0,
            'number_of_errors', new.error_count, 'number_of_warnings', 0)
        when 'completed' then jsonb_build_object('status', new.status, 'trigger', new.trigger,
            'record_count', new.records_written, 'inserted_count', new.insert_count,
            'updated_count', new.update_count, 'upserted_count', new.insert_count + new.update_count,
            'error_count', new.error_count, 'warning_count', 0)
        else '{}'::jsonb end;
    insert into events (organization_id, type, payload) values (new.organization_id, type, payload);
    delete from events where organization_id = new.organization_id and created_at < now() - interval '48 hours';
    return null;
end $$;

create trigger execution_events after update of status on executions for each row
    when (old.status is distinct from new.status and new.kind in ('model_sync', 'bulk_sync')
          and new.status in ('running', 'completed', 'completed_with_errors', 'failed', 'canceled'))
    execute function execution_event();
