//! Organizations (partner scope) and `GET /api/organization` (the caller's own).

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::crypto::SecretBox;
use uuid::Uuid;

use super::{envelope, parse_id};
use crate::{
    AppState,
    auth::Caller,
    domain,
    error::{ApiError, parse_body},
    extract::Tenant,
    idempotency,
    store::{self, organizations::Organization},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(current).service(list).service(create).service(get_one).service(update).service(remove);
}

fn to_json(org: &Organization) -> Json {
    json!({
        "id": org.id,
        "name": org.name,
        "issuer": org.issuer,
        "sso_domain": org.sso_domain,
        "sso_org_id": org.sso_org_id,
        "client_id": org.client_id,
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

/// Stores the SSO settings of organization `id` (replacing them) and answers it.
async fn store_settings(
    client: &impl GenericClient,
    secrets: &SecretBox,
    id: Uuid,
    input: &OrganizationBody,
) -> Result<Json, ApiError> {
    let settings = store::organizations::Settings {
        name: &input.name()?,
        issuer: input.issuer.as_deref(),
        sso_domain: input.sso_domain.as_deref(),
        sso_org_id: input.sso_org_id.as_deref(),
        client_id: input.client_id.as_deref(),
        sealed_client_secret: input.client_secret.as_deref().map(|s| secrets.seal(s.as_bytes())),
    };
    let org = store::organizations::update(client, id, &settings).await?;
    Ok(to_json(&org.ok_or_else(|| ApiError::not_found("organization"))?))
}

/// Organization `id`, or 404.
async fn answer(state: &AppState, id: Uuid) -> Result<HttpResponse, ApiError> {
    let org = store::organizations::get(&state.pool.get().await?, id).await?;
    Ok(envelope(to_json(&org.ok_or_else(|| ApiError::not_found("organization"))?)))
}

#[get("/organization")]
async fn current(state: web::Data<AppState>, tenant: Tenant) -> Result<HttpResponse, ApiError> {
    answer(&state, tenant.organization_id).await
}

#[get("/organizations")]
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let orgs = match caller {
        Caller::Partner => store::organizations::list(&client).await?,
        _ => store::organizations::get(&client, caller.organization()?).await?.into_iter().collect(),
    };
    Ok(envelope(orgs.iter().map(to_json).collect()))
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
        let id = domain::organizations::create(&tx, &input.name()?, None).await?;
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
    answer(&state, id).await
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
    let org = store::organizations::delete(&state.pool.get().await?, id).await?;
    Ok(envelope(to_json(&org.ok_or_else(|| ApiError::not_found("organization"))?)))
}
