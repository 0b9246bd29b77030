-- A run planned before it writes: what it would insert, update and delete, with samples. A run
-- whose plan exceeds its sync's blast-radius limits waits (status 'waiting') for an approval,
-- and still occupies its subject meanwhile.
alter table executions add column plan jsonb;
drop index executions_one_active;
create unique index executions_one_active on executions (kind, subject_id)
    where status in ('created', 'queued', 'running', 'canceling', 'waiting');
