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
    db::DbError,
};

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
    /// A value the database refuses (class 22, data exceptions; 54, limits such as an index
    /// row too large) is the caller's mistake: 422 with the database's words. A pool with no
    /// free connection in time is 503 with `Retry-After`. Anything else is 503 and logged.
    fn from(e: DbError) -> Self {
        match &e {
            DbError::Query(q) if q.code().is_some_and(|c| matches!(&c.code()[..2], "22" | "54")) => {
                let message = q.as_db_error().map_or_else(|| q.to_string(), |db| db.message().to_owned());
                Self::unprocessable(format!("a value is not valid: {message}"))
            }
            DbError::Pool(deadpool_postgres::PoolError::Timeout(_)) => {
                tracing::warn!("every state database connection is busy");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; retry shortly")
                    .with_metadata(json!({ "retry_after": 1 }))
            }
            _ => {
                tracing::error!(error = %e, "state database error");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "the state database is unavailable")
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
}
