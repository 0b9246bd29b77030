-- What kind of failure ended (or is being retried in) an execution, and how often the worker
-- retried it within its claim.
alter table sync_executions
    add column error_class text,
    add column retries integer not null default 0;
