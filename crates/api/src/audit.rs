//! The audit log: who did what to which object, and when.
//!
//! A middleware records every successful state-changing `/api` request, naming the action after
//! the route (`POST /api/connections` is `connection.create`, `PUT /api/syncs/{id}` is
//! `sync.update`, `POST /api/syncs/{id}/cancel` is `sync.cancel`, `/api/bulk/syncs` names bulk
//! syncs), so a new route is audited without further code. Sign-ins are recorded by the sign-in flow itself.

use actix_web::{
    Error, HttpMessage, HttpRequest,
    body::{MessageBody, to_bytes},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web,
};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use uuid::Uuid;

use crate::{
    AppState,
    auth::{Caller, client_ip},
    store::{self, StoreError},
};

/// One audit event.
pub struct Event<'a> {
    pub organization_id: Option<Uuid>,
    pub caller: &'a Caller,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub ip: &'a str,
}

/// Writes `event`.
pub async fn record(client: &impl GenericClient, event: Event<'_>) -> Result<(), StoreError> {
    let (actor_type, actor_id, actor_email) = match event.caller {
        Caller::Partner => ("partner", None, None),
        Caller::Organization { .. } => ("organization", None, None),
        Caller::User(user) => ("user", Some(user.id), Some(user.email.as_str())),
    };
    let event = store::audit::NewEvent {
        organization_id: event.organization_id,
        actor_type,
        actor_id,
        actor_email,
        action: &event.action,
        object_type: event.object_type.as_deref(),
        object_id: event.object_id.as_deref(),
        ip: event.ip,
    };
    store::audit::insert(client, &event).await
}

/// What a route does: the action name, the object type and the path parameter naming the object.
#[derive(Debug, PartialEq)]
struct Description {
    action: String,
    object_type: String,
    id_param: Option<String>,
}

/// Collections whose name after an object id is a nested collection, not a verb.
const COLLECTIONS: &[&str] = &[
    "connections",
    "models",
    "syncs",
    "bulk_syncs",
    "executions",
    "schemas",
    "schedules",
    "fields",
    "users",
    "keys",
    "roles",
    "policies",
];

/// Names the action of `method` on route `pattern` (e.g. `/api/syncs/{id}/cancel`).
fn describe(method: &str, pattern: &str) -> Option<Description> {
    let path = pattern.strip_prefix("/api/")?;
    let path = path.strip_prefix("bulk/syncs").map_or_else(|| path.to_owned(), |rest| format!("bulk_syncs{rest}"));
    let mut segments: Vec<&str> = path.split('/').collect();
    let is_param = |s: &str| s.starts_with('{');
    // A trailing literal that is not a collection is a verb on what precedes it
    // (`/syncs/{id}/cancel`, `/connections/test`).
    let last = *segments.last()?;
    let verb = match segments.len() > 1 && !is_param(last) && !COLLECTIONS.contains(&last) {
        true => segments.pop(),
        false => None,
    };
    let (collection, id_param) = match segments.as_slice() {
        [.., collection, param] if is_param(param) => (*collection, Some(param.trim_matches(['{', '}']).to_owned())),
        [.., collection] => (*collection, None),
        [] => return None,
    };
    let verb = verb.map(str::to_owned).unwrap_or_else(|| match method {
        "POST" => "create".into(),
        "PUT" | "PATCH" => "update".into(),
        "DELETE" => "delete".into(),
        other => other.to_ascii_lowercase(),
    });
    let object_type = singular(collection);
    Some(Description { action: format!("{object_type}.{verb}"), object_type, id_param })
}

fn singular(collection: &str) -> String {
    match collection {
        "policies" => "policy".into(),
        other => other.strip_suffix('s').unwrap_or(other).replace('-', "_"),
    }
}

/// Records successful state-changing API requests (see the module docs).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let description = match req.method().is_safe() {
        true => None,
        false => req.match_pattern().and_then(|p| describe(req.method().as_str(), &p)),
    };
    let res = next.call(req).await?;
    let Some(description) = description.filter(|_| res.status().is_success()) else {
        return Ok(res.map_into_boxed_body());
    };
    let (req, res) = res.into_parts();
    let (res, body) = res.into_parts();
    let body = to_bytes(body).await.unwrap_or_default();
    if let Err(e) = write(&req, description, &body).await {
        tracing::error!(error = %e, "cannot write an audit event");
    }
    Ok(ServiceResponse::new(req, res.set_body(body).map_into_boxed_body()))
}

/// Writes the event of a successful request that answered `body`.
async fn write(req: &HttpRequest, description: Description, body: &[u8]) -> Result<(), String> {
    let caller = req.extensions().get::<Caller>().cloned();
    let (Some(caller), Some(state)) = (caller, req.app_data::<web::Data<AppState>>()) else { return Ok(()) };
    let param = |name: &str| req.match_info().get(name).map(str::to_owned);
    let created = serde_json::from_slice::<Json>(body).ok().and_then(|b| b["data"]["id"].as_str().map(str::to_owned));
    let object_id = description.id_param.as_deref().and_then(param).or(created);
    // Partner requests belong to the organization they name or create.
    let organization_id = caller.organization().ok().or_else(|| {
        let named = param("org_id").or_else(|| object_id.clone().filter(|_| description.object_type == "organization"));
        named.and_then(|id| Uuid::parse_str(&id).ok())
    });
    let event = Event {
        organization_id,
        caller: &caller,
        action: description.action,
        object_type: Some(description.object_type),
        object_id,
        ip: &client_ip(req),
    };
    let client = state.pool.get().await.map_err(|e| e.to_string())?;
    record(&client, event).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(method: &str, pattern: &str) -> (String, Option<String>) {
        let d = describe(method, pattern).expect("an API route");
        (d.action, d.id_param)
    }

    #[test]
    fn names_actions_after_routes() {
        assert_eq!(action("POST", "/api/connections"), ("connection.create".into(), None));
        assert_eq!(action("PUT", "/api/connections/{id}"), ("connection.update".into(), Some("id".into())));
        assert_eq!(action("DELETE", "/api/syncs/{id}"), ("sync.delete".into(), Some("id".into())));
        assert_eq!(action("POST", "/api/syncs/{id}/cancel"), ("sync.cancel".into(), Some("id".into())));
        assert_eq!(action("POST", "/api/syncs/{id}/executions"), ("execution.create".into(), None));
        assert_eq!(
            action("POST", "/api/syncs/{sync_id}/executions/{id}/cancel"),
            ("execution.cancel".into(), Some("id".into()))
        );
        assert_eq!(action("POST", "/api/organizations/{org_id}/users/{id}/keys"), ("key.create".into(), None));
        assert_eq!(action("POST", "/api/connections/test"), ("connection.test".into(), None));
        assert_eq!(action("PUT", "/api/permissions/policies/{id}"), ("policy.update".into(), Some("id".into())));
        assert_eq!(action("POST", "/api/model-preview"), ("model_preview.create".into(), None));
        assert_eq!(action("POST", "/api/bulk/syncs"), ("bulk_sync.create".into(), None));
        assert_eq!(action("POST", "/api/bulk/syncs/{id}/activate"), ("bulk_sync.activate".into(), Some("id".into())));
        assert_eq!(
            action("POST", "/api/bulk/syncs/{id}/schemas/{schema_id}/cancel"),
            ("schema.cancel".into(), Some("schema_id".into()))
        );
        assert_eq!(action("POST", "/api/connections/{id}/schemas/refresh"), ("schema.refresh".into(), None));
        assert!(describe("POST", "/auth/logout").is_none());
    }
}
