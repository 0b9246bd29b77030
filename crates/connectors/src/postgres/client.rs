//! Opening connections, running statements under deadlines, and turning database errors into
//! connector errors.

use std::{sync::Arc, time::Duration};

use syncline_core::connector::{ConnectorError, Context, ErrorClass, ParameterValue, within};
use tokio_postgres::{CancelToken, Client, Config, NoTls, error::SqlState};

use super::PostgresConfig;

/// An open connection to a customer database.
pub(super) struct Connection {
    pub(super) client: Client,
    /// Deadlines of this connection's calls.
    pub(super) ctx: Context,
}

/// Connects with the configured credentials, over TLS when `ssl` is set. The host is resolved
/// and checked against the egress policy first and the connection goes to the checked address
/// only; resolving, connecting and authenticating together take at most the connect deadline.
pub(super) async fn connect(ctx: &Context, cfg: &PostgresConfig) -> Result<Connection, ConnectorError> {
    let target = format!("{}:{}/{}", cfg.hostname, cfg.port, cfg.database);
    let limit = ctx.deadlines.connect;
    let tls = match cfg.ssl {
        true => Some(tls()?),
        false => None,
    };
    let client = within(limit, &target, async {
        let addrs = ctx.egress.resolve(&cfg.hostname, cfg.port, Some(&cfg.database), limit).await?;
        let mut last = None;
        for addr in addrs {
            match open(cfg, addr.ip(), tls.clone()).await {
                Ok(client) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => error(&e).context(format_args!("cannot connect to {target}")),
            None => ConnectorError::transient(format!("cannot connect to {target}: no address")),
        })
    })
    .await?;
    Ok(Connection { client, ctx: ctx.clone() })
}

/// The connection a connector's last short call left idle, kept for its next one: a run's
/// catalog lookups and table changes share a connection rather than opening one each.
#[derive(Default)]
pub(super) struct Spare(std::sync::Mutex<Option<Connection>>);

impl Spare {
    /// The spare connection while it is open, else a new one.
    pub(super) async fn take(&self, ctx: &Context, cfg: &PostgresConfig) -> Result<Connection, ConnectorError> {
        let spare = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match spare {
            Some(conn) if !conn.client.is_closed() => Ok(conn),
            _ => connect(ctx, cfg).await,
        }
    }

    /// Keeps `conn` for the next short call: only a connection left outside any transaction,
    /// after calls that succeeded.
    pub(super) fn keep(&self, conn: Connection) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
    }
}

type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// TLS verified against the web's root certificates.
fn tls() -> Result<Tls, ConnectorError> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectorError::config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Tls::new(config))
}

/// Opens one connection to `ip` (the checked address of `cfg.hostname`, which TLS still
/// verifies the certificate against).
async fn open(cfg: &PostgresConfig, ip: std::net::IpAddr, tls: Option<Tls>) -> Result<Client, tokio_postgres::Error> {
    let mut pg = Config::new();
    pg.host(&cfg.hostname).hostaddr(ip).port(cfg.port).dbname(&cfg.database).user(&cfg.username);
    pg.application_name("syncline").keepalives(true).keepalives_idle(Duration::from_secs(30));
    if let Some(password) = &cfg.password {
        pg.password(password.expose());
    }
    let Some(tls) = tls else {
        let (client, connection) = pg.connect(NoTls).await?;
        tokio::spawn(connection);
        return Ok(client);
    };
    let (client, connection) = pg.connect(tls).await?;
    tokio::spawn(connection);
    Ok(client)
}

impl Connection {
    /// Runs `work` on this connection within `limit`. If it does not finish in time, or the
    /// caller stops waiting (a cancel drops it), the server is asked to cancel the statement,
    /// so no work goes on there after Syncline stopped waiting for it.
    pub(super) async fn run<T>(
        &self,
        limit: Duration,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, ConnectorError> {
        self.guard(limit, async { work.await.map_err(|e| error(&e)) }).await
    }

    /// [`Connection::run`] for work that already speaks in connector errors.
    pub(super) async fn guard<T>(
        &self,
        limit: Duration,
        work: impl Future<Output = Result<T, ConnectorError>>,
    ) -> Result<T, ConnectorError> {
        self.ctx.metrics.count_request();
        let guard = CancelOnDrop::new(&self.client);
        let done = tokio::time::timeout(limit, work).await;
        let Ok(result) = done else { return Err(ConnectorError::timed_out("the database", limit)) };
        // It finished (well or not): nothing is left to cancel.
        guard.disarm();
        result
    }

    /// [`Connection::run`] with the deadline of a short call: tests, samples, previews and
    /// catalog lookups.
    pub(super) async fn interactive<T>(
        &self,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, ConnectorError> {
        self.run(self.ctx.deadlines.query, work).await
    }

    /// The text values `sql`'s first column holds (names of databases, schemas), as a short call.
    pub(super) async fn names(&self, sql: &str) -> Result<Vec<ParameterValue>, ConnectorError> {
        let rows = self.interactive(self.client.query(sql, &[])).await?;
        rows.iter().map(|r| r.try_get(0).map(ParameterValue::named).map_err(|e| error(&e))).collect()
    }

    /// Opens a read-only transaction whose statements stop after `limit` on the server too, for
    /// running users' model queries (they may read, never write).
    pub(super) async fn read_only(&self, limit: Option<Duration>) -> Result<(), ConnectorError> {
        let timeout = limit.map_or(String::new(), |l| format!("; set local statement_timeout = {}", l.as_millis()));
        self.interactive(self.client.batch_execute(&format!("start transaction read only{timeout}"))).await
    }

    /// Opens a read-only transaction that sees what snapshot `id` (exported by another
    /// connection, see [`Self::export_snapshot`]) saw.
    pub(super) async fn read_only_at(&self, id: &str) -> Result<(), ConnectorError> {
        let sql = format!(
            "start transaction isolation level repeatable read read only; set transaction snapshot '{}'",
            id.replace('\'', "''")
        );
        self.interactive(self.client.batch_execute(&sql)).await.map_err(|e| {
            ConnectorError::permanent(format!(
                "the source snapshot {id} this read shares is gone (the run that held it ended): {}",
                e.message
            ))
        })
    }

    /// Opens a read-only transaction and exports its snapshot for other connections to share
    /// while this one stays open.
    pub(super) async fn export_snapshot(&self) -> Result<String, ConnectorError> {
        self.interactive(self.client.batch_execute("start transaction isolation level repeatable read read only"))
            .await?;
        let row = self.interactive(self.client.query_one("select pg_export_snapshot()", &[])).await?;
        row.try_get(0).map_err(|e| error(&e))
    }
}

/// Asks the server to cancel the running statement when dropped, unless disarmed.
pub(super) struct CancelOnDrop(Option<CancelToken>);

impl CancelOnDrop {
    pub(super) fn new(client: &Client) -> Self {
        Self(Some(client.cancel_token()))
    }

    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(token) = self.0.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // The token goes to the address the connection was opened to (already checked).
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), token.cancel_query(NoTls)).await;
            });
        }
    }
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

/// A connector error for a failed statement or connection, classed by its SQLSTATE: refused
/// credentials are auth errors, a missing database is not found, a bad statement (a missing
/// table too) is a configuration error, bad data is permanent; lost connections, timeouts, deadlocks and a
/// server short of resources are transient.
pub(super) fn error(e: &tokio_postgres::Error) -> ConnectorError {
    let Some(code) = e.code() else {
        return ConnectorError::transient(message(e)).caused_by(clone(e));
    };
    let class = match (code, &code.code()[..2]) {
        // A model naming a missing table is a wrong query (class 42, like a syntax error).
        (_, "42") => ErrorClass::Config,
        (c, _) if *c == SqlState::INVALID_CATALOG_NAME => ErrorClass::NotFound,
        (_, "28") => ErrorClass::Auth,
        (_, "08" | "40" | "53" | "57") => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    };
    ConnectorError::new(class, message(e)).caused_by(clone(e))
}

/// The error as an owned cause (tokio-postgres errors cannot be cloned).
fn clone(e: &tokio_postgres::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Quotes an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal (with `standard_conforming_strings`, on since PostgreSQL 9.1).
pub(super) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Splits `schema.table` (defaulting the schema to `public`) and quotes both parts.
pub(super) fn split_object(object: &str) -> (String, String) {
    match object.split_once('.') {
        Some((schema, table)) => (schema.to_owned(), table.to_owned()),
        None => ("public".to_owned(), object.to_owned()),
    }
}
