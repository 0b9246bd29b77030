//! Roles, policies and what they grant a user.

use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, count, fetch_all, fetch_one, fetch_opt};
use crate::access::{Access, Grant, SystemRole, default_policy_actions};

/// What roles and policies share.
#[derive(Debug, Clone)]
pub struct Head {
    pub id: Uuid,
    pub name: String,
    pub organization_id: Uuid,
    /// The organization was created with it; system ones cannot change.
    pub system: bool,
}

impl Head {
    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            organization_id: row.try_get("organization_id")?,
            system: row.try_get("system")?,
        })
    }
}

/// A role or a policy: the two tables of permission objects.
pub trait Permission: FromRow {
    const TABLE: &'static str;
    const COLUMNS: &'static str;

    fn head(&self) -> &Head;

    /// A policy's actions (`[{"action", "role_ids"}]`); roles have none.
    fn actions(&self) -> Option<&Json>;
}

#[derive(Debug, Clone)]
pub struct Role {
    pub head: Head,
}

impl FromRow for Role {
    const WHAT: &'static str = "role";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self { head: Head::from_row(row)? })
    }
}

impl Permission for Role {
    const TABLE: &'static str = "roles";
    const COLUMNS: &'static str = "id, name, organization_id, system";

    fn head(&self) -> &Head {
        &self.head
    }

    fn actions(&self) -> Option<&Json> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub head: Head,
    pub policy_actions: Json,
}

impl FromRow for Policy {
    const WHAT: &'static str = "policy";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self { head: Head::from_row(row)?, policy_actions: row.try_get("policy_actions")? })
    }
}

impl Permission for Policy {
    const TABLE: &'static str = "policies";
    const COLUMNS: &'static str = "id, name, organization_id, system, policy_actions";

    fn head(&self) -> &Head {
        &self.head
    }

    fn actions(&self) -> Option<&Json> {
        Some(&self.policy_actions)
    }
}

/// Every role or policy of `org`, system ones first, then oldest first.
pub async fn list<T: Permission>(client: &impl GenericClient, org: Uuid) -> Result<Vec<T>, StoreError> {
    let sql =
        format!("select {} from {} where organization_id = $1 order by system desc, created_at", T::COLUMNS, T::TABLE);
    fetch_all(client, &sql, &[&org]).await
}

pub async fn get<T: Permission>(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<Option<T>, StoreError> {
    let sql = format!("select {} from {} where id = $1 and organization_id = $2", T::COLUMNS, T::TABLE);
    fetch_opt(client, &sql, &[&id, &org]).await
}

/// Creates a custom role or policy named `name` (policies with `actions`).
pub async fn insert<T: Permission>(
    client: &impl GenericClient,
    org: Uuid,
    name: &str,
    actions: Option<&Json>,
) -> Result<T, StoreError> {
    let sql = format!(
        "insert into {} (id, organization_id, name{}) values ($1, $2, $3{}) returning {}",
        T::TABLE,
        if actions.is_some() { ", policy_actions" } else { "" },
        if actions.is_some() { ", $4" } else { "" },
        T::COLUMNS
    );
    let id = Uuid::new_v4();
    match actions {
        Some(actions) => fetch_one(client, &sql, &[&id, &org, &name, actions]).await,
        None => fetch_one(client, &sql, &[&id, &org, &name]).await,
    }
}

/// Renames a role or a policy (policies get `actions` too).
pub async fn update<T: Permission>(
    client: &impl GenericClient,
    org: Uuid,
    id: Uuid,
    name: &str,
    actions: Option<&Json>,
) -> Result<T, StoreError> {
    let sql = format!(
        "update {} set name = $3{}, updated_at = now() where id = $1 and organization_id = $2 returning {}",
        T::TABLE,
        if actions.is_some() { ", policy_actions = $4" } else { "" },
        T::COLUMNS
    );
    match actions {
        Some(actions) => fetch_one(client, &sql, &[&id, &org, &name, actions]).await,
        None => fetch_one(client, &sql, &[&id, &org, &name]).await,
    }
}

/// Deletes role `id` of `org` and its bindings in the organization's policies.
pub async fn delete_role(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<(), StoreError> {
    client.execute("delete from roles where id = $1 and organization_id = $2", &[&id, &org]).await?;
    client
        .execute(
            "update policies set policy_actions = (select coalesce(jsonb_agg(jsonb_set(a, '{role_ids}',
                    coalesce((select jsonb_agg(r) from jsonb_array_elements(a->'role_ids') r where r <> to_jsonb($2::text)), '[]'))), '[]')
               from jsonb_array_elements(policy_actions) a) where organization_id = $1",
            &[&org, &id.to_string()],
        )
        .await?;
    Ok(())
}

/// Deletes policy `id` of `org` and removes it from the objects it applied to.
pub async fn delete_policy(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<(), StoreError> {
    client.execute("delete from policies where id = $1 and organization_id = $2", &[&id, &org]).await?;
    for objects in ["connections", "models", "model_syncs", "event_sources"] {
        let sql = format!("update {objects} set policies = array_remove(policies, $2) where organization_id = $1");
        client.execute(&sql, &[&org, &id.to_string()]).await?;
    }
    // A bulk sync keeps its policies in its spec.
    client
        .execute(
            "update bulk_syncs set spec = jsonb_set(spec, '{policies}', (spec -> 'policies') - $2)
             where organization_id = $1 and jsonb_typeof(spec -> 'policies') = 'array'",
            &[&org, &id.to_string()],
        )
        .await?;
    Ok(())
}

/// How many of `ids` are roles of `org`.
pub async fn count_roles(client: &impl GenericClient, org: Uuid, ids: &[Uuid]) -> Result<i64, StoreError> {
    count(client, "select count(*) as count from roles where organization_id = $1 and id = any($2)", &[&org, &ids])
        .await
}

/// How many of `ids` are policies of `org`.
pub async fn count_policies(client: &impl GenericClient, org: Uuid, ids: &[Uuid]) -> Result<i64, StoreError> {
    let sql = "select count(*) as count from policies where organization_id = $1 and id = any($2)";
    count(client, sql, &[&org, &ids]).await
}

/// The id of `org`'s system role `role`.
pub async fn system_role(client: &impl GenericClient, org: Uuid, role: SystemRole) -> Result<Uuid, StoreError> {
    let sql = format!("select {} from roles where organization_id = $1 and system and name = $2", Role::COLUMNS);
    Ok(fetch_one::<Role>(client, &sql, &[&org, &role.name()]).await?.head.id)
}

/// Creates the system roles (Admin, Member) and the Default policy of new organization `org`.
pub async fn insert_system(client: &impl GenericClient, org: Uuid) -> Result<(), StoreError> {
    let (admin, member) = (Uuid::new_v4(), Uuid::new_v4());
    client
        .execute(
            "insert into roles (id, organization_id, name, system) values ($1, $3, $4, true), ($2, $3, $5, true)",
            &[&admin, &member, &org, &SystemRole::Admin.name(), &SystemRole::Member.name()],
        )
        .await?;
    client
        .execute(
            "insert into policies (id, organization_id, name, system, policy_actions) values ($1, $2, 'Default', true, $3)",
            &[&Uuid::new_v4(), &org, &default_policy_actions(admin, member)],
        )
        .await?;
    Ok(())
}

/// How many admins `org` has.
pub async fn count_admins(client: &impl GenericClient, org: Uuid) -> Result<i64, StoreError> {
    let sql = "select count(*) as count from user_roles ur join roles r on r.id = ur.role_id
                where r.organization_id = $1 and r.system and r.name = 'Admin'";
    count(client, sql, &[&org]).await
}

/// What user `user_id`'s roles allow in `org`, in one query: the roles, and each policy action
/// bound to one of them (system policies grant without a policy id).
pub async fn access(client: &impl GenericClient, user_id: Uuid, org: Uuid) -> Result<Access, StoreError> {
    let row = client
        .query_one(
            "with mine as (select r.id, r.system and r.name = 'Admin' as admin from user_roles ur
                             join roles r on r.id = ur.role_id where ur.user_id = $1 and r.organization_id = $2)
             select array(select id from mine) as role_ids, coalesce((select bool_or(admin) from mine), false) as admin,
                    coalesce((select jsonb_agg(jsonb_build_object('policy', case when p.system then null else p.id end,
                                                                  'action', a->'action'))
                                from policies p, jsonb_array_elements(p.policy_actions) a
                               where p.organization_id = $2
                                 and exists (select 1 from jsonb_array_elements_text(a->'role_ids') r
                                              join mine on mine.id::text = r)), '[]') as grants",
            &[&user_id, &org],
        )
        .await?;
    let shape = |source| StoreError::Shape { what: "access", source };
    let grants: Json = row.try_get("grants").map_err(shape)?;
    let grants: Vec<Grant> =
        serde_json::from_value(grants).map_err(|e| StoreError::Malformed { what: "policy", message: e.to_string() })?;
    Ok(Access {
        role_ids: row.try_get("role_ids").map_err(shape)?,
        admin: row.try_get("admin").map_err(shape)?,
        grants,
    })
}
