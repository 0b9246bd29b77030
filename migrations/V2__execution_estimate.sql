-- The source's estimate of how many records an execution reads, for progress and ETA.
alter table sync_executions add column records_estimate bigint;
