-- When a schema's shadow table was about to be swapped in, with the rows its retirement
-- deleted already in rows_deleted: a coordinator that takes over after that finishes the swap
-- (or finds it done) instead of settling the schema again.
alter table bulk_schema_executions add column swap_started_at timestamptz;
