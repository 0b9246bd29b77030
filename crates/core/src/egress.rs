//! Where connections may go. Every connection attempt to a customer system resolves its host
//! here first and connects only to the addresses this policy let through, so a DNS answer that
//! changes between the check and the connect (rebinding) cannot slip past.
//!
//! The rules, in order:
//! 1. Unix-socket paths are refused: customer systems are reached over the network.
//! 2. Syncline's own state database is refused: the server named by `DATABASE_URL` (its
//!    resolved addresses, or any address of this host when it is local) with that port and
//!    database name, whatever host name or alias the connection uses.
//! 3. Networks and hosts in `CONNECTION_DENIED_NETWORKS` are refused.
//! 4. When `CONNECTION_ALLOWED_NETWORKS` is set, only its networks and hosts are reached.
//! 5. Otherwise link-local and cloud metadata addresses, and multicast and broadcast
//!    addresses, are refused; everything else is reached.
//!
//! Directories of the worker's own file system (`file://` URLs) are no network place: a
//! connection writes only below `LOCAL_FILES_ROOT`, and nowhere when it is unset, so no
//! tenant reaches Syncline's files or anything else on its hosts.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    path::{Component, Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use ipnet::IpNet;

/// One entry of an allow or deny list: a network (`10.0.0.0/8`, an address) or a host name
/// (`db.example.com`, or `*.example.com` for every name below it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Network(IpNet),
    Host(String),
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        if let Ok(net) = raw.parse::<IpNet>() {
            return Ok(Self::Network(net));
        }
        if let Ok(ip) = raw.parse::<IpAddr>() {
            return Ok(Self::Network(IpNet::from(ip)));
        }
        let name = raw.strip_prefix("*.").unwrap_or(raw);
        let valid = !name.is_empty()
            && name.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        match valid {
            true => Ok(Self::Host(raw.to_ascii_lowercase())),
            false => Err(format!("{raw:?} is neither a network (10.0.0.0/8), an address nor a host name")),
        }
    }
}

impl Rule {
    fn matches(&self, host: &str, ip: IpAddr) -> bool {
        match self {
            Self::Network(net) => net.contains(&ip),
            Self::Host(pattern) => {
                let host = host.to_ascii_lowercase();
                match pattern.strip_prefix("*.") {
                    Some(domain) => host.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.')),
                    None => host == *pattern,
                }
            }
        }
    }
}

/// Addresses no connection reaches unless an operator allows them: link-local (which holds the
/// AWS, GCP and Azure metadata service at 169.254.169.254) and the other clouds' metadata hosts.
const METADATA: &[&str] = &["169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128"];

/// Syncline's state database as a connection would name it.
#[derive(Debug, Clone)]
struct StateDatabase {
    /// Host from `DATABASE_URL`; `None` for a Unix socket (the server is on this host).
    host: Option<String>,
    port: u16,
    database: String,
}

impl StateDatabase {
    /// Reads host, port and database name from a `postgres://` URL (as libpq does: the `host`
    /// query parameter wins, the database defaults to the user name).
    fn parse(url: &str) -> Option<Self> {
        let url = url::Url::parse(url).ok()?;
        let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let host = param("host").or_else(|| url.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()));
        let host = host.filter(|h| !h.is_empty() && !h.starts_with('/'));
        let port = param("port").and_then(|p| p.parse().ok()).or(url.port()).unwrap_or(5432);
        let path = url.path().trim_start_matches('/');
        let database = param("dbname").or_else(|| (!path.is_empty()).then(|| path.to_owned()));
        let user = if url.username().is_empty() { "postgres" } else { url.username() };
        let database = database.unwrap_or_else(|| user.to_owned());
        Some(Self { host, port, database })
    }
}

/// Why a connection may not go where it asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EgressError {
    #[error("{0}")]
    Refused(String),
    #[error("cannot resolve {host}: {reason}")]
    Unresolved { host: String, reason: String },
}

/// The egress policy of this deployment.
#[derive(Debug, Clone)]
pub struct Egress {
    state: Option<StateDatabase>,
    allowed: Vec<Rule>,
    denied: Vec<Rule>,
    defaults: Vec<Rule>,
    /// The directory `file://` connections may use, when the operator set one.
    local_files: Option<PathBuf>,
}

impl Egress {
    /// The policy for a deployment whose state database is at `database_url`.
    pub fn new(database_url: &str, allowed: Vec<Rule>, denied: Vec<Rule>) -> Self {
        let defaults = METADATA.iter().filter_map(|n| n.parse().ok()).collect();
        Self { state: StateDatabase::parse(database_url), allowed, denied, defaults, local_files: None }
    }

    /// The policy with `root` as the directory below which `file://` connections may write.
    pub fn with_local_files(self, root: Option<PathBuf>) -> Self {
        Self { local_files: root, ..self }
    }

    /// Whether a connection may use `directory` of this host's file system: an absolute path,
    /// without `..`, below the `LOCAL_FILES_ROOT` the operator set.
    pub fn local_directory(&self, directory: &Path) -> Result<(), EgressError> {
        let refused = |why: String| Err(EgressError::Refused(format!("{}: {why}", directory.display())));
        let Some(root) = &self.local_files else {
            return refused(
                "local directories are off on this deployment (the operator allows one with LOCAL_FILES_ROOT)".into(),
            );
        };
        if !directory.is_absolute() || directory.components().any(|c| matches!(c, Component::ParentDir)) {
            return refused("a local directory is an absolute path without ..".into());
        }
        match directory.starts_with(root) {
            true => Ok(()),
            false => refused(format!("local directories are below {} (LOCAL_FILES_ROOT)", root.display())),
        }
    }

    /// Resolves `host` and returns the addresses a connection to `database` on `port` may use,
    /// or why it may not go there. `database` is `None` for systems that are not PostgreSQL.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        database: Option<&str>,
        limit: Duration,
    ) -> Result<Vec<SocketAddr>, EgressError> {
        if host.starts_with('/') || host.starts_with('@') {
            return Err(EgressError::Refused(format!(
                "{host} is a Unix socket; connections reach their systems over the network"
            )));
        }
        let bare = host.trim_matches(['[', ']']);
        let unresolved = |reason: String| EgressError::Unresolved { host: host.to_owned(), reason };
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(limit, tokio::net::lookup_host((bare, port)))
                .await
                .map_err(|_| unresolved(format!("no answer within {} s", limit.as_secs())))?
                .map_err(|e| unresolved(e.to_string()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(unresolved("no addresses".into()));
        }
        // The state server's addresses, and whether it is this host (then any local address is it).
        let state = match (&self.state, database) {
            (Some(state), Some(db)) if state.port == port && state.database == db => {
                let addrs = state.addresses(limit).await;
                let local = addrs.is_empty() || addrs.iter().any(is_local);
                Some((addrs, local))
            }
            _ => None,
        };
        for addr in &addrs {
            let ip = canonical(addr.ip());
            if let Some((state, local)) = &state
                && (state.contains(&ip) || *local && is_local(&ip))
            {
                return Err(EgressError::Refused(format!(
                    "{host}:{port} is Syncline's own state database; connections cannot reach it"
                )));
            }
            self.check(host, ip).map_err(|why| EgressError::Refused(format!("{host} ({ip}) {why}")))?;
        }
        Ok(addrs)
    }

    /// Rules 3 to 5 for one address.
    fn check(&self, host: &str, ip: IpAddr) -> Result<(), &'static str> {
        if self.denied.iter().any(|r| r.matches(host, ip)) {
            return Err("is in CONNECTION_DENIED_NETWORKS");
        }
        if !self.allowed.is_empty() {
            return match self.allowed.iter().any(|r| r.matches(host, ip)) {
                true => Ok(()),
                false => Err("is not in CONNECTION_ALLOWED_NETWORKS"),
            };
        }
        if self.defaults.iter().any(|r| r.matches(host, ip)) {
            return Err("is a link-local or cloud metadata address, which connections cannot reach");
        }
        if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
            return Err("is a multicast or broadcast address");
        }
        Ok(())
    }
}

impl StateDatabase {
    /// The state server's addresses (empty when it is reached through a Unix socket, which
    /// means this host).
    async fn addresses(&self, limit: Duration) -> Vec<IpAddr> {
        let Some(host) = &self.host else { return Vec::new() };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![canonical(ip)];
        }
        match tokio::time::timeout(limit, tokio::net::lookup_host((host.as_str(), self.port))).await {
            Ok(Ok(addrs)) => addrs.map(|a| canonical(a.ip())).collect(),
            // Unresolvable now: assume the worst, that it is this host.
            _ => Vec::new(),
        }
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` reaches this host: loopback, the unspecified address, or one of its interfaces
/// (an address a socket can bind to).
fn is_local(ip: &IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || *ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
        || UdpSocket::bind(SocketAddr::new(*ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    fn policy(allowed: &[&str], denied: &[&str]) -> Egress {
        let rules = |list: &[&str]| list.iter().map(|r| r.parse().expect("rule")).collect();
        Egress::new("postgres://syncline@127.0.0.1:5432/syncline_state", rules(allowed), rules(denied))
    }

    #[test]
    fn local_directories_are_only_those_below_the_root_the_operator_set() {
        let off = policy(&[], &[]);
        let message = off.local_directory(Path::new("/tmp/lake")).expect_err("off").to_string();
        assert!(message.contains("LOCAL_FILES_ROOT"), "{message}");
        let on = policy(&[], &[]).with_local_files(Some(PathBuf::from("/srv/lake")));
        assert!(on.local_directory(Path::new("/srv/lake")).is_ok());
        assert!(on.local_directory(Path::new("/srv/lake/team/a")).is_ok());
        for outside in ["/srv/lakehouse", "/etc", "/srv/lake/../payloads", "srv/lake/x", "/"] {
            assert!(on.local_directory(Path::new(outside)).is_err(), "{outside} is outside");
        }
    }

    async fn refused(egress: &Egress, host: &str, port: u16, db: Option<&str>) -> String {
        egress.resolve(host, port, db, LIMIT).await.expect_err("refused").to_string()
    }

    #[tokio::test]
    async fn refuses_the_state_database_under_any_name() {
        let egress = policy(&[], &[]);
        for host in ["127.0.0.1", "localhost", "127.0.0.2", "::1", "[::ffff:127.0.0.1]", "0.0.0.0"] {
            let why = refused(&egress, host, 5432, Some("syncline_state")).await;
            assert!(why.contains("Syncline's own state database"), "{host}: {why}");
        }
        assert!(egress.resolve("localhost", 5432, Some("customer"), LIMIT).await.is_ok(), "other databases");
        assert!(egress.resolve("localhost", 5433, Some("syncline_state"), LIMIT).await.is_ok(), "other servers");
        assert!(refused(&egress, "/var/run/postgresql", 5432, Some("x")).await.contains("Unix socket"));
    }

    #[tokio::test]
    async fn a_socket_state_database_is_this_host() {
        let egress = Egress::new("postgres:///syncline?host=/var/run/postgresql", vec![], vec![]);
        assert!(refused(&egress, "localhost", 5432, Some("syncline")).await.contains("state database"));
        assert!(egress.resolve("192.0.2.10", 5432, Some("syncline"), LIMIT).await.is_ok());
    }

    #[tokio::test]
    async fn refuses_metadata_and_honours_operator_lists() {
        let egress = policy(&[], &[]);
        assert!(refused(&egress, "169.254.169.254", 80, None).await.contains("metadata"));
        assert!(refused(&egress, "224.0.0.1", 80, None).await.contains("multicast"));
        assert!(egress.resolve("192.0.2.10", 5432, None, LIMIT).await.is_ok());

        let egress = policy(&["10.0.0.0/8", "*.corp.example", "169.254.10.1"], &["10.9.0.0/16", "bad.corp.example"]);
        assert!(egress.resolve("10.1.2.3", 5432, None, LIMIT).await.is_ok());
        assert!(egress.resolve("169.254.10.1", 5432, None, LIMIT).await.is_ok(), "explicitly allowed");
        assert!(refused(&egress, "10.9.1.1", 5432, None).await.contains("CONNECTION_DENIED_NETWORKS"));
        assert!(refused(&egress, "192.0.2.10", 5432, None).await.contains("not in CONNECTION_ALLOWED_NETWORKS"));
        assert!(egress.check("db.corp.example", "192.0.2.10".parse().expect("ip")).is_ok());
        assert!(egress.check("bad.corp.example", "10.1.1.1".parse().expect("ip")).is_err());
        assert!(egress.check("corp.example", "192.0.2.10".parse().expect("ip")).is_err(), "*. means below");
    }

    #[test]
    fn parses_rules() {
        assert_eq!("10.0.0.0/8".parse(), Ok(Rule::Network("10.0.0.0/8".parse().expect("net"))));
        assert_eq!("::1".parse(), Ok(Rule::Network("::1/128".parse().expect("net"))));
        assert_eq!("*.Example.com".parse(), Ok(Rule::Host("*.example.com".into())));
        assert!("10.0.0.0/33".parse::<Rule>().is_err() && "a b".parse::<Rule>().is_err());
    }
}
