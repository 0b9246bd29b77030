//! Roles and policies (`permissions.roles.*`, `permissions.policies.*`) of the caller's
//! organization. Members may read them; only admins change them. System roles and the system
//! policy cannot be renamed or deleted.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{envelope, parse_id};
use crate::{
    AppState,
    access::validate_action,
    auth::Caller,
    error::{ApiError, parse_body},
    idempotency,
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

/// A table of permission objects: roles or policies.
struct Table {
    name: &'static str,
    columns: &'static str,
    what: &'static str,
    to_json: fn(&Row) -> Json,
}

const ROLES: Table =
    Table { name: "roles", columns: "id, name, organization_id, system", what: "role", to_json: role_json };
const POLICIES: Table = Table {
    name: "policies",
    columns: "id, name, organization_id, system, policy_actions",
    what: "policy",
    to_json: policy_json,
};

fn role_json(row: &Row) -> Json {
    json!({
        "id": row.get::<_, Uuid>(0),
        "name": row.get::<_, String>(1),
        "organization_id": row.get::<_, Uuid>(2),
        "system": row.get::<_, bool>(3),
    })
}

fn policy_json(row: &Row) -> Json {
    json!({
        "id": row.get::<_, Uuid>(0),
        "name": row.get::<_, String>(1),
        "organization_id": row.get::<_, Uuid>(2),
        "system": row.get::<_, bool>(3),
        "policy_actions": row.get::<_, Json>(4),
    })
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
    let found: i64 = client
        .query_one("select count(*) from roles where organization_id = $1 and id = any($2)", &[&org, &roles])
        .await?
        .get(0);
    if found as usize != roles.len() {
        return Err(ApiError::unprocessable("policy_actions: role_ids must name roles of this organization"));
    }
    Ok(json!(actions))
}

fn name_taken(e: tokio_postgres::Error, what: &str) -> ApiError {
    match e.code() {
        Some(code) if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
            ApiError::conflict(format!("a {what} with this name already exists"))
        }
        _ => e.into(),
    }
}

async fn list(state: &AppState, caller: &Caller, table: &Table) -> Result<HttpResponse, ApiError> {
    let sql = format!(
        "select {} from {} where organization_id = $1 order by system desc, created_at",
        table.columns, table.name
    );
    let rows = state.pool.get().await?.query(&sql, &[&caller.organization()?]).await?;
    Ok(envelope(rows.iter().map(table.to_json).collect()))
}

async fn get(state: &AppState, caller: &Caller, table: &Table, raw: &str) -> Result<HttpResponse, ApiError> {
    let id = parse_id(raw, table.what)?;
    let sql = format!("select {} from {} where id = $1 and organization_id = $2", table.columns, table.name);
    let row = state.pool.get().await?.query_opt(&sql, &[&id, &caller.organization()?]).await?;
    Ok(envelope((table.to_json)(&row.ok_or_else(|| ApiError::not_found(table.what))?)))
}

/// 404 unless object `id` of `table` is in `org`; 403 if it is a system one.
async fn custom(client: &impl GenericClient, table: &Table, id: Uuid, org: Uuid) -> Result<(), ApiError> {
    let sql = format!("select system from {} where id = $1 and organization_id = $2", table.name);
    let row = client.query_opt(&sql, &[&id, &org]).await?.ok_or_else(|| ApiError::not_found(table.what))?;
    match row.get::<_, bool>(0) {
        true => Err(ApiError::forbidden(format!("the system {} cannot be changed or deleted", table.what))),
        false => Ok(()),
    }
}

async fn remove(state: &AppState, caller: &Caller, table: &Table, raw: &str) -> Result<HttpResponse, ApiError> {
    let org = caller.admin()?;
    let id = parse_id(raw, table.what)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    custom(&tx, table, id, org).await?;
    tx.execute(&format!("delete from {} where id = $1", table.name), &[&id]).await?;
    if table.name == "policies" {
        for objects in ["connections", "models", "model_syncs"] {
            let sql = format!("update {objects} set policies = array_remove(policies, $2) where organization_id = $1");
            tx.execute(&sql, &[&org, &id.to_string()]).await?;
        }
    }
    if table.name == "roles" {
        // Bindings to the deleted role go with it.
        tx.execute(
            "update policies set policy_actions = (select coalesce(jsonb_agg(jsonb_set(a, '{role_ids}',
                    coalesce((select jsonb_agg(r) from jsonb_array_elements(a->'role_ids') r where r <> to_jsonb($2::text)), '[]'))), '[]')
               from jsonb_array_elements(policy_actions) a) where organization_id = $1",
            &[&org, &id.to_string()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Creates (`id` is `None`) or updates a role or a policy from `body`: its name, and for
/// policies its actions. System ones cannot be updated.
async fn save(
    state: &AppState,
    caller: &Caller,
    table: &Table,
    id: Option<&str>,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let org = caller.admin()?;
    let client = state.pool.get().await?;
    let id = match id {
        Some(raw) => {
            let id = parse_id(raw, table.what)?;
            custom(&client, table, id, org).await?;
            Some(id)
        }
        None => None,
    };
    let input: PermissionBody = parse_body(body)?;
    let name = input.name(org)?;
    let actions = match table.name {
        "policies" => Some(policy_actions(&client, org, &input).await?),
        _ => None,
    };
    let (columns, values) = match actions {
        Some(_) => ("name, policy_actions", "$3, $4"),
        None => ("name", "$3"),
    };
    let sql = match id {
        None => format!(
            "insert into {} (id, organization_id, {columns}) values ($1, $2, {values}) returning {}",
            table.name, table.columns
        ),
        Some(_) => format!(
            "update {} set ({columns}, updated_at) = row({values}, now()) where id = $1 and organization_id = $2 returning {}",
            table.name, table.columns
        ),
    };
    let id = id.unwrap_or_else(Uuid::new_v4);
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id, &org, &name];
    if let Some(actions) = &actions {
        params.push(actions);
    }
    let row = client.query_one(&sql, &params).await.map_err(|e| name_taken(e, table.what))?;
    Ok(envelope((table.to_json)(&row)))
}

#[get("/permissions/roles")]
async fn list_roles(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    list(&state, &caller, &ROLES).await
}

#[post("/permissions/roles")]
async fn create_role(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    idempotency::once(&state, &req, &caller, &body, save(&state, &caller, &ROLES, None, &body)).await
}

#[get("/permissions/roles/{id}")]
async fn get_role(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get(&state, &caller, &ROLES, &path).await
}

#[put("/permissions/roles/{id}")]
async fn update_role(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    save(&state, &caller, &ROLES, Some(&path), &body).await
}

#[delete("/permissions/roles/{id}")]
async fn delete_role(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove(&state, &caller, &ROLES, &path).await
}

#[get("/permissions/policies")]
async fn list_policies(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    list(&state, &caller, &POLICIES).await
}

#[post("/permissions/policies")]
async fn create_policy(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    idempotency::once(&state, &req, &caller, &body, save(&state, &caller, &POLICIES, None, &body)).await
}

#[get("/permissions/policies/{id}")]
async fn get_policy(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get(&state, &caller, &POLICIES, &path).await
}

#[put("/permissions/policies/{id}")]
async fn update_policy(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    save(&state, &caller, &POLICIES, Some(&path), &body).await
}

#[delete("/permissions/policies/{id}")]
async fn delete_policy(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    remove(&state, &caller, &POLICIES, &path).await
}
