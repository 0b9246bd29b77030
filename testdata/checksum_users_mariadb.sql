-- Each row of `users` in MariaDB (session time zone UTC) rendered as checksum_users.sql renders it
-- in PostgreSQL, digested, in id order: joined and digested once more, the digest it computes.
select md5(concat_ws('|', id, email, first_name, last_name, coalesce(company, '\\N'), score, revenue,
       case active when 1 then 't' when 0 then 'f' end,
       date_format(created_at, '%Y-%m-%d %H:%i:%s.%f'), date_format(updated_at, '%Y-%m-%d %H:%i:%s.%f'),
       coalesce(attributes, '\\N'), country))
from users
order by id
