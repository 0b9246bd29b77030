//! Input checked at the edge, before it reaches a handler or the database: no NUL bytes or
//! control characters, bounded lengths, and names that fit their indexes. Every refusal is a
//! 422 naming the field.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
};
use serde_json::{Value as Json, json};

use crate::error::ApiError;

/// Longest name (of an organization, connection, model, sync, role or policy), in characters.
pub const NAME_MAX: usize = 255;
/// Longest other text value (a SQL query, a configuration value), in characters.
pub const TEXT_MAX: usize = 100_000;
/// Longest email address, in characters.
const EMAIL_MAX: usize = 320;
/// Longest query parameter value (sign-in callbacks carry the provider's code), in characters.
pub const QUERY_MAX: usize = 4_096;

/// 422 saying `field` `problem` (e.g. "limit must be between 1 and 100"), naming the field.
pub fn invalid(field: &str, problem: &str) -> ApiError {
    ApiError::unprocessable(format!("{field} {problem}")).with_metadata(json!({ "field": field }))
}

/// Refuses a NUL byte or a control character other than tab, newline and carriage return
/// (which SQL text may hold), and text longer than `max` characters.
fn check_text(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(invalid(field, "must not contain NUL bytes or control characters"));
    }
    if text.chars().count() > max {
        return Err(invalid(field, &format!("must be at most {max} characters long")));
    }
    Ok(())
}

/// Checks every string of a request body, keys included; the error names the field by its
/// path (`configuration.hostname`, `fields[2].target`).
pub fn check_body(value: &Json) -> Result<(), ApiError> {
    fn walk(value: &Json, path: &mut String) -> Result<(), ApiError> {
        match value {
            Json::String(text) => check_text(if path.is_empty() { "body" } else { path }, text, TEXT_MAX),
            Json::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let result = walk(item, path);
                path.truncate(len);
                result
            }),
            Json::Object(map) => map.iter().try_for_each(|(key, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                check_text(path, key, NAME_MAX)?;
                let result = walk(item, path);
                path.truncate(len);
                result
            }),
            _ => Ok(()),
        }
    }
    walk(value, &mut String::new())
}

/// A name: trimmed, present, one line, at most [`NAME_MAX`] characters.
pub fn name(value: Option<&str>, field: &str) -> Result<String, ApiError> {
    let name = value.map(str::trim).filter(|v| !v.is_empty()).ok_or_else(|| invalid(field, "is required"))?;
    if name.chars().any(char::is_control) {
        return Err(invalid(field, "must be one line without control characters"));
    }
    check_text(field, name, NAME_MAX)?;
    Ok(name.to_owned())
}

/// An email address: trimmed, `local@domain` with both parts present, no spaces or control
/// characters, at most [`EMAIL_MAX`] characters.
pub fn email(value: &str, field: &str) -> Result<String, ApiError> {
    let email = value.trim();
    let parts = email.split_once('@').filter(|(local, domain)| !local.is_empty() && !domain.is_empty());
    let domain_ok =
        parts.is_some_and(|(_, domain)| !domain.contains('@') && !domain.starts_with('.') && !domain.ends_with('.'));
    if !domain_ok || email.chars().any(|c| c.is_whitespace() || c.is_control()) || email.chars().count() > EMAIL_MAX {
        return Err(invalid(field, "must be an email address"));
    }
    Ok(email.to_owned())
}

/// Middleware: refuses a query string whose parameters hold NUL bytes or control characters,
/// or are longer than [`QUERY_MAX`] characters (names: [`NAME_MAX`]), before any handler reads
/// them.
pub async fn query_strings(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    for (key, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        check_text("query parameter", &key, NAME_MAX)?;
        let field = format!("query parameter {key}");
        check_text(&field, &value, QUERY_MAX).map_err(|_| {
            invalid(&field, &format!("must be at most {QUERY_MAX} characters without NUL bytes or control characters"))
        })?;
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<(), ApiError>) -> String {
        let e = result.expect_err("refused");
        assert_eq!(e.status.as_u16(), 422);
        e.message
    }

    #[test]
    fn names_the_field_holding_a_nul() {
        let body = json!({"name": "ok", "configuration": {"hostname": "a\u{0}b"}, "fields": [{"target": "x"}, {"target": "\u{7}"}]});
        assert_eq!(
            message(check_body(&body)),
            "configuration.hostname must not contain NUL bytes or control characters"
        );
        let body = json!({"fields": [{"target": "x"}, {"target": "\u{7}"}]});
        assert!(message(check_body(&body)).starts_with("fields[1].target "));
        assert!(check_body(&json!({"query": "select 1\n\tfrom t\r\n"})).is_ok(), "SQL layout is text");
        assert!(message(check_body(&json!({"query": "x".repeat(TEXT_MAX + 1)}))).contains("at most 100000"));
    }

    #[test]
    fn names_are_one_bounded_line() {
        assert_eq!(name(Some("  Acme  "), "name").expect("valid"), "Acme");
        assert!(name(Some("  "), "name").expect_err("empty").message.contains("name is required"));
        assert!(name(Some("a\nb"), "name").is_err());
        assert!(name(Some(&"é".repeat(NAME_MAX)), "name").is_ok());
        assert!(name(Some(&"é".repeat(NAME_MAX + 1)), "name").expect_err("long").message.contains("at most 255"));
    }

    #[test]
    fn emails_have_a_local_part_and_a_domain() {
        assert_eq!(email(" ops@example.com ", "email").expect("valid"), "ops@example.com");
        for bad in ["", "ops", "@example.com", "ops@", "ops@a@b", "ops@.com", "o ps@example.com", "ops@example."] {
            let e = email(bad, "subscribers[0]").expect_err(bad);
            assert_eq!(
                (e.message.as_str(), e.metadata),
                ("subscribers[0] must be an email address", json!({"field": "subscribers[0]"}))
            );
        }
        assert!(email(&format!("{}@example.com", "a".repeat(EMAIL_MAX)), "email").is_err());
    }
}
