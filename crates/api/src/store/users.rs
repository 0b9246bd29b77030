//! Users of an organization and their roles.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, Id, StoreError, count, fetch_all, fetch_opt};

/// A user with their role ids (system roles first) and whether one of them is Admin.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub organization_id: Uuid,
    pub role_ids: Vec<Uuid>,
    pub admin: bool,
}

impl FromRow for User {
    const WHAT: &'static str = "user";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            organization_id: row.try_get("organization_id")?,
            role_ids: row.try_get("role_ids")?,
            admin: row.try_get("admin")?,
        })
    }
}

const SELECT: &str = "select u.id, u.email, u.organization_id,
        coalesce(array_agg(r.id order by r.system desc, r.created_at) filter (where r.id is not null), '{}') as role_ids,
        coalesce(bool_or(r.system and r.name = 'Admin'), false) as admin
   from users u left join user_roles ur on ur.user_id = u.id left join roles r on r.id = ur.role_id";

/// User `id` of `org`.
pub async fn get(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<Option<User>, StoreError> {
    fetch_opt(client, &format!("{SELECT} where u.id = $1 and u.organization_id = $2 group by u.id"), &[&id, &org]).await
}

/// Every user of `org`, oldest first.
pub async fn list(client: &impl GenericClient, org: Uuid) -> Result<Vec<User>, StoreError> {
    let sql = format!("{SELECT} where u.organization_id = $1 group by u.id order by min(u.created_at), u.id");
    fetch_all(client, &sql, &[&org]).await
}

/// Whether `org` has user `id`.
pub async fn exists(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<bool, StoreError> {
    super::exists(client, "select 1 from users where id = $1 and organization_id = $2", &[&id, &org]).await
}

/// The user of `org` with `email` (emails match without regard to case).
pub async fn find_by_email(client: &impl GenericClient, org: Uuid, email: &str) -> Result<Option<Uuid>, StoreError> {
    let sql = "select id from users where organization_id = $1 and lower(email) = lower($2)";
    Ok(fetch_opt::<Id>(client, sql, &[&org, &email]).await?.map(|id| id.0))
}

/// A user's oldest membership: (user, organization).
pub async fn oldest_membership(client: &impl GenericClient, email: &str) -> Result<Option<(Uuid, Uuid)>, StoreError> {
    let row = client
        .query_opt(
            "select id, organization_id from users where lower(email) = lower($1) order by created_at, id limit 1",
            &[&email],
        )
        .await?;
    let shape = |source| StoreError::Shape { what: "user", source };
    row.map(|r| Ok((r.try_get("id").map_err(shape)?, r.try_get("organization_id").map_err(shape)?))).transpose()
}

/// The user of organization `organization` (a name or an id) with `email`: (organization, user).
pub async fn find_in_named(
    client: &impl GenericClient,
    organization: &str,
    email: &str,
) -> Result<Option<(Uuid, Uuid)>, StoreError> {
    let row = client
        .query_opt(
            "select u.organization_id, u.id from users u join organizations o on o.id = u.organization_id
             where (o.name = $1 or o.id::text = $1) and lower(u.email) = lower($2)",
            &[&organization, &email],
        )
        .await?;
    let shape = |source| StoreError::Shape { what: "user", source };
    row.map(|r| Ok((r.try_get("organization_id").map_err(shape)?, r.try_get("id").map_err(shape)?))).transpose()
}

/// Creates user `email` in `org` unless one with that email exists; `None` when one does.
pub async fn insert(client: &impl GenericClient, org: Uuid, email: &str) -> Result<Option<Uuid>, StoreError> {
    let sql = "insert into users (id, organization_id, email) values ($1, $2, $3)
               on conflict (organization_id, lower(email)) do nothing returning id";
    Ok(fetch_opt::<Id>(client, sql, &[&Uuid::new_v4(), &org, &email]).await?.map(|id| id.0))
}

/// How many users `org` has.
pub async fn count_in(client: &impl GenericClient, org: Uuid) -> Result<i64, StoreError> {
    count(client, "select count(*) as count from users where organization_id = $1", &[&org]).await
}

/// Changes user `id`'s email (when given).
pub async fn set_email(client: &impl GenericClient, id: Uuid, email: Option<&str>) -> Result<(), StoreError> {
    client
        .execute("update users set email = coalesce($2, email), updated_at = now() where id = $1", &[&id, &email])
        .await?;
    Ok(())
}

/// Gives user `id` exactly `roles`.
pub async fn set_roles(client: &impl GenericClient, id: Uuid, roles: &[Uuid]) -> Result<(), StoreError> {
    client.execute("delete from user_roles where user_id = $1", &[&id]).await?;
    client.execute("insert into user_roles (user_id, role_id) select $1, unnest($2::uuid[])", &[&id, &roles]).await?;
    Ok(())
}

pub async fn delete(client: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    client.execute("delete from users where id = $1", &[&id]).await?;
    Ok(())
}
