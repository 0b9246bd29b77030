//! Opening connections and turning database errors into connector errors.

use std::sync::Arc;

use syncline_core::connector::ConnectorError;
use tokio_postgres::{Client, Config, NoTls, error::SqlState};

use super::PostgresConfig;

/// Connects with the configured credentials, over TLS when `ssl` is set.
pub(super) async fn connect(cfg: &PostgresConfig) -> Result<Client, ConnectorError> {
    let mut pg = Config::new();
    pg.host(&cfg.hostname).port(cfg.port).dbname(&cfg.database).user(&cfg.username);
    pg.application_name("syncline").connect_timeout(std::time::Duration::from_secs(10));
    if let Some(password) = &cfg.password {
        pg.password(password);
    }
    let target = format!("{}:{}/{}", cfg.hostname, cfg.port, cfg.database);
    let unreachable =
        |e: tokio_postgres::Error| ConnectorError::unavailable(format!("cannot connect to {target}: {}", message(&e)));
    let client = if cfg.ssl {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectorError::invalid(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (client, connection) =
            pg.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls)).await.map_err(unreachable)?;
        tokio::spawn(connection);
        client
    } else {
        let (client, connection) = pg.connect(NoTls).await.map_err(unreachable)?;
        tokio::spawn(connection);
        client
    };
    Ok(client)
}

/// The database's own message, with its detail when it has one.
pub(super) fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    }
}

/// Whether the error was caused by the data or the statement, not by the connection.
pub(super) fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let class = &c.code()[..2];
        // 22: data exception, 23: integrity constraint violation, 42: syntax or access rule.
        matches!(class, "22" | "23" | "42") || *c == SqlState::DATATYPE_MISMATCH
    })
}

/// A connector error for a failed statement: user-caused errors are permanent.
pub(super) fn error(e: &tokio_postgres::Error) -> ConnectorError {
    if e.as_db_error().is_some() && is_data_error(e) {
        ConnectorError::invalid(message(e))
    } else if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
        ConnectorError::not_found(message(e))
    } else {
        ConnectorError::unavailable(message(e))
    }
}

/// Quotes an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Splits `schema.table` (defaulting the schema to `public`) and quotes both parts.
pub(super) fn split_object(object: &str) -> (String, String) {
    match object.split_once('.') {
        Some((schema, table)) => (schema.to_owned(), table.to_owned()),
        None => ("public".to_owned(), object.to_owned()),
    }
}
