//! `GET /api/audit-events`: the organization's audit log, newest first, for admins.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio_postgres::Row;
use uuid::Uuid;

use super::Page;
use crate::{AppState, auth::Caller, error::ApiError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list);
}

fn to_json(row: &Row) -> Json {
    json!({
        "id": row.get::<_, Uuid>(0),
        "organization_id": row.get::<_, Option<Uuid>>(1),
        "actor": {
            "type": row.get::<_, String>(2),
            "id": row.get::<_, Option<Uuid>>(3),
            "email": row.get::<_, Option<String>>(4),
        },
        "action": row.get::<_, String>(5),
        "object_type": row.get::<_, Option<String>>(6),
        "object_id": row.get::<_, Option<String>>(7),
        "ip": row.get::<_, Option<String>>(8),
        "created_at": row.get::<_, chrono::DateTime<chrono::Utc>>(9),
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
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = caller.admin()?;
    let page = Page::parse(query.page_token.as_deref(), query.limit, 100)?;
    let (limit, offset) = page.bounds();
    let rows = state
        .pool
        .get()
        .await?
        .query(
            "select id, organization_id, actor_type, actor_id, actor_email, action, object_type, object_id, ip, created_at
               from audit_events where organization_id = $1 and ($2::text is null or action = $2)
                and ($3::text is null or object_id = $3) and ($4::uuid is null or actor_id = $4)
              order by created_at desc, id limit $5 offset $6",
            &[&org, &query.action, &query.object_id, &query.actor_id, &limit, &offset],
        )
        .await?;
    Ok(page.respond(&rows, to_json))
}
