-- Row count and a digest of every column of `users`, in id order: equal digests, equal tables.
-- Timestamps render in UTC, so that checksum_users_mariadb.sql can render a MariaDB copy alike.
select count(*)::text || ' ' || coalesce(md5(string_agg(md5(concat_ws('|', id, email, first_name, last_name,
       coalesce(company, '\N'), score, revenue, active,
       to_char(created_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
       to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
       coalesce(attributes::text, '\N'), country)), '' order by id)), '-')
from users
