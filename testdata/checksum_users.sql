-- Row count and a digest of every column of `users`, in id order: equal digests, equal tables.
select count(*)::text || ' ' || coalesce(md5(string_agg(md5(concat_ws('|', id, email, first_name, last_name,
       coalesce(company, '\N'), score, revenue, active, created_at, updated_at, coalesce(attributes::text, '\N'), country)),
       '' order by id)), '-')
from users
