-- How many of a committed partition's rows its table did not hold before (inserted rather than
-- updated), when the destination told; with the table's count from before the run, it gives
-- the count after the run without counting the table again.
alter table bulk_partitions add column rows_added bigint;
