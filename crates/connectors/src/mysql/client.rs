//! Opening connections, running statements under deadlines, and turning server errors into
//! connector errors.

use std::{net::IpAddr, time::Duration};

use futures::future::BoxFuture;
use mysql_async::{
    Conn, DriverError, IoError, Opts, OptsBuilder, SslOpts, Value as MyValue,
    prelude::{FromRow, Queryable},
};
use syncline_core::connector::{ConnectorError, Context, ErrorClass, ParameterValue, within};

use super::MysqlConfig;

/// An open connection to a customer database, in UTC and `utf8mb4`.
pub(super) struct Connection {
    pub(super) conn: Conn,
    /// Deadlines of this connection's calls.
    pub(super) ctx: Context,
    /// Whether the server is MariaDB (which names some settings differently from MySQL).
    pub(super) mariadb: bool,
    killer: Killer,
}

/// Connects with the configured credentials, over TLS when `ssl` is set. The host is resolved
/// and checked against the egress policy first and the connection goes to the checked address
/// only (never to a Unix socket the server names); resolving, connecting, authenticating and
/// setting the session up together take at most the connect deadline.
pub(super) async fn connect(ctx: &Context, cfg: &MysqlConfig) -> Result<Connection, ConnectorError> {
    let target = format!("{}:{}/{}", cfg.hostname, cfg.port, cfg.database);
    let limit = ctx.deadlines.connect;
    if cfg.ssl {
        // mysql_async builds its TLS configuration with the process's default provider.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    within(limit, &target, async {
        let addrs = ctx.egress.resolve(&cfg.hostname, cfg.port, Some(&cfg.database), limit).await?;
        let mut last = None;
        for addr in addrs {
            let opts = opts(cfg, addr.ip());
            match Conn::new(opts.clone()).await {
                Ok(mut conn) => {
                    let version: Option<String> = conn.query_first("select version()").await.map_err(|e| error(&e))?;
                    let killer = Killer { opts, id: conn.id() };
                    let mariadb = version.is_some_and(|v| v.contains("MariaDB"));
                    return Ok(Connection { conn, ctx: ctx.clone(), mariadb, killer });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => error(&e).context(format_args!("cannot connect to {target}")),
            None => ConnectorError::transient(format!("cannot connect to {target}: no address")),
        })
    })
    .await
}

/// Options for one connection to `ip` (the checked address of `cfg.hostname`, which TLS still
/// verifies the certificate against).
fn opts(cfg: &MysqlConfig, ip: IpAddr) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname(cfg.hostname.clone())
        .resolved_ips(Some(vec![ip]))
        .tcp_port(cfg.port)
        .prefer_socket(false)
        .user(Some(cfg.username.clone()))
        .pass(cfg.password.as_ref().map(|p| p.expose().to_owned()))
        .db_name(Some(cfg.database.clone()))
        .ssl_opts(cfg.ssl.then(SslOpts::default))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .init(vec!["set time_zone = '+00:00'", "set names utf8mb4"])
        .into()
}

impl Connection {
    /// Runs `work` on the connection within `limit` (see [`guarded`]).
    fn run<'a, T: 'a>(
        &'a mut self,
        limit: Duration,
        work: impl FnOnce(&'a mut Conn) -> BoxFuture<'a, Result<T, mysql_async::Error>>,
    ) -> impl Future<Output = Result<T, ConnectorError>> + 'a {
        self.ctx.metrics.count_request();
        guarded(self.killer.arm(), limit, work(&mut self.conn))
    }

    /// Runs a statement with the text protocol (for statements that cannot be prepared, such
    /// as savepoints), dropping any result.
    pub(super) async fn query_drop(&mut self, limit: Duration, sql: &str) -> Result<(), ConnectorError> {
        self.run(limit, |c| c.query_drop(sql)).await
    }

    /// Runs a prepared statement with `params` and returns its rows.
    pub(super) async fn query<T: FromRow + Send + 'static>(
        &mut self,
        limit: Duration,
        sql: &str,
        params: Vec<MyValue>,
    ) -> Result<Vec<T>, ConnectorError> {
        self.run(limit, |c| c.exec(sql, params)).await
    }

    /// The databases the user can see, but the server's own.
    pub(super) async fn databases(&mut self) -> Result<Vec<ParameterValue>, ConnectorError> {
        let sql = "select schema_name from information_schema.schemata
                   where schema_name not in ('information_schema', 'mysql', 'performance_schema', 'sys')
                   order by 1";
        let names: Vec<String> = self.query(self.ctx.deadlines.query, sql, vec![]).await?;
        Ok(names.into_iter().map(ParameterValue::named).collect())
    }

    /// The result columns of a query, from the server's description of the prepared statement.
    pub(super) async fn columns(&mut self, sql: &str) -> Result<Vec<mysql_async::Column>, ConnectorError> {
        let statement = self.run(self.ctx.deadlines.query, |c| c.prep(sql)).await?;
        Ok(statement.columns().to_vec())
    }

    /// Starts a read-only transaction whose statements stop after `limit` on the server too
    /// (none: no limit), for running users' model queries (they may read, never write).
    pub(super) async fn read_only(&mut self, limit: Option<Duration>) -> Result<(), ConnectorError> {
        let timeout = match self.mariadb {
            true => format!("set session max_statement_time = {}", limit.map_or(0.0, |l| l.as_secs_f64())),
            false => format!("set session max_execution_time = {}", limit.map_or(0, |l| l.as_millis())),
        };
        let query = self.ctx.deadlines.query;
        self.query_drop(query, &timeout).await?;
        self.query_drop(query, "start transaction read only").await
    }

    /// A guard that kills this connection's running statement when dropped, unless disarmed.
    pub(super) fn kill_on_drop(&self) -> KillOnDrop {
        self.killer.arm()
    }
}

/// Runs `work` within `limit`. If it does not finish in time, or the caller stops waiting (a
/// cancel drops it), `guard` asks the server to kill the statement, so no work goes on there
/// after Syncline stopped waiting for it.
pub(super) async fn guarded<T>(
    guard: KillOnDrop,
    limit: Duration,
    work: impl Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, ConnectorError> {
    let done = tokio::time::timeout(limit, work).await;
    let Ok(result) = done else { return Err(ConnectorError::timed_out("the database", limit)) };
    guard.disarm();
    result.map_err(|e| error(&e))
}

/// What it takes to kill a connection's statement: a second connection to the same checked
/// address, as the same user.
#[derive(Clone)]
struct Killer {
    opts: Opts,
    id: u32,
}

impl Killer {
    fn arm(&self) -> KillOnDrop {
        KillOnDrop(Some(self.clone()))
    }
}

/// Kills the connection's running statement when dropped, unless disarmed.
pub(super) struct KillOnDrop(Option<Killer>);

impl KillOnDrop {
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Some(Killer { opts, id }) = self.0.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let kill = async {
                    let mut conn = Conn::new(opts).await?;
                    conn.query_drop(format!("kill query {id}")).await?;
                    conn.disconnect().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(10), kill).await;
            });
        }
    }
}

/// The server's own message.
pub(super) fn message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(server) => server.message.clone(),
        other => other.to_string(),
    }
}

/// Server error codes with a class of their own; the rest are classed by SQLSTATE.
const CLASSES: &[(&[u16], ErrorClass)] = &[
    // Access denied: to the server, a database, a table, a column, for lack of a privilege.
    (&[1044, 1045, 1130, 1142, 1143, 1227, 1370, 1698], ErrorClass::Auth),
    // Unknown database, unknown table.
    (&[1049, 1051, 1109, 1146], ErrorClass::NotFound),
    // Too many connections, shutdown, lock wait timeout, deadlock, interrupted or killed, a
    // statement over its time limit (MariaDB 1969, MySQL 3024), lost connections.
    (&[1040, 1053, 1205, 1213, 1317, 1927, 1969, 2006, 2013, 3024], ErrorClass::Transient),
    // A write in a read-only transaction: the model is not a query.
    (&[1792], ErrorClass::Config),
];

/// The class of a server error: refused credentials are auth errors, a missing table or
/// database is not found, a bad statement is a configuration error, bad data is permanent;
/// lost connections, timeouts, deadlocks and a server short of connections are transient.
pub(super) fn class(code: u16, state: &str) -> ErrorClass {
    if let Some((_, class)) = CLASSES.iter().find(|(codes, _)| codes.contains(&code)) {
        return *class;
    }
    match &state[..state.len().min(2)] {
        "08" => ErrorClass::Transient,
        "40" => ErrorClass::Transient,
        "42" => ErrorClass::Config,
        _ => ErrorClass::Permanent,
    }
}

/// Whether the error was caused by the data (a value too long, out of range, NULL where it
/// cannot be, a duplicate key), not by the statement or the connection.
pub(super) fn is_data_error(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Server(s) => {
            s.state.starts_with("22")
                || s.state.starts_with("23")
                || matches!(s.code, 1265 | 1292 | 1366 | 1367 | 1411 | 1690 | 3140 | 4025)
        }
        _ => false,
    }
}

/// A connector error for a failed statement or connection (see [`class`]). Errors below the
/// server (the network, the protocol) are transient, except refused TLS or authentication
/// methods, which need a configuration change.
pub(super) fn error(e: &mysql_async::Error) -> ConnectorError {
    let class = match e {
        mysql_async::Error::Server(s) => class(s.code, &s.state),
        mysql_async::Error::Driver(
            DriverError::UnknownAuthPlugin { .. }
            | DriverError::CleartextPluginDisabled
            | DriverError::MysqlOldPasswordDisabled,
        ) => ErrorClass::Auth,
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)
        | mysql_async::Error::Io(IoError::Tls(_))
        | mysql_async::Error::Url(_) => ErrorClass::Config,
        _ => ErrorClass::Transient,
    };
    let message = match e {
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => "the server does not offer TLS".into(),
        other => message(other),
    };
    ConnectorError::new(class, message).caused_by(std::io::Error::other(e.to_string()))
}

/// Quotes an identifier for SQL.
pub(super) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Splits `database.table` (defaulting the database to `default`).
pub(super) fn split_object<'a>(object: &'a str, default: &'a str) -> (&'a str, &'a str) {
    object.split_once('.').unwrap_or((default, object))
}

/// `database.table`, quoted.
pub(super) fn quote_object(object: &str, default: &str) -> String {
    let (database, table) = split_object(object, default);
    format!("{}.{}", quote_ident(database), quote_ident(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, state: &str) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: format!("error {code}"),
            state: state.into(),
        })
    }

    #[test]
    fn classes_server_errors() {
        let cases = [
            (1045, "28000", ErrorClass::Auth),
            (1044, "42000", ErrorClass::Auth),
            (1142, "42000", ErrorClass::Auth),
            (1049, "42000", ErrorClass::NotFound),
            (1146, "42S02", ErrorClass::NotFound),
            (1064, "42000", ErrorClass::Config),
            (1054, "42S22", ErrorClass::Config),
            (1205, "HY000", ErrorClass::Transient),
            (1213, "40001", ErrorClass::Transient),
            (1969, "70100", ErrorClass::Transient),
            (2013, "HY000", ErrorClass::Transient),
            (1406, "22001", ErrorClass::Permanent),
            (1048, "23000", ErrorClass::Permanent),
            (1264, "22003", ErrorClass::Permanent),
            (1792, "25006", ErrorClass::Config),
        ];
        for (code, state, expected) in cases {
            let e = error(&server(code, state));
            assert_eq!(e.class, expected, "{code} {state}");
            assert_eq!(e.message, format!("error {code}"));
        }
    }

    #[test]
    fn data_errors_are_the_records_fault() {
        assert!(is_data_error(&server(1406, "22001")));
        assert!(is_data_error(&server(1048, "23000")));
        assert!(is_data_error(&server(1366, "HY000")));
        assert!(!is_data_error(&server(1213, "40001")));
        assert!(!is_data_error(&server(1054, "42S22")));
        let lost = mysql_async::Error::Driver(DriverError::ConnectionClosed);
        assert!(!is_data_error(&lost));
        assert_eq!(error(&lost).class, ErrorClass::Transient);
        assert_eq!(
            error(&mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)).class,
            ErrorClass::Config
        );
    }

    #[test]
    fn quotes_and_splits_names() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_object("shop.orders", "x"), "`shop`.`orders`");
        assert_eq!(quote_object("orders", "shop"), "`shop`.`orders`");
    }
}
