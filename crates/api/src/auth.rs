//! Who is calling: the deployment key (partner scope, or one organization through Basic
//! `org_id:key`), a user's API key, or a user's web session (cookie plus CSRF header on
//! state-changing requests). Failed attempts are rate-limited per IP and per account.

use std::{future::Future, net::IpAddr, pin::Pin};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header, web};
use base64::Engine;
use deadpool_postgres::GenericClient;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use syncline_core::crypto::hash_api_key;
use uuid::Uuid;

use crate::{
    AppState,
    access::{Access, Action, Kind, Readable},
    error::ApiError,
    limits::Attempt,
    session, store,
};

/// How a user proved who they are.
#[derive(Debug, Clone, Copy)]
pub enum Credential {
    ApiKey { key_id: Uuid },
    Session { session_id: Uuid },
}

/// A signed-in user and what their roles allow.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub email: String,
    pub access: Access,
    pub credential: Credential,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The deployment key as Bearer: manages organizations and users.
    Partner,
    /// The deployment key acting inside one organization (Basic `org_id:key`): an admin there.
    Organization { organization_id: Uuid },
    /// A user, through an API key or a session.
    User(Box<User>),
}

impl Caller {
    /// Who the caller is, for people: a user's email, or the deployment key.
    pub fn describe(&self) -> String {
        match self {
            Self::User(user) => user.email.clone(),
            Self::Partner | Self::Organization { .. } => "the deployment key".to_owned(),
        }
    }

    /// The organization the caller acts in; partner callers must name one.
    pub fn organization(&self) -> Result<Uuid, ApiError> {
        match self {
            Self::Organization { organization_id } => Ok(*organization_id),
            Self::User(user) => Ok(user.organization_id),
            Self::Partner => Err(ApiError::forbidden(
                "the deployment key acts on organizations as Bearer; use Basic auth with organization_id:key to act inside one",
            )),
        }
    }

    /// Requires partner scope to act on organization `id`; an organization the caller does not
    /// belong to does not exist for them (404).
    pub fn partner_on(&self, id: Uuid) -> Result<(), ApiError> {
        match self.can_see(id) {
            true => self.partner(),
            false => Err(ApiError::not_found("organization")),
        }
    }

    /// Requires partner scope.
    pub fn partner(&self) -> Result<(), ApiError> {
        match self {
            Self::Partner => Ok(()),
            _ => Err(ApiError::forbidden("this endpoint needs the deployment (partner) key")),
        }
    }

    /// The organization the caller administers: the deployment key inside one, or an Admin.
    pub fn admin(&self) -> Result<Uuid, ApiError> {
        let organization_id = self.organization()?;
        match self {
            Self::User(user) if !user.access.admin => Err(ApiError::forbidden("this needs the Admin role")),
            _ => Ok(organization_id),
        }
    }

    /// Whether the caller may do `action` to an object of `kind` carrying `policies`.
    pub fn allows(&self, action: Action, kind: Kind, policies: &[String]) -> bool {
        match self {
            Self::Partner => false,
            Self::Organization { .. } => true,
            Self::User(user) => user.access.allows(action, kind, policies),
        }
    }

    /// Which objects of `kind` the caller may read.
    pub fn readable(&self, kind: Kind) -> Readable {
        match self {
            Self::Partner => Readable::default(),
            Self::Organization { .. } => Readable { everywhere: true, policies: Vec::new() },
            Self::User(user) => user.access.readable(kind),
        }
    }

    /// 403 unless the caller may do `action` to an object of `kind` carrying `policies`.
    pub fn check(&self, action: Action, kind: Kind, policies: &[String]) -> Result<(), ApiError> {
        self.organization()?;
        match self.allows(action, kind, policies) {
            true => Ok(()),
            false => Err(ApiError::forbidden(format!("your roles do not allow {action} on this {kind}"))),
        }
    }

    /// Whether the caller may see organization `id`.
    pub fn can_see(&self, id: Uuid) -> bool {
        match self {
            Self::Partner => true,
            _ => self.organization().is_ok_and(|org| org == id),
        }
    }

    /// A short stable identity for idempotency scoping.
    pub fn scope(&self) -> String {
        match self {
            Self::Partner => "partner".into(),
            Self::Organization { organization_id } => format!("org:{organization_id}"),
            Self::User(user) => format!("user:{}", user.id),
        }
    }
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// The client's address: the TCP peer, or, when the peer is one of `TRUSTED_PROXIES`, the
/// address those proxies name in `X-Forwarded-For`.
pub fn client_ip(req: &HttpRequest) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else { return "unknown".into() };
    let trusted = req.app_data::<web::Data<AppState>>().map(|s| s.settings.trusted_proxies.as_slice());
    let forwarded: Vec<&str> =
        req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    forwarded_client(peer, &forwarded, trusted.unwrap_or_default()).to_string()
}

/// Walks `X-Forwarded-For` from the nearest hop while the hop that added it is a trusted proxy:
/// the first address not trusted (or the farthest one named) is the client. Hops written by
/// the client itself are never believed.
fn forwarded_client(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match hop.trim().parse() {
            Ok(ip) => client = ip,
            Err(_) => break,
        }
    }
    client
}

/// Loads what user `user_id`'s roles allow in `organization_id`.
pub async fn load_access(
    client: &impl GenericClient,
    user_id: Uuid,
    organization_id: Uuid,
) -> Result<Access, ApiError> {
    Ok(store::permissions::access(client, user_id, organization_id).await?)
}

/// What the request presents.
enum Presented {
    Bearer(String),
    /// `org_id:key`, or `None` when malformed.
    Basic(Option<(String, String)>),
    Session(String),
}

fn presented(req: &HttpRequest) -> Result<Presented, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return match req.cookie(session::SESSION_COOKIE) {
            Some(cookie) => Ok(Presented::Session(cookie.value().to_owned())),
            None => Err(ApiError::unauthorized("missing Authorization header (Bearer <API key>) or session")),
        };
    };
    let value = value.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim().to_owned();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Ok(Presented::Bearer(credentials)),
        "basic" => Ok(Presented::Basic(basic_parts(&credentials))),
        _ => Err(ApiError::unauthorized("unsupported Authorization scheme (use Bearer or Basic)")),
    }
}

/// A failed attempt: counted against the IP (and account), then answered 401 (429 once the
/// budget is spent).
async fn reject(state: &AppState, attempt: Attempt<'_>, message: &str) -> ApiError {
    state.limiter.failed(attempt, ApiError::unauthorized(message)).await
}

async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Caller, ApiError> {
    let ip = client_ip(req);
    let presented = presented(req)?;
    let account = match &presented {
        Presented::Basic(Some((org, _))) => Some(org.as_str()),
        _ => None,
    };
    let attempt = Attempt { ip: &ip, account };
    let client = state.pool.get().await?;
    match &presented {
        Presented::Bearer(key) if same_secret(key, &state.settings.deployment_key) => Ok(Caller::Partner),
        Presented::Bearer(key) => {
            let Some(holder) = store::keys::holder(&client, &hash_api_key(key)).await? else {
                return Err(reject(state, attempt, "the API key is not valid").await);
            };
            if holder.stale {
                store::keys::touch(&client, holder.key_id).await?;
            }
            let (id, organization_id) = (holder.user_id, holder.organization_id);
            let access = load_access(&client, id, organization_id).await?;
            let credential = Credential::ApiKey { key_id: holder.key_id };
            Ok(Caller::User(Box::new(User { id, organization_id, email: holder.email, access, credential })))
        }
        Presented::Basic(None) => Err(reject(state, attempt, "malformed Basic credentials").await),
        Presented::Basic(Some((org, key))) => {
            if !same_secret(key, &state.settings.deployment_key) {
                return Err(reject(state, attempt, "the deployment key is not valid").await);
            }
            let organization_id = Uuid::parse_str(org).map_err(|_| ApiError::unauthorized("unknown organization"))?;
            if !store::organizations::exists_by_id(&client, organization_id).await? {
                return Err(ApiError::unauthorized("unknown organization"));
            }
            Ok(Caller::Organization { organization_id })
        }
        Presented::Session(token) => {
            let Some(found) = session::find(&client, token).await? else {
                return Err(reject(state, attempt, "the session has ended; sign in again").await);
            };
            if !req.method().is_safe() {
                let echoed = req.headers().get(session::CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                if !same_secret(echoed, &found.csrf) {
                    return Err(ApiError::forbidden(
                        "state-changing requests made with a session must carry the X-CSRF-Token header",
                    ));
                }
            }
            let access = load_access(&client, found.user_id, found.organization_id).await?;
            Ok(Caller::User(Box::new(User {
                id: found.user_id,
                organization_id: found.organization_id,
                email: found.email,
                access,
                credential: Credential::Session { session_id: found.id },
            })))
        }
    }
}

/// `org_id:key` from Basic credentials.
fn basic_parts(credentials: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (org, key) = decoded.split_once(':')?;
    Some((org.to_owned(), key.to_owned()))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            if let Some(caller) = req.extensions().get::<Caller>() {
                return Ok(caller.clone());
            }
            let state =
                req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::unauthorized("not configured"))?;
            let caller = authenticate(state, &req).await?;
            req.extensions_mut().insert(caller.clone());
            Ok(caller)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn believes_forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let hops = ["203.0.113.7", "10.0.0.2"];
        assert_eq!(forwarded_client(ip("10.0.0.1"), &hops, &trusted), ip("203.0.113.7"), "through two proxies");
        assert_eq!(forwarded_client(ip("198.51.100.1"), &hops, &trusted), ip("198.51.100.1"), "untrusted peer");
        let spoofed = ["1.2.3.4", "203.0.113.7"];
        assert_eq!(forwarded_client(ip("10.0.0.1"), &spoofed, &trusted), ip("203.0.113.7"), "client-written hops");
        assert_eq!(forwarded_client(ip("10.0.0.1"), &["junk"], &trusted), ip("10.0.0.1"));
        assert_eq!(forwarded_client(ip("10.0.0.1"), &hops, &[]), ip("10.0.0.1"), "no trusted proxies");
    }
}
