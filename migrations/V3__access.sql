-- Roles, policies, sessions, sign-in attempts and the audit log.

-- Roles: every organization has the system roles Admin and Member; custom roles sit beside them.
create table roles (
    id              uuid primary key,
    organization_id uuid not null references organizations (id) on delete cascade,
    name            text not null,
    system          boolean not null default false,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create unique index roles_org_name on roles (organization_id, lower(name));

create table user_roles (
    user_id uuid not null references users (id) on delete cascade,
    role_id uuid not null references roles (id) on delete cascade,
    primary key (user_id, role_id)
);
create index user_roles_role on user_roles (role_id);

-- Policies bind actions to roles: `[{"action": "read", "role_ids": ["…"]}]`. The system policy
-- "Default" applies to every object of its organization; custom ones to the objects listing them.
create table policies (
    id              uuid primary key,
    organization_id uuid not null references organizations (id) on delete cascade,
    name            text not null,
    system          boolean not null default false,
    policy_actions  jsonb not null default '[]',
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create unique index policies_org_name on policies (organization_id, lower(name));

-- Existing organizations get their system roles and default policy; users keep their role.
insert into roles (id, organization_id, name, system)
select gen_random_uuid(), o.id, r.name, true from organizations o, (values ('Admin'), ('Member')) r (name);
insert into user_roles (user_id, role_id)
select u.id, r.id from users u join roles r on r.organization_id = u.organization_id and r.system
 and r.name = case when u.role = 'admin' then 'Admin' else 'Member' end;
insert into policies (id, organization_id, name, system, policy_actions)
select gen_random_uuid(), o.id, 'Default', true, jsonb_build_array(
    jsonb_build_object('action', 'read', 'role_ids', jsonb_build_array(a.id, m.id)),
    jsonb_build_object('action', 'create', 'role_ids', jsonb_build_array(a.id)),
    jsonb_build_object('action', 'update', 'role_ids', jsonb_build_array(a.id)),
    jsonb_build_object('action', 'delete', 'role_ids', jsonb_build_array(a.id)),
    jsonb_build_object('action', 'run', 'role_ids', jsonb_build_array(a.id)))
  from organizations o
  join roles a on a.organization_id = o.id and a.system and a.name = 'Admin'
  join roles m on m.organization_id = o.id and m.system and m.name = 'Member';
alter table users drop column role;

-- An organization's own OIDC client (the Polytomic organization shape); the secret is sealed.
alter table organizations add column client_id text, add column client_secret bytea;

alter table api_keys add column revoked_at timestamptz;
alter table model_syncs add column policies text[] not null default '{}';
update model_syncs set policies = array(select jsonb_array_elements_text(spec->'policies')) where jsonb_typeof(spec->'policies') = 'array';

-- Web sessions: the cookie carries a random token; only its digest is stored.
create table sessions (
    id              uuid primary key,
    token_hash      bytea not null unique,
    user_id         uuid not null references users (id) on delete cascade,
    organization_id uuid not null references organizations (id) on delete cascade,
    csrf_token      text not null,
    ip              text,
    created_at      timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),
    expires_at      timestamptz not null,
    revoked_at      timestamptz
);
create index sessions_user on sessions (user_id);

-- Sign-ins in flight between the redirect to the identity provider and its callback.
create table sign_in_attempts (
    state         text primary key,
    nonce         text not null,
    pkce_verifier text not null,
    return_to     text not null,
    created_at    timestamptz not null default now()
);

-- Who did what to which object, and when. Kept when the organization is deleted.
create table audit_events (
    id              uuid primary key,
    organization_id uuid,
    actor_type      text not null,
    actor_id        uuid,
    actor_email     text,
    action          text not null,
    object_type     text,
    object_id       text,
    ip              text,
    created_at      timestamptz not null default now()
);
create index audit_events_org on audit_events (organization_id, created_at desc);
