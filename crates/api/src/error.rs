//! API errors: always the Polytomic error object `{"status", "message", "key", "metadata"}`.

use actix_web::{
    HttpResponse, ResponseError,
    body::{MessageBody, to_bytes_limited},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        StatusCode,
        header::{self, HeaderValue},
    },
    middleware::Next,
};
use serde_json::{Value as Json, json};
use syncline_core::{
    connector::{ConnectorError, ErrorClass},
    db::{DbError, Refusal, Refused},
};

use crate::store::{StoreError, constraints};

/// An error answered to an API caller.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub metadata: Json,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), metadata: json!({}) }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no or unknown credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: the credentials may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404 for `what` (also answered for other organizations' objects).
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// 409: conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 422: well-formed but invalid.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 429: a budget is used up; the caller may retry after `retry_after` seconds.
    pub fn too_many_requests(message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message).with_metadata(json!({ "retry_after": retry_after }))
    }

    /// Attaches metadata (e.g. the offending field).
    pub fn with_metadata(mut self, metadata: Json) -> Self {
        self.metadata = metadata;
        self
    }

    /// The error object `{"status", "message", "key", "metadata"}`.
    pub fn to_json(&self) -> Json {
        json!({
            "status": self.status.as_u16(),
            "message": self.message,
            "key": self.key(),
            "metadata": self.metadata,
        })
    }

    fn key(&self) -> &'static str {
        match self.status.as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            408 => "request_timeout",
            409 => "conflict",
            410 => "gone",
            413 => "payload_too_large",
            422 => "unprocessable_entity",
            429 => "too_many_requests",
            431 => "request_header_fields_too_large",
            502 => "bad_gateway",
            503 => "service_unavailable",
            _ => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.metadata.get("retry_after").and_then(Json::as_u64) {
            response.insert_header((header::RETRY_AFTER, seconds));
        }
        response.json(self.to_json())
    }
}

impl From<DbError> for ApiError {
    /// Values the database refuses are the caller's mistake (see [`refused`]). A pool with no
    /// free connection in time is 503 with `Retry-After`. Anything else is 503 and logged.
    fn from(e: DbError) -> Self {
        if let Some(refusal) = e.refused() {
            return refused(refusal);
        }
        if e.is_busy() {
            tracing::warn!("every state database connection is busy");
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; retry shortly")
                .with_metadata(json!({ "retry_after": 1 }));
        }
        tracing::error!(error = %e, "state database error");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "the state database is unavailable")
    }
}

/// The answer to a statement the database refused, naming the field its constraint guards: a
/// duplicate is 409; a reference to a missing object, a check or a missing value 422; a value
/// the database cannot take (SQLSTATE classes 22 and 54) 422 with the database's words.
fn refused(refused: Refused<'_>) -> ApiError {
    let field = constraints::field(refused.constraint, refused.table, refused.column);
    let object = refused.table.map_or("object", constraints::object);
    let invalid = |message: String| ApiError::unprocessable(message).with_metadata(json!({ "field": field }));
    match refused.refusal {
        Refusal::Duplicate => {
            let object = constraints::with_article(object);
            let message = match (refused.detail.and_then(constraints::duplicate_value), field.as_str()) {
                (Some(value), "name") => format!("{object} named {value:?} already exists"),
                (Some(value), field) => format!("{object} with {field} {value:?} already exists"),
                (None, field) => format!("{object} with this {field} already exists"),
            };
            ApiError::conflict(message).with_metadata(json!({ "field": field }))
        }
        Refusal::MissingReference => {
            let target = refused.detail.and_then(constraints::referenced_table).map(constraints::object);
            let target = target.unwrap_or_else(|| field.trim_end_matches("_id"));
            invalid(format!("{field} names no {target} of this organization"))
        }
        Refusal::Check => invalid(format!("{field} is not valid")),
        Refusal::Missing => invalid(format!("{field} is required")),
        Refusal::InvalidValue => ApiError::unprocessable(format!("a value is not valid: {}", refused.message)),
    }
}

impl From<StoreError> for ApiError {
    /// A row this code cannot read, or a malformed stored value, is a server fault: 500, logged.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(e) => e.into(),
            StoreError::Malformed { .. } | StoreError::Shape { .. } => {
                tracing::error!(error = %e, "unreadable state");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::from(e).into()
    }
}

impl From<ConnectorError> for ApiError {
    /// A customer system's failure, by class: a wrong request (bad SQL) is 400; refused
    /// credentials, a missing object or an unreachable system make the request unprocessable
    /// (422, never our own 401/404/503); a rate limit is 429 with the system's `retry_after`.
    fn from(e: ConnectorError) -> Self {
        let class = json!({ "class": e.class.as_str() });
        match e.class {
            ErrorClass::Config => Self::bad_request(e.message).with_metadata(class),
            ErrorClass::RateLimited { retry_after } => {
                let seconds = retry_after.map_or(1, |after| after.as_secs().max(1));
                Self::too_many_requests(e.message, seconds)
            }
            ErrorClass::Auth | ErrorClass::NotFound | ErrorClass::Transient | ErrorClass::Permanent => {
                Self::unprocessable(e.message).with_metadata(class)
            }
        }
    }
}

/// Parses a JSON body: 400 with serde's description of what is wrong with its shape or types,
/// 422 naming the field whose text is refused (see [`crate::input::check_body`]).
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { body };
    let invalid = |e: serde_json::Error| ApiError::bad_request(format!("invalid request body: {e}"));
    let value: Json = serde_json::from_slice(body).map_err(invalid)?;
    crate::input::check_body(&value)?;
    serde_json::from_value(value).map_err(invalid)
}

/// Largest error body [`json_errors`] reads to keep its text as the message.
const MAX_ERROR_TEXT: usize = 64 * 1024;

/// Middleware, outermost: every error the app answers is the JSON error object. An error response
/// that is not JSON yet (actix's own, such as 413 for an oversized body) is rewritten keeping its
/// status, headers and text; an error returned instead of a response (actix-cors refusing a
/// preflight) becomes the object too. JSON error bodies from handlers pass through untouched.
pub async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> actix_web::Result<ServiceResponse<impl MessageBody>> {
    let res = match next.call(req).await {
        Ok(res) => res,
        Err(e) => {
            let status = e.as_response_error().status_code();
            return Err(ApiError::new(status, message(status, &e.to_string())).into());
        }
    };
    let is_json =
        res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return Ok(res.map_into_left_body());
    }
    let (req, res) = res.into_parts();
    let (mut head, body) = res.into_parts();
    let text = match to_bytes_limited(body, MAX_ERROR_TEXT).await {
        Ok(Ok(text)) => String::from_utf8_lossy(&text).into_owned(),
        _ => String::new(),
    };
    let error = ApiError::new(status, message(status, &text));
    head.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let res = head.set_body(error.to_json().to_string());
    Ok(ServiceResponse::new(req, res).map_into_right_body())
}

/// `text`, trimmed, or the status's reason when there is none.
fn message(status: StatusCode, text: &str) -> String {
    match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        text => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_pool_says_when_to_retry() {
        let busy = deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait);
        let response = ApiError::from(busy).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
    }

    fn refusal<'a>(refusal: Refusal, table: &'a str, constraint: &'a str, detail: &'a str) -> Refused<'a> {
        Refused {
            refusal,
            constraint: Some(constraint),
            table: Some(table),
            column: None,
            detail: Some(detail),
            message: "",
        }
    }

    #[test]
    fn a_duplicate_is_a_conflict_naming_object_and_field() {
        let detail = "Key (organization_id, lower(name))=(0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f, ops) already exists.";
        let error = refused(refusal(Refusal::Duplicate, "roles", "roles_org_name", detail));
        assert_eq!(error.status, StatusCode::CONFLICT);
        assert_eq!(error.message, r#"a role named "ops" already exists"#);
        assert_eq!(error.metadata, json!({"field": "name"}));
        let detail =
            "Key (organization_id, lower(email))=(0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f, a@b.test) already exists.";
        let error = refused(refusal(Refusal::Duplicate, "users", "users_org_email", detail));
        assert_eq!(error.message, r#"a user with email "a@b.test" already exists"#);
        let error = refused(refusal(Refusal::Duplicate, "organizations", "organizations_name_key", ""));
        assert_eq!(error.message, "an organization with this name already exists");
    }

    #[test]
    fn a_missing_reference_is_unprocessable_naming_the_field() {
        let detail = "Key (target_connection_id)=(0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f) is not present in table \"connections\".";
        let error =
            refused(refusal(Refusal::MissingReference, "model_syncs", "model_syncs_target_connection_id_fkey", detail));
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.message, "target.connection_id names no connection of this organization");
        assert_eq!(error.metadata, json!({"field": "target.connection_id"}));
        let error = refused(refusal(Refusal::MissingReference, "models", "models_connection_id_fkey", ""));
        assert_eq!(error.message, "connection_id names no connection of this organization");
    }

    #[test]
    fn checks_and_missing_values_are_unprocessable() {
        let error = refused(refusal(Refusal::Check, "model_syncs", "model_syncs_mode_check", ""));
        assert_eq!((error.status, error.metadata), (StatusCode::UNPROCESSABLE_ENTITY, json!({"field": "mode"})));
        let missing = Refused { column: Some("name"), ..refusal(Refusal::Missing, "connections", "", "") };
        let error = refused(missing);
        assert_eq!((error.message.as_str(), error.metadata), ("name is required", json!({"field": "name"})));
        let error = refused(Refused { message: "value too long", ..refusal(Refusal::InvalidValue, "t", "", "") });
        assert_eq!(error.message, "a value is not valid: value too long");
    }
}
