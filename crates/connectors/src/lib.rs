//! Connector implementations and the registry the api and the worker share.

use std::sync::{Arc, LazyLock};

use syncline_core::connector::{DynConnector, register};

pub mod mysql;
pub mod postgres;
mod sql;

static REGISTRY: LazyLock<Vec<Arc<dyn DynConnector>>> =
    LazyLock::new(|| vec![register(postgres::Postgres), register(mysql::Mysql)]);

/// Every connection type this build supports.
pub fn all() -> &'static [Arc<dyn DynConnector>] {
    &REGISTRY
}

/// The connection type with id `id`.
pub fn get(id: &str) -> Option<&'static Arc<dyn DynConnector>> {
    REGISTRY.iter().find(|c| c.spec().id == id)
}
