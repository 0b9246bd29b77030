//! `GET/PUT /api/notifications/global-error-subscribers` (`client.notifications`): who gets
//! every sync error email of the organization (the worker's `alerts` sends them). The body is
//! `{"emails": […]}`, without the `data` envelope, as the SDK reads it. Subscribers need
//! `SMTP_URL`: without it, asking for any is refused.

use actix_web::{HttpResponse, get, put, web};
use serde::Deserialize;
use serde_json::json;

use crate::{
    AppState,
    error::{ApiError, parse_body},
    extract::{Tenant, TenantAdmin},
    input,
    store::organizations,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_subscribers).service(set_subscribers);
}

#[get("/notifications/global-error-subscribers")]
async fn get_subscribers(state: web::Data<AppState>, tenant: Tenant) -> Result<HttpResponse, ApiError> {
    let emails = organizations::error_subscribers(&state.pool.get().await?, tenant.organization_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "emails": emails })))
}

#[derive(Deserialize)]
struct Body {
    emails: Option<Vec<String>>,
}

#[put("/notifications/global-error-subscribers")]
async fn set_subscribers(
    state: web::Data<AppState>,
    admin: TenantAdmin,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: Body = parse_body(&body)?;
    let emails = subscribers(&state, body.emails.unwrap_or_default(), "emails")?;
    organizations::set_error_subscribers(&state.pool.get().await?, admin.0.organization_id, &emails).await?;
    Ok(HttpResponse::Ok().json(json!({ "emails": emails })))
}

/// `emails` checked as email addresses (`field[i]`) without repeats; none unless sync error
/// emails can be sent.
pub fn subscribers(state: &AppState, emails: Vec<String>, field: &str) -> Result<Vec<String>, ApiError> {
    if !emails.is_empty() && state.settings.smtp.is_none() {
        return Err(input::invalid(field, "needs SMTP_URL: this deployment sends no email"));
    }
    let mut checked: Vec<String> = Vec::with_capacity(emails.len());
    for (i, email) in emails.iter().enumerate() {
        let email = input::email(email, &format!("{field}[{i}]"))?;
        if !checked.contains(&email) {
            checked.push(email);
        }
    }
    Ok(checked)
}
