-- A capture's ingestion status: the source's WAL position its last poll saw (how far there was
-- to go: the lag is highwater_mark - position) and when it last recorded its progress.
alter table capture_slots
    add column highwater_mark pg_lsn,
    add column updated_at     timestamptz;

-- A deleted bulk sync's captures (and their console logs) go with it, like its loads.
create or replace function delete_bulk_sync_subjects() returns trigger language plpgsql as $$
begin
    delete from executions where kind in ('bulk_sync', 'bulk_cdc') and subject_id = old.id;
    delete from schedules where kind = 'bulk_sync' and subject_id = old.id;
    return old;
end $$;
