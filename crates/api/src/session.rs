//! Web sessions: server-side rows keyed by the digest of a random cookie token, with an idle and
//! an absolute expiry, revocable at any time. A session also carries a CSRF token: requests
//! that change state with a session cookie must echo it in `X-CSRF-Token`.

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite, time};
use base64::Engine;
use deadpool_postgres::GenericClient;
use syncline_core::{Settings, crypto::hash_api_key};
use uuid::Uuid;

use crate::{error::ApiError, store};

/// The HttpOnly cookie carrying the session token.
pub const SESSION_COOKIE: &str = "syncline_session";
/// The cookie the web UI reads the CSRF token from (not HttpOnly on purpose).
pub const CSRF_COOKIE: &str = "syncline_csrf";
/// The header state-changing requests made with a session must carry.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// A session unused this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// A session ends this long after sign-in, however active.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// 256 random bits, URL-safe: session and CSRF tokens.
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// A session that was just opened: the values to hand to the browser.
pub struct NewSession {
    pub id: Uuid,
    pub token: String,
    pub csrf: String,
}

/// A live session, as found from its cookie.
pub struct ActiveSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub email: String,
    pub csrf: String,
}

/// Opens a session for `user_id` in `organization_id`.
pub async fn open(
    client: &impl GenericClient,
    user_id: Uuid,
    organization_id: Uuid,
    ip: &str,
) -> Result<NewSession, ApiError> {
    let session = NewSession { id: Uuid::new_v4(), token: random_token(), csrf: random_token() };
    let row = store::sessions::NewSession {
        id: session.id,
        token_hash: &hash_api_key(&session.token),
        user_id,
        organization_id,
        csrf: &session.csrf,
        ip,
        max_age: MAX_AGE,
    };
    store::sessions::insert(client, &row).await?;
    Ok(session)
}

/// The live session the cookie `token` names; `None` when unknown, revoked or expired. Its last
/// use is written at most once a minute, so most requests only read.
pub async fn find(client: &impl GenericClient, token: &str) -> Result<Option<ActiveSession>, ApiError> {
    let Some(found) = store::sessions::find(client, &hash_api_key(token), IDLE_TIMEOUT).await? else {
        return Ok(None);
    };
    if found.stale {
        store::sessions::touch(client, found.id).await?;
    }
    Ok(Some(ActiveSession {
        id: found.id,
        user_id: found.user_id,
        organization_id: found.organization_id,
        email: found.email,
        csrf: found.csrf,
    }))
}

/// Ends session `id`.
pub async fn revoke(client: &impl GenericClient, id: Uuid) -> Result<(), ApiError> {
    Ok(store::sessions::revoke(client, id).await?)
}

/// The cookies that hand `session` to the browser. `Secure` is set unless the public URL is
/// plain http (a local install), where browsers would drop the cookie.
pub fn cookies(settings: &Settings, session: &NewSession) -> [Cookie<'static>; 2] {
    let max_age = time::Duration::seconds(MAX_AGE.as_secs() as i64);
    [
        cookie(settings, SESSION_COOKIE, session.token.clone(), true).max_age(max_age).finish(),
        cookie(settings, CSRF_COOKIE, session.csrf.clone(), false).max_age(max_age).finish(),
    ]
}

/// Cookies that remove the session from the browser.
pub fn removal_cookies(settings: &Settings) -> [Cookie<'static>; 2] {
    [SESSION_COOKIE, CSRF_COOKIE].map(|name| {
        let mut c = cookie(settings, name, String::new(), name == SESSION_COOKIE).finish();
        c.make_removal();
        c
    })
}

/// A cookie with the attributes every Syncline cookie carries.
pub fn cookie(
    settings: &Settings,
    name: &'static str,
    value: String,
    http_only: bool,
) -> actix_web::cookie::CookieBuilder<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(http_only)
        .secure(settings.public_url.scheme() == "https")
        .same_site(SameSite::Lax)
}
