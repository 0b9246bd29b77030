//! The REST routes, grouped by resource.

use actix_web::web;
use uuid::Uuid;

use crate::error::ApiError;

pub mod connections;
pub mod executions;
pub mod models;
pub mod organizations;
pub mod status;
pub mod syncs;
pub mod targets;
pub mod users;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(status::status);
    cfg.service(
        web::scope("/api")
            .configure(organizations::configure)
            .configure(users::configure)
            .configure(connections::configure)
            .configure(targets::configure)
            .configure(models::configure)
            .configure(syncs::configure)
            .configure(executions::configure),
    );
}

/// Parses a path id; a malformed id names no object, so it is a 404.
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what))
}

/// Wraps `data` in the `{"data": …}` envelope.
pub fn envelope(data: serde_json::Value) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(serde_json::json!({ "data": data }))
}
