//! Users, their API keys and `GET /api/me`.
//!
//! Partner routes live under `/api/organizations/{org_id}/users`; the same operations for the
//! caller's own organization under `/api/organization/users`.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::crypto::{hash_api_key, new_api_key};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{envelope, owned_row, parse_id};
use crate::{
    AppState,
    auth::Caller,
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
        .service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(create_key);
}

const COLUMNS: &str = "id, email, organization_id, role";
const ROLES: &[&str] = &["admin", "user"];

fn to_json(row: &Row) -> Json {
    json!({
        "id": row.get::<_, Uuid>(0),
        "email": row.get::<_, String>(1),
        "organization_id": row.get::<_, Uuid>(2),
        "role": row.get::<_, String>(3),
        "role_ids": [],
    })
}

#[derive(Deserialize)]
struct UserBody {
    email: Option<String>,
    role: Option<String>,
}

fn role(input: &UserBody) -> Result<String, ApiError> {
    let role = input.role.clone().unwrap_or_else(|| "admin".into()).to_ascii_lowercase();
    if !ROLES.contains(&role.as_str()) {
        return Err(ApiError::unprocessable(format!("role must be one of {}", ROLES.join(", "))));
    }
    Ok(role)
}

fn email(input: &UserBody) -> Result<String, ApiError> {
    let email = input.email.as_deref().map(str::trim).unwrap_or_default();
    if !email.contains('@') || email.len() < 3 {
        return Err(ApiError::unprocessable("email must be an email address"));
    }
    Ok(email.to_owned())
}

/// The organization a partner route names, checked to exist.
async fn partner_org(state: &AppState, caller: &Caller, raw: &str) -> Result<Uuid, ApiError> {
    caller.partner()?;
    let id = parse_id(raw, "organization")?;
    let client = state.pool.get().await?;
    client
        .query_opt("select 1 from organizations where id = $1", &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(id)
}

/// Creates a user in `organization_id`, or returns the existing one with that email.
pub async fn upsert(
    client: &impl deadpool_postgres::GenericClient,
    organization_id: Uuid,
    email: &str,
    role: &str,
) -> Result<Json, ApiError> {
    let row = client
        .query_one(
            &format!(
                "with new as (insert into users (id, organization_id, email, role) values ($1, $2, $3, $4)
                              on conflict (organization_id, lower(email)) do nothing returning {COLUMNS})
                 select {COLUMNS} from new union all
                 select {COLUMNS} from users where organization_id = $2 and lower(email) = lower($3) limit 1"
            ),
            &[&Uuid::new_v4(), &organization_id, &email, &role],
        )
        .await?;
    Ok(to_json(&row))
}

/// Mints an API key for `user_id`; with `replace`, the user's earlier keys are revoked.
pub async fn mint_key(
    client: &impl deadpool_postgres::GenericClient,
    organization_id: Uuid,
    user_id: Uuid,
    replace: bool,
) -> Result<String, ApiError> {
    owned_row(client, "users", "1", user_id, organization_id, "user").await?;
    if replace {
        client.execute("delete from api_keys where user_id = $1", &[&user_id]).await?;
    }
    let key = new_api_key();
    client
        .execute(
            "insert into api_keys (id, user_id, organization_id, key_hash) values ($1, $2, $3, $4)",
            &[&Uuid::new_v4(), &user_id, &organization_id, &hash_api_key(&key)],
        )
        .await?;
    Ok(key)
}

async fn list_in(state: &AppState, organization_id: Uuid) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!("select {COLUMNS} from users where organization_id = $1 order by created_at"),
            &[&organization_id],
        )
        .await?;
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
        let (email, role) = (email(&input)?, role(&input)?);
        let client = state.pool.get().await?;
        let taken = client
            .query_opt(
                "select 1 from users where organization_id = $1 and lower(email) = lower($2)",
                &[&organization_id, &email],
            )
            .await?;
        if taken.is_some() {
            return Err(ApiError::unprocessable(format!("a user with email {email} already exists")));
        }
        Ok(envelope(upsert(&client, organization_id, &email, &role).await?))
    })
    .await
}

async fn get_in(state: &AppState, organization_id: Uuid, raw: &str) -> Result<HttpResponse, ApiError> {
    let id = parse_id(raw, "user")?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("select {COLUMNS} from users where id = $1 and organization_id = $2"),
            &[&id, &organization_id],
        )
        .await?;
    Ok(envelope(to_json(&row.ok_or_else(|| ApiError::not_found("user"))?)))
}

async fn update_in(state: &AppState, organization_id: Uuid, raw: &str, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let id = parse_id(raw, "user")?;
    let input: UserBody = parse_body(body)?;
    let client = state.pool.get().await?;
    let email = match input.email {
        Some(_) => Some(email(&input)?),
        None => None,
    };
    let row = client
        .query_opt(
            &format!(
                "update users set email = coalesce($3, email), role = $4, updated_at = now()
                      where id = $1 and organization_id = $2 returning {COLUMNS}"
            ),
            &[&id, &organization_id, &email, &role(&input)?],
        )
        .await?;
    Ok(envelope(to_json(&row.ok_or_else(|| ApiError::not_found("user"))?)))
}

async fn delete_in(state: &AppState, organization_id: Uuid, raw: &str) -> Result<HttpResponse, ApiError> {
    let id = parse_id(raw, "user")?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("delete from users where id = $1 and organization_id = $2 returning {COLUMNS}"),
            &[&id, &organization_id],
        )
        .await?;
    Ok(envelope(to_json(&row.ok_or_else(|| ApiError::not_found("user"))?)))
}

#[get("/me")]
async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let organization_id = match &caller {
        Caller::Partner => None,
        other => Some(other.organization()?),
    };
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
    let mut identity = json!({
        "organization_id": organization_id,
        "organization_name": organization_name,
        "is_user": matches!(caller, Caller::User { .. }),
        "is_organization": matches!(caller, Caller::Organization { .. }),
        "is_partner": matches!(caller, Caller::Partner),
        "is_system": false,
        "credential": {"method": if matches!(caller, Caller::User { .. }) { "api_key" } else { "deployment_key" }},
    });
    if let Caller::User { user_id, email, role, .. } = &caller {
        identity["id"] = json!(user_id);
        identity["email"] = json!(email);
        identity["role"] = json!(role);
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
    let org = caller.organization()?;
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
    update_in(&state, caller.organization()?, &path, &body).await
}

#[delete("/organization/users/{id}")]
async fn delete_current(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    delete_in(&state, caller.organization()?, &path).await
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
    update_in(&state, org, &path.1, &body).await
}

#[delete("/organizations/{org_id}/users/{id}")]
async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let org = partner_org(&state, &caller, &path.0).await?;
    delete_in(&state, org, &path.1).await
}

#[derive(Deserialize)]
struct KeyQuery {
    force: Option<bool>,
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
    idempotency::once(&state, &req, &caller, &body, async {
        let client = state.pool.get().await?;
        let key = mint_key(&client, org, user, query.force.unwrap_or(false)).await?;
        Ok(envelope(json!({ "value": key })))
    })
    .await
}
