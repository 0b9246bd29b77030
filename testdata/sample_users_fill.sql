-- Deterministic rows for sample_users_table.sql; `{rows}` is replaced by the row count.
insert into users
select g,
       'user' || g || '@example.com',
       initcap(substr(md5(g::text), 1, 6)),
       initcap(substr(md5((g * 7)::text), 3, 8)),
       case when g % 20 = 0 then null else 'Company ' || g % 5000 end,
       (g * 7919) % 1000,
       ((g * 104729) % 100000000) / 100.0,
       g % 3 <> 0,
       timestamptz '2020-01-01' + g * interval '61 seconds',
       timestamptz '2021-01-01' + g * interval '1 second' + (g % 997) * interval '1 microsecond',
       case when g % 50 = 0 then null else jsonb_build_object('plan', (array['free','pro','team'])[1 + g % 3], 'seats', g % 250) end,
       (array['US','DE','FR','GB','IN','BR','JP'])[1 + g % 7]
from generate_series(1, {rows}::bigint) g;
analyze users;
