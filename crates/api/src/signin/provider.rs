//! The OpenID Connect provider: its metadata and keys, discovered on first use and cached (so the
//! API starts while the issuer is unreachable), the authorization URL, and the code exchange with
//! ID-token verification.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::http::StatusCode;
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse, TokenResponse,
    core::{CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreProviderMetadata},
};
use syncline_core::Settings;
use tokio::sync::Mutex;

use crate::error::ApiError;

/// Discovered metadata and keys are fetched again after this long.
const REFRESH_AFTER: Duration = Duration::from_secs(3600);
/// Bound on each request to the provider.
const TIMEOUT: Duration = Duration::from_secs(10);

type OidcClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;
type ExchangeError = RequestTokenError<reqwest::Error, StandardErrorResponse<CoreErrorResponseType>>;

/// Where to send the browser, and what its callback must match.
pub struct Authorization {
    pub url: openidconnect::url::Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Who the provider says signed in.
pub struct Identity {
    pub email: String,
    pub email_verified: Option<bool>,
}

/// The configured issuer and this deployment's client there.
pub struct Provider {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: ClientSecret,
    redirect: RedirectUrl,
    http: reqwest::Client,
    discovered: Mutex<Option<(Arc<OidcClient>, Instant)>>,
}

impl Provider {
    /// The provider `settings` name; the browser comes back to `{POLYTOMIC_URL}/auth`.
    pub fn new(settings: &Settings) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let public_url = settings.public_url.as_str().trim_end_matches('/');
        Ok(Self {
            issuer: IssuerUrl::new(settings.oidc_issuer_url.clone())?,
            client_id: ClientId::new(settings.oidc_client_id.clone()),
            client_secret: ClientSecret::new(settings.oidc_client_secret.clone()),
            redirect: RedirectUrl::new(format!("{public_url}/auth"))?,
            // No redirects: a provider must not be able to point these requests elsewhere.
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(TIMEOUT).build()?,
            discovered: Mutex::new(None),
        })
    }

    /// A new authorization request: code flow with PKCE (S256), a state and a nonce.
    pub async fn authorization(&self) -> Result<Authorization, ApiError> {
        let client = self.client(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Authorization {
            url,
            state: state.into_secret(),
            nonce: nonce.into_secret(),
            pkce_verifier: verifier.into_secret(),
        })
    }

    /// Exchanges `code` and verifies the ID token (issuer, audience, expiry, signature, `nonce`).
    /// The provider refusing the code, or a token failing verification, is a 401.
    pub async fn identify(&self, code: String, pkce_verifier: String, nonce: String) -> Result<Identity, ApiError> {
        let client = self.client(false).await?;
        let http = |request| send(&self.http, request);
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| bad_gateway(&e))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(&http)
            .await
            .map_err(exchange_failed)?;
        let id_token =
            token.id_token().ok_or_else(|| ApiError::unauthorized("the identity provider sent no ID token"))?;
        let nonce = Nonce::new(nonce);
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            // The provider may have rotated its keys since they were fetched: the token names an
            // unknown key, or names none and fails against the one known key.
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey | SignatureVerificationError::CryptoError(_),
            )) => id_token.claims(&self.client(true).await?.id_token_verifier(), &nonce),
            verified => verified,
        };
        let claims = claims.map_err(|e| ApiError::unauthorized(format!("the ID token was rejected: {}", chain(&e))))?;
        let email = claims
            .email()
            .ok_or_else(|| ApiError::forbidden("the identity provider did not share an email address"))?;
        Ok(Identity { email: email.to_string(), email_verified: claims.email_verified() })
    }

    /// The client built from the provider's metadata: the cached one while fresh (and not
    /// `stale`), else discovered again; when that fails, the last one, if any.
    async fn client(&self, stale: bool) -> Result<Arc<OidcClient>, ApiError> {
        let mut discovered = self.discovered.lock().await;
        if let Some((client, at)) = discovered.as_ref()
            && !stale
            && at.elapsed() < REFRESH_AFTER
        {
            return Ok(client.clone());
        }
        let http = |request| send(&self.http, request);
        match CoreProviderMetadata::discover_async(self.issuer.clone(), &http).await {
            Ok(metadata) => {
                let client = CoreClient::from_provider_metadata(
                    metadata,
                    self.client_id.clone(),
                    Some(self.client_secret.clone()),
                )
                .set_redirect_uri(self.redirect.clone());
                let client = Arc::new(client);
                *discovered = Some((client.clone(), Instant::now()));
                Ok(client)
            }
            Err(e) => {
                let problem = chain(&e);
                tracing::warn!(issuer = %self.issuer.as_str(), error = %problem, "OpenID Connect discovery failed");
                match discovered.as_ref() {
                    Some((client, _)) => Ok(client.clone()),
                    None => Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("the identity provider cannot be reached: {problem}"),
                    )),
                }
            }
        }
    }
}

/// Sends an openidconnect request with reqwest.
async fn send(http: &reqwest::Client, request: HttpRequest) -> Result<HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
    let mut answer = http::Response::new(Vec::new());
    *answer.status_mut() = response.status();
    *answer.headers_mut() = response.headers().clone();
    *answer.body_mut() = response.bytes().await?.to_vec();
    Ok(answer)
}

/// 401 when the provider refused the code (used, expired, or not ours); else the provider is at
/// fault. The response body, which may carry tokens, is never quoted.
fn exchange_failed(e: ExchangeError) -> ApiError {
    match e {
        RequestTokenError::ServerResponse(refusal) => {
            ApiError::unauthorized(format!("the identity provider refused the authorization code: {refusal}"))
        }
        RequestTokenError::Request(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the identity provider cannot be reached: {}", chain(&e)),
        ),
        other => bad_gateway(&other),
    }
}

fn bad_gateway(e: &dyn std::error::Error) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, format!("the identity provider answered unexpectedly: {}", chain(e)))
}

/// An error and its causes: `outer: inner: …`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}
