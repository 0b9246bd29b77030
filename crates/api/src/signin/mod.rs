//! Web sign-in through OpenID Connect (Google unless `OIDC_ISSUER_URL` names another issuer).
//!
//! `GET /auth/login` records a sign-in attempt (state, nonce, PKCE verifier, where to return),
//! binds the browser to it with a short-lived cookie and redirects to the provider. The provider
//! sends the browser back to `GET /auth`, which uses the attempt up, exchanges the code, verifies
//! the ID token, admits the user (see [`admission`]) and opens a session. `POST /auth/logout`
//! ends it. Failed callbacks count against the client's authentication budget; codes, tokens
//! and states are never logged.

mod admission;
mod attempts;
mod provider;

use actix_web::{
    HttpRequest, HttpResponse, HttpResponseBuilder, cookie, get,
    http::header::{self, CacheDirective},
    post, web,
};
pub use provider::Provider;
use serde::Deserialize;

use crate::{
    AppState,
    access::Access,
    audit::{self, Event},
    auth::{Caller, Credential, User, client_ip, same_secret},
    error::ApiError,
    limits::Attempt,
    session,
};

/// The cookie binding the browser to the sign-in it started.
const SIGNIN_COOKIE: &str = "syncline_signin";

/// Registers the sign-in routes (outside `/api`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(login).service(callback).service(logout);
}

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

#[get("/auth/login")]
async fn login(
    state: web::Data<AppState>,
    provider: web::Data<Provider>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, ApiError> {
    let authorization = provider.authorization().await?;
    attempts::record(&state.pool.get().await?, &authorization, query.return_to.as_deref()).await?;
    let max_age = cookie::time::Duration::seconds(attempts::TTL.as_secs() as i64);
    let binding = signin_cookie(&state, authorization.state).max_age(max_age);
    Ok(uncached(HttpResponse::Found())
        .insert_header((header::LOCATION, authorization.url.as_str()))
        .cookie(binding.finish())
        .finish())
}

/// The provider's answer (RFC 6749 §4.1.2).
#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[get("/auth")]
async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    provider: web::Data<Provider>,
    query: web::Query<Callback>,
) -> Result<HttpResponse, ApiError> {
    let ip = client_ip(&req);
    let by_ip = Attempt { ip: &ip, account: None };
    let (identity, return_to) = counted(&state, by_ip, verify(&req, &state, &provider, query.into_inner())).await?;
    let by_account = Attempt { ip: &ip, account: Some(&identity.email) };
    counted(&state, by_account, sign_in(&state, &identity, &ip, &return_to)).await
}

/// Uses up the attempt the callback names, checks it against the browser, and asks the provider
/// who signed in. Answers that identity and where to return.
async fn verify(
    req: &HttpRequest,
    state: &AppState,
    provider: &Provider,
    answer: Callback,
) -> Result<(provider::Identity, String), ApiError> {
    let attempt = match &answer.state {
        Some(attempt_state) => attempts::take(&state.pool.get().await?, attempt_state).await?,
        None => None,
    };
    if let Some(error) = answer.error {
        let detail = answer.error_description.map(|d| format!(" ({d})")).unwrap_or_default();
        return Err(ApiError::unauthorized(format!("the identity provider refused the sign-in: {error}{detail}")));
    }
    let (Some(attempt_state), Some(attempt)) = (answer.state, attempt) else {
        return Err(ApiError::bad_request("the sign-in attempt is unknown or was already used; sign in again"));
    };
    if !req.cookie(SIGNIN_COOKIE).is_some_and(|c| same_secret(c.value(), &attempt_state)) {
        return Err(ApiError::bad_request(
            "the sign-in attempt was started in another browser (its state does not match this browser's cookie)",
        ));
    }
    let code = answer.code.ok_or_else(|| ApiError::bad_request("the callback carries no authorization code"))?;
    let identity = provider.identify(code, attempt.pkce_verifier, attempt.nonce).await?;
    Ok((identity, attempt.return_to))
}

/// Admits `identity`, opens its session and records the sign-in, all or nothing; answers 303
/// to `return_to` with the session cookies.
async fn sign_in(
    state: &AppState,
    identity: &provider::Identity,
    ip: &str,
    return_to: &str,
) -> Result<HttpResponse, ApiError> {
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let member = admission::admit(&tx, &state.settings, identity).await?;
    let session = session::open(&tx, member.user_id, member.organization_id, ip).await?;
    let caller = Caller::User(Box::new(User {
        id: member.user_id,
        organization_id: member.organization_id,
        email: identity.email.clone(),
        access: Access::default(),
        credential: Credential::Session { session_id: session.id },
    }));
    let event = Event {
        organization_id: Some(member.organization_id),
        caller: &caller,
        action: "user.sign_in".into(),
        object_type: Some("user".into()),
        object_id: Some(member.user_id.to_string()),
        ip,
    };
    audit::record(&tx, event).await?;
    tx.commit().await?;
    let mut response = uncached(HttpResponse::SeeOther());
    response.insert_header((header::LOCATION, return_to));
    for cookie in session::cookies(&state.settings, &session) {
        response.cookie(cookie);
    }
    let mut used = signin_cookie(state, String::new()).finish();
    used.make_removal();
    Ok(response.cookie(used).finish())
}

#[post("/auth/logout")]
async fn logout(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let session_id = match &caller {
        Caller::User(user) => match user.credential {
            Credential::Session { session_id } => Some(session_id),
            Credential::ApiKey { .. } => None,
        },
        _ => None,
    };
    let session_id = session_id.ok_or_else(|| ApiError::bad_request("sign-out ends a web session; sign in first"))?;
    session::revoke(&state.pool.get().await?, session_id).await?;
    let mut response = HttpResponse::NoContent();
    for cookie in session::removal_cookies(&state.settings) {
        response.cookie(cookie);
    }
    Ok(response.finish())
}

/// Charges a failed attempt when `work` answers a client error (not for outages of the provider
/// or the database); past the budget the answer is 429.
async fn counted<T>(
    state: &AppState,
    attempt: Attempt<'_>,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    match work.await {
        Err(e) if e.status.is_client_error() => Err(state.limiter.failed(attempt, e).await),
        result => result,
    }
}

/// The sign-in cookie, scoped to `/auth`.
fn signin_cookie(state: &AppState, value: String) -> cookie::CookieBuilder<'static> {
    session::cookie(&state.settings, SIGNIN_COOKIE, value, true).path("/auth")
}

/// Sign-in responses carry one-time values: never cache them.
fn uncached(mut response: HttpResponseBuilder) -> HttpResponseBuilder {
    response.insert_header(header::CacheControl(vec![CacheDirective::NoStore]));
    response
}
