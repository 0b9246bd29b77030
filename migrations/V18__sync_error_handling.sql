-- A model sync's error handling: whether the records the destination rejected are sent again on
-- the next run even when unchanged (`auto_retry_record_errors`); when off, they wait until they
-- change.
alter table model_syncs add column auto_retry_record_errors boolean not null default true;
