//! `GET /api/audit-events`: the organization's audit log, newest first, for admins.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use super::Page;
use crate::{
    AppState,
    error::ApiError,
    extract::TenantAdmin,
    store::{self, audit::Event},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list);
}

fn to_json(event: &Event) -> Json {
    json!({
        "id": event.id,
        "organization_id": event.organization_id,
        "actor": {
            "type": event.actor_type,
            "id": event.actor_id,
            "email": event.actor_email,
        },
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "ip": event.ip,
        "created_at": event.created_at,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    page_token: Option<String>,
    limit: Option<i64>,
    action: Option<String>,
    object_id: Option<String>,
    actor_id: Option<Uuid>,
}

#[get("/audit-events")]
async fn list(
    state: web::Data<AppState>,
    admin: TenantAdmin,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::parse(query.page_token.as_deref(), query.limit, 100)?;
    let filter = store::audit::Filter {
        action: query.action.as_deref(),
        object_id: query.object_id.as_deref(),
        actor_id: query.actor_id,
    };
    let events = store::audit::list(&state.pool.get().await?, admin.organization_id, &filter, page.window()).await?;
    Ok(page.respond(&events, to_json))
}
