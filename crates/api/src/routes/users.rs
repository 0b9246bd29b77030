//! Users, their roles, their API keys and `GET /api/me`.
//!
//! Partner routes live under `/api/organizations/{org_id}/users`; the same operations for the
//! caller's own organization under `/api/organization/users`, where reading needs membership and
//! changing needs the Admin role. An organization always keeps at least one admin there. Each
//! operation has one implementation; [`Members`] says which organization a path manages.

use std::{future::Future, pin::Pin};

use actix_web::{FromRequest, HttpRequest, HttpResponse, delete, dev::Payload, get, post, put, web};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{envelope, parse_id};
use crate::{
    AppState,
    access::SystemRole,
    auth::{Caller, Credential},
    domain::users::{self as domain, to_json},
    error::{ApiError, parse_body},
    idempotency, input, store,
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
        .service(list_partner)
        .service(create_partner)
        .service(get_partner)
        .service(update_partner)
        .service(delete_partner)
        .service(create_key);
}

/// The organization whose users a route manages. On `/organizations/{org_id}/users` the
/// deployment key manages any organization (which must exist); on `/organization/users`
/// members read their own organization's users, Admins change them, and a change may not leave
/// the organization without an admin.
pub struct Members {
    caller: Caller,
    organization_id: Uuid,
    /// Changes must leave the organization an admin.
    keep_an_admin: bool,
}

impl FromRequest for Members {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let caller = caller.await?;
            let Some(raw) = req.match_info().get("org_id") else {
                let organization_id = match req.method().is_safe() {
                    true => caller.organization()?,
                    false => caller.admin()?,
                };
                return Ok(Self { caller, organization_id, keep_an_admin: true });
            };
            let organization_id = parse_id(raw, "organization")?;
            caller.partner_on(organization_id)?;
            let state =
                req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::unauthorized("not configured"))?;
            if !store::organizations::exists_by_id(&state.pool.get().await?, organization_id).await? {
                return Err(ApiError::not_found("organization"));
            }
            Ok(Self { caller, organization_id, keep_an_admin: false })
        })
    }
}

#[derive(Deserialize)]
struct UserBody {
    email: Option<String>,
    role: Option<String>,
    role_ids: Option<Vec<String>>,
}

fn email(input: &UserBody) -> Result<String, ApiError> {
    input::email(input.email.as_deref().unwrap_or_default(), "email")
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
            Ok(Some(vec![store::permissions::system_role(client, organization_id, role).await?]))
        }
        (None, Some(ids)) => {
            let ids: Vec<Uuid> = ids
                .iter()
                .map(|id| {
                    Uuid::parse_str(id)
                        .map_err(|_| ApiError::unprocessable(format!("role_ids: {id:?} is not a role id")))
                })
                .collect::<Result<_, _>>()?;
            let found = store::permissions::count_roles(client, organization_id, &ids).await?;
            if ids.is_empty() || found as usize != ids.len() {
                return Err(ApiError::unprocessable("role_ids must name at least one role of this organization"));
            }
            Ok(Some(ids))
        }
        (None, None) => Ok(None),
    }
}

/// 422 unless `organization_id` still has an admin (checked before committing a change).
async fn keeps_an_admin(client: &impl GenericClient, organization_id: Uuid) -> Result<(), ApiError> {
    match store::permissions::count_admins(client, organization_id).await? {
        0 => Err(ApiError::unprocessable("an organization must keep at least one admin")),
        _ => Ok(()),
    }
}

async fn list(state: &AppState, members: Members) -> Result<HttpResponse, ApiError> {
    let users = store::users::list(&state.pool.get().await?, members.organization_id).await?;
    Ok(envelope(users.iter().map(to_json).collect()))
}

async fn create(state: &AppState, req: &HttpRequest, members: Members, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let organization_id = members.organization_id;
    idempotency::once(state, req, &members.caller, body, async {
        let input: UserBody = parse_body(body)?;
        let email = email(&input)?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        if store::users::find_by_email(&tx, organization_id, &email).await?.is_some() {
            return Err(ApiError::conflict(format!("a user with email {email:?} already exists"))
                .with_metadata(json!({"field": "email"})));
        }
        let roles = chosen_roles(&tx, organization_id, &input).await?;
        let id = domain::upsert(&tx, organization_id, &email, None).await?;
        if let Some(roles) = roles {
            store::users::set_roles(&tx, id, &roles).await?;
        }
        let user = domain::get(&tx, organization_id, id).await?;
        tx.commit().await?;
        Ok(envelope(to_json(&user)))
    })
    .await
}

async fn get(state: &AppState, members: Members, raw: &str) -> Result<HttpResponse, ApiError> {
    let id = parse_id(raw, "user")?;
    Ok(envelope(to_json(&domain::get(&state.pool.get().await?, members.organization_id, id).await?)))
}

/// Changes a user's email and roles.
async fn update(state: &AppState, members: Members, raw: &str, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let organization_id = members.organization_id;
    let id = parse_id(raw, "user")?;
    let input: UserBody = parse_body(body)?;
    let email = match input.email {
        Some(_) => Some(email(&input)?),
        None => None,
    };
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    domain::get(&tx, organization_id, id).await?;
    if let Some(roles) = chosen_roles(&tx, organization_id, &input).await? {
        store::users::set_roles(&tx, id, &roles).await?;
    }
    store::users::set_email(&tx, id, email.as_deref()).await?;
    if members.keep_an_admin {
        keeps_an_admin(&tx, organization_id).await?;
    }
    let user = domain::get(&tx, organization_id, id).await?;
    tx.commit().await?;
    Ok(envelope(to_json(&user)))
}

async fn delete(state: &AppState, members: Members, raw: &str) -> Result<HttpResponse, ApiError> {
    let organization_id = members.organization_id;
    let id = parse_id(raw, "user")?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let user = domain::get(&tx, organization_id, id).await?;
    store::users::delete(&tx, id).await?;
    if members.keep_an_admin {
        keeps_an_admin(&tx, organization_id).await?;
    }
    tx.commit().await?;
    Ok(envelope(to_json(&user)))
}

#[get("/me")]
async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let organization_id = caller.organization().ok();
    let organization_name = match organization_id {
        Some(id) => store::organizations::get(&state.pool.get().await?, id).await?.map(|org| org.name),
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
async fn list_current(state: web::Data<AppState>, members: Members) -> Result<HttpResponse, ApiError> {
    list(&state, members).await
}

#[get("/organizations/{org_id}/users")]
async fn list_partner(state: web::Data<AppState>, members: Members) -> Result<HttpResponse, ApiError> {
    list(&state, members).await
}

#[post("/organization/users")]
async fn create_current(
    state: web::Data<AppState>,
    req: HttpRequest,
    members: Members,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    create(&state, &req, members, &body).await
}

#[post("/organizations/{org_id}/users")]
async fn create_partner(
    state: web::Data<AppState>,
    req: HttpRequest,
    members: Members,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    create(&state, &req, members, &body).await
}

#[get("/organization/users/{id}")]
async fn get_current(
    state: web::Data<AppState>,
    members: Members,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get(&state, members, &path).await
}

#[get("/organizations/{org_id}/users/{id}")]
async fn get_partner(
    state: web::Data<AppState>,
    members: Members,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    get(&state, members, &path.1).await
}

#[put("/organization/users/{id}")]
async fn update_current(
    state: web::Data<AppState>,
    members: Members,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    update(&state, members, &path, &body).await
}

#[put("/organizations/{org_id}/users/{id}")]
async fn update_partner(
    state: web::Data<AppState>,
    members: Members,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    update(&state, members, &path.1, &body).await
}

#[delete("/organization/users/{id}")]
async fn delete_current(
    state: web::Data<AppState>,
    members: Members,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    delete(&state, members, &path).await
}

#[delete("/organizations/{org_id}/users/{id}")]
async fn delete_partner(
    state: web::Data<AppState>,
    members: Members,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    delete(&state, members, &path.1).await
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
    if !store::users::exists(&client, org, user).await? {
        return Err(ApiError::not_found("user"));
    }
    let keys = store::keys::list(&client, user).await?.into_iter().map(|key| {
        json!({
            "id": key.id,
            "created_at": key.created_at,
            "last_used_at": key.last_used_at,
            "revoked_at": key.revoked_at,
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
        let (id, key) = domain::mint_key(&state.pool.get().await?, org, user, force).await?;
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
    match store::keys::revoke(&state.pool.get().await?, org, user, key).await? {
        true => Ok(HttpResponse::NoContent().finish()),
        false => Err(ApiError::not_found("API key")),
    }
}

#[post("/organizations/{org_id}/users/{id}/keys")]
async fn create_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    members: Members,
    path: web::Path<(String, String)>,
    query: web::Query<KeyQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let user = parse_id(&path.1, "user")?;
    let owner = (members.organization_id, user);
    mint(&state, &req, &members.caller, owner, query.force.unwrap_or(false), &body).await
}
