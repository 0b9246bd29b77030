-- The benchmark's `users` table (sample_users_table.sql, ../shared/bench/users.sql) in MariaDB:
-- text as utf8mb4 varchar, timestamps as timestamp(6) (read in UTC), JSON as MariaDB's checked
-- longtext. A default keeps MariaDB from updating the first timestamp on every update.
create table users (
    id         bigint primary key,
    email      varchar(255) not null,
    first_name varchar(255),
    last_name  varchar(255),
    company    varchar(255),
    score      int,
    revenue    decimal(12,2),
    active     boolean,
    created_at timestamp(6) not null default current_timestamp(6),
    updated_at timestamp(6) not null default current_timestamp(6),
    attributes json,
    country    varchar(255)
) character set utf8mb4
