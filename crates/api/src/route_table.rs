//! The answer to a request no route took: 405 with `Allow` when routes exist for its path with
//! other methods, 404 otherwise. Actix puts a route's method guard on its resource, so a wrong
//! method on a known path reaches the default service like an unknown path; the routes' methods
//! come from the table `build.rs` generates from the route attributes.

use std::sync::LazyLock;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    dev::ResourceDef,
    http::{StatusCode, header},
};

use crate::error::ApiError;

/// Every declared route: method and full path pattern.
const ROUTES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/routes.rs"));

static PATTERNS: LazyLock<Vec<(&str, ResourceDef)>> =
    LazyLock::new(|| ROUTES.iter().map(|(method, path)| (*method, ResourceDef::new(*path))).collect());

/// The methods routes accept on `path`, sorted, without repeats.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let mut methods: Vec<&str> =
        PATTERNS.iter().filter(|(_, pattern)| pattern.is_match(path)).map(|(method, _)| *method).collect();
    methods.sort_unstable();
    methods.dedup();
    methods
}

/// The app's default service.
pub async fn no_route(req: HttpRequest) -> HttpResponse {
    let allowed = allowed_methods(req.path());
    if allowed.is_empty() {
        return ApiError::not_found(&format!("route {} {}", req.method(), req.path())).error_response();
    }
    let allow = allowed.join(", ");
    let message = format!("{} is not allowed on {} (allowed: {allow})", req.method(), req.path());
    let mut response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message).error_response();
    let value = header::HeaderValue::from_str(&allow).expect("method names are header-safe");
    response.headers_mut().insert(header::ALLOW, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_list_their_methods() {
        assert_eq!(allowed_methods("/api/connections"), ["GET", "POST"]);
        assert_eq!(allowed_methods("/api/connections/abc"), ["DELETE", "GET", "PUT"]);
        assert_eq!(allowed_methods("/status.txt"), ["GET"]);
        assert_eq!(allowed_methods("/auth/logout"), ["POST"]);
        // `/syncs/schedules` is also matched by `/syncs/{id}`, as actix's router would.
        assert_eq!(allowed_methods("/api/syncs/schedules"), ["DELETE", "GET", "PUT"]);
    }

    #[test]
    fn unknown_paths_allow_nothing() {
        assert!(allowed_methods("/api/nothing").is_empty());
        assert!(allowed_methods("/api/connections/abc/def").is_empty());
        assert!(allowed_methods("/connections").is_empty());
    }
}
