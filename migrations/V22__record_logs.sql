-- Record logs: whether an organization keeps them (and under which prefix of the log store),
-- and the files each execution wrote, by type (inserts, updates, deletes, errors).
alter table organizations add column record_logging jsonb not null default '{"enabled": false}';
alter table executions add column record_logs jsonb;
