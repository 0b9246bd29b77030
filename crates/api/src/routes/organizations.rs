//! Organizations (partner scope) and `GET /api/organization` (the caller's own).

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::crypto::SecretBox;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{envelope, parse_id};
use crate::{
    AppState,
    access::{SystemRole, default_policy_actions},
    auth::Caller,
    error::{ApiError, parse_body},
    idempotency,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(current).service(list).service(create).service(get_one).service(update).service(remove);
}

const COLUMNS: &str = "id, name, issuer, sso_domain, sso_org_id, client_id";

fn to_json(row: &Row) -> Json {
    json!({
        "id": row.get::<_, Uuid>(0),
        "name": row.get::<_, String>(1),
        "issuer": row.get::<_, Option<String>>(2),
        "sso_domain": row.get::<_, Option<String>>(3),
        "sso_org_id": row.get::<_, Option<String>>(4),
        "client_id": row.get::<_, Option<String>>(5),
    })
}

#[derive(Deserialize)]
struct OrganizationBody {
    name: Option<String>,
    issuer: Option<String>,
    sso_domain: Option<String>,
    sso_org_id: Option<String>,
    client_id: Option<String>,
    /// Write-only: sealed at rest, never answered.
    client_secret: Option<String>,
}

impl OrganizationBody {
    fn name(&self) -> Result<String, ApiError> {
        crate::input::name(self.name.as_deref(), "name")
    }
}

/// Creates an organization with its system roles (Admin, Member) and its Default policy; the
/// name must be unique. Run it in a transaction. Also used by `workspaces provision` and the
/// first sign-in.
pub async fn insert(client: &impl GenericClient, name: &str, sso_domain: Option<&str>) -> Result<Uuid, ApiError> {
    let id = Uuid::new_v4();
    client
        .query_opt(
            "insert into organizations (id, name, sso_domain) values ($1, $2, $3) on conflict (name) do nothing returning id",
            &[&id, &name, &sso_domain],
        )
        .await?
        .ok_or_else(|| ApiError::conflict(format!("an organization named {name:?} already exists")))?;
    let (admin, member) = (Uuid::new_v4(), Uuid::new_v4());
    client
        .execute(
            "insert into roles (id, organization_id, name, system) values ($1, $3, $4, true), ($2, $3, $5, true)",
            &[&admin, &member, &id, &SystemRole::Admin.name(), &SystemRole::Member.name()],
        )
        .await?;
    client
        .execute(
            "insert into policies (id, organization_id, name, system, policy_actions) values ($1, $2, 'Default', true, $3)",
            &[&Uuid::new_v4(), &id, &default_policy_actions(admin, member)],
        )
        .await?;
    Ok(id)
}

/// Stores the SSO settings of organization `id` (replacing them) and answers it.
async fn store_settings(
    client: &impl GenericClient,
    secrets: &SecretBox,
    id: Uuid,
    input: &OrganizationBody,
) -> Result<Json, ApiError> {
    let sealed = input.client_secret.as_deref().map(|s| secrets.seal(s.as_bytes()));
    let row = client
        .query_opt(
            &format!(
                "update organizations set name = $2, issuer = $3, sso_domain = $4, sso_org_id = $5, client_id = $6,
                        client_secret = $7, updated_at = now() where id = $1 returning {COLUMNS}"
            ),
            &[&id, &input.name()?, &input.issuer, &input.sso_domain, &input.sso_org_id, &input.client_id, &sealed],
        )
        .await
        .map_err(|e| match e.code() {
            Some(code) if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                ApiError::conflict("an organization with this name already exists")
            }
            _ => e.into(),
        })?;
    Ok(to_json(&row.ok_or_else(|| ApiError::not_found("organization"))?))
}

#[get("/organization")]
async fn current(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let id = caller.organization()?;
    let client = state.pool.get().await?;
    let row = client.query_opt(&format!("select {COLUMNS} from organizations where id = $1"), &[&id]).await?;
    Ok(envelope(to_json(&row.ok_or_else(|| ApiError::not_found("organization"))?)))
}

#[get("/organizations")]
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let rows = match caller {
        Caller::Partner => {
            client.query(&format!("select {COLUMNS} from organizations order by created_at"), &[]).await?
        }
        _ => {
            client
                .query(&format!("select {COLUMNS} from organizations where id = $1"), &[&caller.organization()?])
                .await?
        }
    };
    Ok(envelope(rows.iter().map(to_json).collect()))
}

#[post("/organizations")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.partner()?;
    idempotency::once(&state, &req, &caller, &body, async {
        let input: OrganizationBody = parse_body(&body)?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let id = insert(&tx, &input.name()?, None).await?;
        let org = store_settings(&tx, &state.secrets, id, &input).await?;
        tx.commit().await?;
        Ok(envelope(org))
    })
    .await
}

#[get("/organizations/{id}")]
async fn get_one(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path, "organization")?;
    if !caller.can_see(id) {
        return Err(ApiError::not_found("organization"));
    }
    let client = state.pool.get().await?;
    let row = client.query_opt(&format!("select {COLUMNS} from organizations where id = $1"), &[&id]).await?;
    Ok(envelope(to_json(&row.ok_or_else(|| ApiError::not_found("organization"))?)))
}

#[put("/organizations/{id}")]
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path, "organization")?;
    caller.partner_on(id)?;
    let input: OrganizationBody = parse_body(&body)?;
    Ok(envelope(store_settings(&state.pool.get().await?, &state.secrets, id, &input).await?))
}

#[delete("/organizations/{id}")]
async fn remove(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path, "organization")?;
    caller.partner_on(id)?;
    let client = state.pool.get().await?;
    let row = client.query_opt(&format!("delete from organizations where id = $1 returning {COLUMNS}"), &[&id]).await?;
    Ok(envelope(to_json(&row.ok_or_else(|| ApiError::not_found("organization"))?)))
}
