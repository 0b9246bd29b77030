-- A capture's ingestion status: the source's WAL position its last poll saw (how far there was
-- to go: the lag is highwater_mark - position) and when it last recorded its progress.
alter table capture_slots
    add column highwater_mark pg_lsn,
    add column updated_at     timestamptz;
