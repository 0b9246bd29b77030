//! A bulk sync's error handling (`bulk_sync.error_handling`): the ingestion failure threshold,
//! and who gets its error emails beside the organization's global error subscribers (which
//! needs `SMTP_URL`), kept in the sync's spec (under [`KEY`], not echoed with the sync) across
//! its updates.

use actix_web::{HttpResponse, get, put, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::invalid;
use crate::{
    AppState,
    error::{ApiError, parse_body},
    extract::{Authorized, can},
    routes::{envelope, notifications},
    store::{self, bulk_syncs::BulkSync},
};

/// Where the spec keeps the settings.
pub const KEY: &str = "error_handling";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_one).service(update);
}

/// `{ingestion_failure_threshold, subscribers}` of a spec.
fn to_json(spec: &Json) -> Json {
    json!({
        "ingestion_failure_threshold": spec[KEY]["ingestion_failure_threshold"],
        "subscribers": spec[KEY].get("subscribers").cloned().unwrap_or_else(|| json!([])),
    })
}

#[get("/bulk/syncs/{id}/error-handling")]
async fn get_one(sync: Authorized<BulkSync, can::Read>) -> HttpResponse {
    envelope(to_json(&sync.spec))
}

#[derive(Deserialize)]
struct Body {
    ingestion_failure_threshold: Option<Json>,
    #[serde(default)]
    subscribers: Option<Vec<String>>,
}

/// Replaces the settings (an omitted threshold is unset, omitted subscribers are none).
#[put("/bulk/syncs/{id}/error-handling")]
async fn update(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: Body = parse_body(&body)?;
    let subscribers = notifications::subscribers(&state, input.subscribers.unwrap_or_default(), "subscribers")?;
    let threshold = match input.ingestion_failure_threshold {
        None | Some(Json::Null) => None,
        Some(n) => Some(n.as_u64().ok_or_else(|| {
            invalid("ingestion_failure_threshold", "ingestion_failure_threshold must be a non-negative integer".into())
        })?),
    };
    let mut spec = sync.spec.clone();
    spec[KEY] = json!({ "ingestion_failure_threshold": threshold, "subscribers": subscribers });
    let client = state.pool.get().await?;
    let updated = store::bulk_syncs::set_spec(&client, (sync.organization_id, sync.id), &spec, None).await?;
    Ok(envelope(to_json(&updated.ok_or_else(|| ApiError::not_found("bulk_sync"))?.spec)))
}
