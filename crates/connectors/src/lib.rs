//! Connector implementations and the registry the api and the worker share.

use std::sync::{Arc, LazyLock};

use syncline_core::connector::Connector;

pub mod postgres;

static REGISTRY: LazyLock<Vec<Arc<dyn Connector>>> = LazyLock::new(|| vec![Arc::new(postgres::Postgres::new())]);

/// Every connection type this build supports.
pub fn all() -> &'static [Arc<dyn Connector>] {
    &REGISTRY
}

/// The connection type with id `id`.
pub fn get(id: &str) -> Option<&'static Arc<dyn Connector>> {
    REGISTRY.iter().find(|c| c.spec().id == id)
}
