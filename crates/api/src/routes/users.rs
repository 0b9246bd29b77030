//! Users, their roles, their API keys and `GET /api/me`.
//!
//! Partner routes live under `/api/organizations/{org_id}/users`; the same operations for the
//! caller's own organization under `/api/organization/users`, where reading needs membership and
//! changing needs the Admin role. An organization always keeps at least one admin there.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::crypto::{hash_api_key, new_api_key};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{envelope, owned_row, parse_id};
use crate::{
    AppState,
    access::SystemRole,
    auth::{Caller, Credential},
    error::{ApiError, parse_body},
    idempotency,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(me)
        .service(list_current)
        .service(create_current)
        .service(get_current)
        .service(update_current)
        .service(delete_current)
        .service(list_keys)
        .service(create_own_key)
        .service(revoke_key)
        .service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(create_key);
}

/// Users with their role ids (system roles first) and whether one of them is Admin.
const SELECT: &str = "select u.id, u.email, u.organization_id,
        coalesce(array_agg(r.id order by r.system desc, r.created_at) filter (where r.id is not null), '{}'),
        coalesce(bool_or(r.system and r.name = 'Admin'), false)
   from users u left join user_roles ur on ur.user_id = u.id left join roles r on r.id = ur.role_id";

fn to_json(row: &Row) -> Json {
    json!({
        "id": row.get::<_, Uuid>(0),
        "email": row.get::<_, String>(1),
        "organization_id": row.get::<_, Uuid>(2),
        "role": if row.get::<_, bool>(4) { "admin" } else { "member" },
        "role_ids": row.get::<_, Vec<Uuid>>(3),
    })
}

/// User `id` of `organization_id` in the API shape, or 404.
pub async fn fetch(client: &impl GenericClient, organization_id: Uuid, id: Uuid) -> Result<Json, ApiError> {
    let sql = format!("{SELECT} where u.id = $1 and u.organization_id = $2 group by u.id");
    let row = client.query_opt(&sql, &[&id, &organization_id]).await?;
    Ok(to_json(&row.ok_or_else(|| ApiError::not_found("user"))?))
}

#[derive(Deserialize)]
struct UserBody {
    email: Option<String>,
    role: Option<String>,
    role_ids: Option<Vec<String>>,
}

fn email(input: &UserBody) -> Result<String, ApiError> {
    let email = input.email.as_deref().map(str::trim).unwrap_or_default();
    if !email.contains('@') || email.len() < 3 || email.len() > 320 {
        return Err(ApiError::unprocessable("email must be an email address"));
    }
    Ok(email.to_owned())
}

/// The id of `organization_id`'s system role `role`.
pub async fn system_role(
    client: &impl GenericClient,
    organization_id: Uuid,
    role: SystemRole,
) -> Result<Uuid, ApiError> {
    let row = client
        .query_one(
            "select id from roles where organization_id = $1 and system and name = $2",
            &[&organization_id, &role.name()],
        )
        .await?;
    Ok(row.get(0))
}

/// The roles a body asks for: `role` (legacy name) or `role_ids`, never both; `None` if neither.
async fn chosen_roles(
    client: &impl GenericClient,
    organization_id: Uuid,
    input: &UserBody,
) -> Result<Option<Vec<Uuid>>, ApiError> {
    match (&input.role, &input.role_ids) {
        (Some(_), Some(_)) => Err(ApiError::unprocessable("give role or role_ids, not both")),
        (Some(role), None) => {
            let role =
                SystemRole::parse(role).ok_or_else(|| ApiError::unprocessable("role must be admin or member"))?;
            Ok(Some(vec![system_role(client, organization_id, role).await?]))
        }
        (None, Some(ids)) => {
            let ids: Vec<Uuid> = ids
                .iter()
                .map(|id| {
                    Uuid::parse_str(id)
                        .map_err(|_| ApiError::unprocessable(format!("role_ids: {id:?} is not a role id")))
                })
                .collect::<Result<_, _>>()?;
            let found: i64 = client
                .query_one(
                    "select count(*) from roles where organization_id = $1 and id = any($2)",
                    &[&organization_id, &ids],
                )
                .await?
                .get(0);
            if ids.is_empty() || found as usize != ids.len() {
                return Err(ApiError::unprocessable("role_ids must name at least one role of this organization"));
            }
            Ok(Some(ids))
        }
        (None, None) => Ok(None),
    }
}

/// Gives `user_id` exactly `roles`.
async fn set_roles(client: &impl GenericClient, user_id: Uuid, roles: &[Uuid]) -> Result<(), ApiError> {
    client.execute("delete from user_roles where user_id = $1", &[&user_id]).await?;
    client
        .execute("insert into user_roles (user_id, role_id) select $1, unnest($2::uuid[])", &[&user_id, &roles])
        .await?;
    Ok(())
}

/// 422 unless `organization_id` still has an admin (checked before committing a change).
async fn keeps_an_admin(client: &impl GenericClient, organization_id: Uuid) -> Result<(), ApiError> {
    let admins: i64 = client
        .query_one(
            "select count(*) from user_roles ur join roles r on r.id = ur.role_id
              where r.organization_id = $1 and r.system and r.name = 'Admin'",
            &[&organization_id],
        )
        .await?
        .get(0);
    match admins {
        0 => Err(ApiError::unprocessable("an organization must keep at least one admin")),
        _ => Ok(()),
    }
}

/// The organization a partner route names, checked to exist.
async fn partner_org(state: &AppState, caller: &Caller, raw: &str) -> Result<Uuid, ApiError> {
    let id = parse_id(raw, "organization")?;
    caller.partner_on(id)?;
    let client = state.pool.get().await?;
    client
        .query_opt("select 1 from organizations where id = $1", &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(id)
}

/// Creates a user in `organization_id` with `role`, or finds the existing one with that email
/// (unchanged); answers its id. Without a role, an organization's first user becomes its Admin,
/// later ones Members.
pub async fn upsert(
    client: &impl GenericClient,
    organization_id: Uuid,
    email: &str,
    role: Option<SystemRole>,
) -> Result<Uuid, ApiError> {
    let inserted = client
        .query_opt(
            "insert into users (id, organization_id, email) values ($1, $2, $3)
             on conflict (organization_id, lower(email)) do nothing returning id",
            &[&Uuid::new_v4(), &organization_id, &email],
        )
        .await?;
    let id = match inserted {
        Some(row) => {
            let id = row.get(0);
            let first: bool = client
                .query_one("select count(*) = 1 from users where organization_id = $1", &[&organization_id])
                .await?
                .get(0);
            let role = role.unwrap_or(if first { SystemRole::Admin } else { SystemRole::Member });
            set_roles(client, id, &[system_role(client, organization_id, role).await?]).await?;
            id
        }
        None => client
            .query_one(
                "select id from users where organization_id = $1 and lower(email) = lower($2)",
                &[&organization_id, &email],
            )
            .await?
            .get(0),
    };
    Ok(id)
}

/// Mints an API key for `user_id`; with `replace`, the user's earlier keys are revoked first.
/// Returns the key's id and its value (shown once; only its digest is stored).
pub async fn mint_key(
    client: &impl GenericClient,
    organization_id: Uuid,
    user_id: Uuid,
    replace: bool,
) -> Result<(Uuid, String), ApiError> {
    owned_row(client, "users", "1", user_id, organization_id, "user").await?;
    if replace {
        client
            .execute("update api_keys set revoked_at = now() where user_id = $1 and revoked_at is null", &[&user_id])
            .await?;
    }
    let (id, key) = (Uuid::new_v4(), new_api_key());
    client
        .execute(
            "insert into api_keys (id, user_id, organization_id, key_hash) values ($1, $2, $3, $4)",
            &[&id, &user_id, &organization_id, &hash_api_key(&key)],
        )
        .await?;
    Ok((id, key))
}

async fn list_in(state: &AppState, organization_id: Uuid) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let sql = format!("{SELECT} where u.organization_id = $1 group by u.id order by min(u.created_at), u.id");
    let rows = client.query(&sql, &[&organization_id]).await?;
    Ok(envelope(rows.iter().map(to_json).collect()))
}

async fn create_in(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    organization_id: Uuid,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    idempotency::once(state, req, caller, body, async {
        let input: UserBody = parse_body(body)?;
        let email = email(&input)?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let taken = tx
            .query_opt(
                "select 1 from users where organization_id = $1 and lower(email) = lower($2)",
                &[&organization_id, &email],
            )
            .await?;
        if taken.is_some() {
            return Err(ApiError::unprocessable(format!("a user with email {email} already exists")));
        }
        let roles = chosen_roles(&tx, organization_id, &input).await?;
        let id = upsert(&tx, organization_id, &email, None).await?;
        if let Some(roles) = roles {
            set_roles(&tx, id, &roles).await?;
        }
        let user = fetch(&tx, organization_id, id).await?;
        tx.commit().await?;
        Ok(envelope(user))
    })
    .await
}

async fn get_in(state: &AppState, organization_id: Uuid, raw: &str) -> Result<HttpResponse, ApiError> {
    let id = parse_id(raw, "user")?;
    Ok(envelope(fetch(&state.pool.get().await?, organization_id, id).await?))
}

/// Changes a user's email and roles; `guard` keeps the organization from losing its last admin.
async fn update_in(
    state: &AppState,
    organization_id: Uuid,
    raw: &str,
    body: &[u8],
    guard: bool,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(raw, "user")?;
    let input: UserBody = parse_body(body)?;
    let email = match input.email {
        Some(_) => Some(email(&input)?),
        None => None,
    };
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    owned_row(&tx, "users", "1", id, organization_id, "user").await?;
    if let Some(roles) = chosen_roles(&tx, organization_id, &input).await? {
        set_roles(&tx, id, &roles).await?;
    }
    tx.execute("update users set email = coalesce($2, email), updated_at = now() where id = $1", &[&id, &email])
        .await
        .map_err(|e| match e.code() {
            Some(code) if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                ApiError::unprocessable("another user of this organization has that email")
            }
            _ => e.into(),
        })?;
    if guard {
        keeps_an_admin(&tx, organization_id).await?;
    }
    let user = fetch(&tx, organization_id, id).await?;
    tx.commit().await?;
    Ok(envelope(user))
}

async fn delete_in(state: &AppState, organization_id: Uuid, raw: &str, guard: bool) -> Result<HttpResponse, ApiError> {
    let id = parse_id(raw, "user")?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let user = fetch(&tx, organization_id, id).await?;
    tx.execute("delete from users where id = $1", &[&id]).await?;
    if guard {
        keeps_an_admin(&tx, organization_id).await?;
    }
    tx.commit().await?;
    Ok(envelope(user))
}

#[get("/me")]
async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let organization_id = caller.organization().ok();
    let organization_name: Option<String> = match organization_id {
        Some(id) => state
            .pool
            .get()
            .await?
            .query_opt("select name from organizations where id = $1", &[&id])
            .await?
            .map(|r| r.get(0)),
        None => None,
    };
    let method = match &caller {
        Caller::User(user) => match user.credential {
            Credential::ApiKey { .. } => "api_key",
            Credential::Session { .. } => "session",
        },
        _ => "deployment_key",
    };
    let mut identity = json!({
        "organization_id": organization_id,
        "organization_name": organization_name,
        "is_user": matches!(caller, Caller::User(_)),
        "is_organization": matches!(caller, Caller::Organization { .. }),
        "is_partner": matches!(caller, Caller::Partner),
        "is_system": false,
        "credential": {"method": method},
    });
    if let Caller::User(user) = &caller {
        identity["id"] = json!(user.id);
        identity["email"] = json!(user.email);
        identity["role"] = json!(if user.access.admin { "admin" } else { "member" });
        identity["role_ids"] = json!(user.access.role_ids);
    }
    Ok(envelope(identity))
}

#[get("/organization/users")]
async fn list_current(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    list_in(&state, caller.organization()?).await
}

#[post("/organization/users")]
async fn create_current(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = caller.admin()?;
    create_in(&state, &req, &caller, org, &body).await
}

#[get("/organization/users/{id}")]
async fn get_current(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get_in(&state, caller.organization()?, &path).await
}

#[put("/organization/users/{id}")]
async fn update_current(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    update_in(&state, caller.admin()?, &path, &body, true).await
}

#[delete("/organization/users/{id}")]
async fn delete_current(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    delete_in(&state, caller.admin()?, &path, true).await
}

/// The user a key route names: the caller themself, or anyone in the organization for admins.
fn key_owner(caller: &Caller, raw: &str) -> Result<(Uuid, Uuid), ApiError> {
    let org = caller.organization()?;
    let user = parse_id(raw, "user")?;
    match caller {
        Caller::User(own) if own.id == user => Ok((org, user)),
        _ => Ok((caller.admin()?, user)),
    }
}

#[get("/organization/users/{id}/keys")]
async fn list_keys(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (org, user) = key_owner(&caller, &path)?;
    let client = state.pool.get().await?;
    owned_row(&client, "users", "1", user, org, "user").await?;
    let rows = client
        .query(
            "select id, created_at, last_used_at, revoked_at from api_keys where user_id = $1 order by created_at",
            &[&user],
        )
        .await?;
    let keys = rows.iter().map(|r| {
        json!({
            "id": r.get::<_, Uuid>(0),
            "created_at": r.get::<_, chrono::DateTime<chrono::Utc>>(1),
            "last_used_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(2),
            "revoked_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(3),
        })
    });
    Ok(envelope(keys.collect()))
}

#[derive(Deserialize)]
struct KeyQuery {
    force: Option<bool>,
}

async fn mint(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    (org, user): (Uuid, Uuid),
    force: bool,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    idempotency::once(state, req, caller, body, async {
        let (id, key) = mint_key(&state.pool.get().await?, org, user, force).await?;
        Ok(envelope(json!({ "id": id, "value": key })))
    })
    .await
}

#[post("/organization/users/{id}/keys")]
async fn create_own_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<KeyQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let owner = key_owner(&caller, &path)?;
    mint(&state, &req, &caller, owner, query.force.unwrap_or(false), &body).await
}

#[delete("/organization/users/{id}/keys/{key_id}")]
async fn revoke_key(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, user) = key_owner(&caller, &path.0)?;
    let key = parse_id(&path.1, "API key")?;
    let revoked = state
        .pool
        .get()
        .await?
        .execute(
            "update api_keys set revoked_at = coalesce(revoked_at, now()) where id = $1 and user_id = $2 and organization_id = $3",
            &[&key, &user, &org],
        )
        .await?;
    match revoked {
        0 => Err(ApiError::not_found("API key")),
        _ => Ok(HttpResponse::NoContent().finish()),
    }
}

#[get("/organizations/{org_id}/users")]
async fn list(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let org = partner_org(&state, &caller, &path).await?;
    list_in(&state, org).await
}

#[post("/organizations/{org_id}/users")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = partner_org(&state, &caller, &path).await?;
    create_in(&state, &req, &caller, org, &body).await
}

#[get("/organizations/{org_id}/users/{id}")]
async fn get_one(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let org = partner_org(&state, &caller, &path.0).await?;
    get_in(&state, org, &path.1).await
}

#[put("/organizations/{org_id}/users/{id}")]
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = partner_org(&state, &caller, &path.0).await?;
    update_in(&state, org, &path.1, &body, false).await
}

#[delete("/organizations/{org_id}/users/{id}")]
async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let org = partner_org(&state, &caller, &path.0).await?;
    delete_in(&state, org, &path.1, false).await
}

#[post("/organizations/{org_id}/users/{id}/keys")]
async fn create_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<KeyQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = partner_org(&state, &caller, &path.0).await?;
    let user = parse_id(&path.1, "user")?;
    mint(&state, &req, &caller, (org, user), query.force.unwrap_or(false), &body).await
}
