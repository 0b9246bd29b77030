//! Connector implementations and the registry the api and the worker share.
//!
//! The registry lists the production connectors. The in-memory reference connector
//! ([`memory`]) joins them only in a process that called [`enable_reference_connectors`]
//! (`syncline serve` does when `REFERENCE_CONNECTORS=true`): it is a test and documentation
//! tool, so production installs never offer it. The flag picks one of two fixed lists, so it
//! may be set at any time; `serve` sets it before any role starts.

use std::sync::{
    Arc, LazyLock,
    atomic::{AtomicBool, Ordering},
};

use syncline_core::connector::{DynConnector, register};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod files;
pub mod memory;
#[cfg(feature = "conformance")]
pub mod moto;
pub mod mysql;
pub mod postgres;
mod predicate;
mod sql;

static PRODUCTION: LazyLock<Vec<Arc<dyn DynConnector>>> =
    LazyLock::new(|| vec![register(postgres::Postgres), register(mysql::Mysql), register(files::Files)]);

static WITH_REFERENCE: LazyLock<Vec<Arc<dyn DynConnector>>> =
    LazyLock::new(|| PRODUCTION.iter().cloned().chain([register(memory::Memory)]).collect());

static REFERENCE: AtomicBool = AtomicBool::new(false);

/// Offers the reference connectors (`memory`) from now on, in this process.
pub fn enable_reference_connectors() {
    REFERENCE.store(true, Ordering::Relaxed);
}

/// Every connection type this process supports.
pub fn all() -> &'static [Arc<dyn DynConnector>] {
    match REFERENCE.load(Ordering::Relaxed) {
        true => &WITH_REFERENCE,
        false => &PRODUCTION,
    }
}

/// The connection type with id `id`.
pub fn get(id: &str) -> Option<&'static Arc<dyn DynConnector>> {
    all().iter().find(|c| c.spec().id == id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reference_connector_is_offered_only_when_enabled() {
        assert!(super::PRODUCTION.iter().all(|c| c.spec().id != "memory"));
        assert!(super::WITH_REFERENCE.iter().any(|c| c.spec().id == "memory"));
    }
}
