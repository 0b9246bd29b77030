//! Roles and policies (`permissions.roles.*`, `permissions.policies.*`) of the caller's
//! organization. Members may read them; only admins change them. System roles and the system
//! policy cannot be renamed or deleted.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use super::{envelope, parse_id};
use crate::{
    AppState,
    access::validate_action,
    error::{ApiError, parse_body},
    extract::{Tenant, TenantAdmin},
    idempotency,
    store::{
        self,
        permissions::{Permission, Policy, Role},
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_roles)
        .service(create_role)
        .service(get_role)
        .service(update_role)
        .service(delete_role)
        .service(list_policies)
        .service(create_policy)
        .service(get_policy)
        .service(update_policy)
        .service(delete_policy);
}

/// A role or a policy as the API shows it.
fn to_json<T: Permission>(object: &T) -> Json {
    let head = object.head();
    let mut shown = json!({
        "id": head.id,
        "name": head.name,
        "organization_id": head.organization_id,
        "system": head.system,
    });
    if let Some(actions) = object.actions() {
        shown["policy_actions"] = actions.clone();
    }
    shown
}

#[derive(Deserialize)]
struct PermissionBody {
    name: Option<String>,
    organization_id: Option<Uuid>,
    policy_actions: Option<Vec<PolicyAction>>,
}

#[derive(Deserialize, serde::Serialize)]
struct PolicyAction {
    action: String,
    #[serde(default)]
    role_ids: Vec<Uuid>,
}

impl PermissionBody {
    /// The name, and a check that a given `organization_id` is the caller's own.
    fn name(&self, org: Uuid) -> Result<String, ApiError> {
        if self.organization_id.is_some_and(|id| id != org) {
            return Err(ApiError::not_found("organization"));
        }
        crate::input::name(self.name.as_deref(), "name")
    }
}

/// The policy actions of a body, checked: known actions, roles of organization `org`.
async fn policy_actions(client: &impl GenericClient, org: Uuid, input: &PermissionBody) -> Result<Json, ApiError> {
    let actions = input.policy_actions.as_deref().unwrap_or_default();
    for action in actions {
        validate_action(&action.action, false).map_err(ApiError::unprocessable)?;
    }
    let mut roles: Vec<Uuid> = actions.iter().flat_map(|a| a.role_ids.iter().copied()).collect();
    roles.sort();
    roles.dedup();
    if store::permissions::count_roles(client, org, &roles).await? as usize != roles.len() {
        return Err(ApiError::unprocessable("policy_actions: role_ids must name roles of this organization"));
    }
    Ok(json!(actions))
}

async fn list<T: Permission>(state: &AppState, tenant: &Tenant) -> Result<HttpResponse, ApiError> {
    let objects: Vec<T> = store::permissions::list(&state.pool.get().await?, tenant.organization_id).await?;
    Ok(envelope(objects.iter().map(to_json).collect()))
}

async fn get<T: Permission>(state: &AppState, tenant: &Tenant, raw: &str) -> Result<HttpResponse, ApiError> {
    let id = parse_id(raw, T::WHAT)?;
    let object: Option<T> = store::permissions::get(&state.pool.get().await?, tenant.organization_id, id).await?;
    Ok(envelope(to_json(&object.ok_or_else(|| ApiError::not_found(T::WHAT))?)))
}

/// 404 unless object `id` of `T` is in `org`; 403 if it is a system one.
async fn custom<T: Permission>(client: &impl GenericClient, id: Uuid, org: Uuid) -> Result<(), ApiError> {
    let object: T = store::permissions::get(client, org, id).await?.ok_or_else(|| ApiError::not_found(T::WHAT))?;
    match object.head().system {
        true => Err(ApiError::forbidden(format!("the system {} cannot be changed or deleted", T::WHAT))),
        false => Ok(()),
    }
}

async fn remove<T: Permission>(state: &AppState, admin: &TenantAdmin, raw: &str) -> Result<HttpResponse, ApiError> {
    let org = admin.organization_id;
    let id = parse_id(raw, T::WHAT)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    custom::<T>(&tx, id, org).await?;
    match T::TABLE {
        Policy::TABLE => store::permissions::delete_policy(&tx, org, id).await?,
        _ => store::permissions::delete_role(&tx, org, id).await?,
    }
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Creates (`id` is `None`) or updates a role or a policy from `body`: its name, and for
/// policies its actions. System ones cannot be updated.
async fn save<T: Permission>(
    state: &AppState,
    admin: &TenantAdmin,
    id: Option<&str>,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let org = admin.organization_id;
    let client = state.pool.get().await?;
    let id = match id {
        Some(raw) => {
            let id = parse_id(raw, T::WHAT)?;
            custom::<T>(&client, id, org).await?;
            Some(id)
        }
        None => None,
    };
    let input: PermissionBody = parse_body(body)?;
    let name = input.name(org)?;
    let actions = match T::TABLE {
        Policy::TABLE => Some(policy_actions(&client, org, &input).await?),
        _ => None,
    };
    let saved: T = match id {
        None => store::permissions::insert(&client, org, &name, actions.as_ref()).await?,
        Some(id) => store::permissions::update(&client, org, id, &name, actions.as_ref()).await?,
    };
    Ok(envelope(to_json(&saved)))
}

#[get("/permissions/roles")]
async fn list_roles(state: web::Data<AppState>, tenant: Tenant) -> Result<HttpResponse, ApiError> {
    list::<Role>(&state, &tenant).await
}

#[post("/permissions/roles")]
async fn create_role(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: TenantAdmin,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    idempotency::once(&state, &req, &admin.caller, &body, save::<Role>(&state, &admin, None, &body)).await
}

#[get("/permissions/roles/{id}")]
async fn get_role(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get::<Role>(&state, &tenant, &path).await
}

#[put("/permissions/roles/{id}")]
async fn update_role(
    state: web::Data<AppState>,
    admin: TenantAdmin,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    save::<Role>(&state, &admin, Some(&path), &body).await
}

#[delete("/permissions/roles/{id}")]
async fn delete_role(
    state: web::Data<AppState>,
    admin: TenantAdmin,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<Role>(&state, &admin, &path).await
}

#[get("/permissions/policies")]
async fn list_policies(state: web::Data<AppState>, tenant: Tenant) -> Result<HttpResponse, ApiError> {
    list::<Policy>(&state, &tenant).await
}

#[post("/permissions/policies")]
async fn create_policy(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: TenantAdmin,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    idempotency::once(&state, &req, &admin.caller, &body, save::<Policy>(&state, &admin, None, &body)).await
}

#[get("/permissions/policies/{id}")]
async fn get_policy(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get::<Policy>(&state, &tenant, &path).await
}

#[put("/permissions/policies/{id}")]
async fn update_policy(
    state: web::Data<AppState>,
    admin: TenantAdmin,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    save::<Policy>(&state, &admin, Some(&path), &body).await
}

#[delete("/permissions/policies/{id}")]
async fn delete_policy(
    state: web::Data<AppState>,
    admin: TenantAdmin,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove::<Policy>(&state, &admin, &path).await
}
