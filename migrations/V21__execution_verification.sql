-- What reading a run's written records back found and cost: records checked, mismatched,
-- whether a sample, seconds.
alter table executions add column verification jsonb;
