//! The control plane: the Polytomic-compatible REST API and the scheduler.

pub mod access;
pub mod audit;
pub mod auth;
pub mod domain;
pub mod error;
pub mod extract;
pub mod http_front;
pub mod idempotency;
pub mod ingest;
pub mod input;
pub mod launch;
pub mod limits;
pub mod route_table;
pub mod routes;
pub mod scheduler;
pub mod session;
pub mod signin;
pub mod status;
pub mod store;

use std::net::TcpListener;

use actix_web::{
    App,
    dev::{Server, Service},
    http::header,
    middleware, web,
};
use syncline_core::{
    Settings, connector::Context, crypto::SecretBox, db::DbPool, payload::PayloadStore, queue::Queues,
};
use tracing::Instrument;

use crate::error::ApiError;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub settings: Settings,
    pub pool: DbPool,
    /// Where connections may go and how long calls to customer systems may take.
    pub connector: Context,
    pub queues: Queues,
    pub redis: apalis_redis::ConnectionManager,
    pub secrets: SecretBox,
    pub store: PayloadStore,
    /// Where record logs go (`EXECUTION_LOG_BUCKET`, else the payload store).
    pub record_logs: PayloadStore,
    pub limiter: limits::AuthLimiter,
    /// Where accepted events are committed.
    pub events: syncline_core::events::store::EventWriter,
    /// The sources of write keys looked up lately.
    pub write_keys: ingest::WriteKeys,
}

/// Largest request body accepted (connection configurations, models and syncs are small).
const MAX_BODY: usize = 1 << 20;

/// Builds the HTTP server on `listener`; it drains in-flight requests for up to 30 s on stop.
pub fn server(state: AppState, listener: TcpListener) -> std::io::Result<Server> {
    let provider = web::Data::new(signin::Provider::new(&state.settings).map_err(std::io::Error::other)?);
    let data = web::Data::new(state);
    http_front::serve(listener, move || {
        App::new()
            .app_data(data.clone())
            .app_data(provider.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::bad_request(e.to_string()).into()))
            .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::bad_request(e.to_string()).into()))
            .wrap(middleware::from_fn(http_front::body_timeout::middleware))
            .wrap(middleware::from_fn(audit::middleware))
            .wrap(middleware::from_fn(input::query_strings))
            .wrap(middleware::DefaultHeaders::new().add(("X-Polytomic-Version", "2025-09-18")))
            .wrap(cors(&data.settings.valid_origins))
            .wrap(middleware::from_fn(http_front::client_gone::middleware))
            // Paths only: query strings can carry sign-in codes.
            .wrap(
                middleware::Logger::new("%{method}xi %U %s %Dms")
                    .custom_request_replace("method", |req| req.method().to_string())
                    .exclude("/status.txt"),
            )
            .wrap_fn(|req, service| {
                let span = tracing::info_span!("request", method = %req.method(), route = %req.path());
                let headers =
                    req.headers().iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
                syncline_core::telemetry::continue_trace(&span, headers);
                service.call(req).instrument(span)
            })
            // Outermost, so that errors of every other layer (CORS refusals) are JSON too.
            .wrap(middleware::from_fn(error::json_errors))
            .service(status::status)
            .configure(routes::configure)
            .configure(ingest::configure)
            .configure(signin::configure)
            .default_service(web::to(route_table::no_route))
    })
}

/// Browsers may call the API from `VALID_ORIGINS` and `POLYTOMIC_URL` only, with credentials.
fn cors(origins: &[String]) -> actix_cors::Cors {
    let cors = origins.iter().fold(actix_cors::Cors::default(), |cors, origin| cors.allowed_origin(origin));
    cors.allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .allowed_header(session::CSRF_HEADER)
        .allowed_header("Idempotency-Key")
        .allowed_header("X-Polytomic-Version")
        .supports_credentials()
        .max_age(3600)
}
