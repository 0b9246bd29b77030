//! Logging setup. Nothing is exported off the machine: logs go to stdout only.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogLevel;

/// Installs the global subscriber: `LOG_LEVEL` for Syncline's crates, `RUST_LOG` overriding it,
/// JSON lines when `LOG_FORMAT=json` (for log shippers), human-readable text otherwise.
pub fn init(level: LogLevel) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,syncline={0},syncline_core={0},syncline_api={0},syncline_worker={0},syncline_connectors={0}",
            level.directive()
        ))
    });
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json");
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry.with(fmt::layer().json().with_current_span(false)).try_init()
    } else {
        registry.with(fmt::layer().with_target(false)).try_init()
    };
    // A second initialisation (tests, embedded use) keeps the first subscriber.
    drop(result);
}
