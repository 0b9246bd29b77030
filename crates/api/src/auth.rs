//! Who is calling: the deployment key (partner scope, or one organization through Basic
//! `org_id:key`) or a user's API key (that user's organization).

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use base64::Engine;
use sha2::{Digest, Sha256};
use syncline_core::crypto::hash_api_key;
use uuid::Uuid;

use crate::{AppState, error::ApiError};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The deployment key as Bearer: manages organizations and users.
    Partner,
    /// The deployment key acting inside one organization (Basic `org_id:key`).
    Organization { organization_id: Uuid },
    /// A user's API key.
    User { user_id: Uuid, organization_id: Uuid, email: String, role: String },
}

impl Caller {
    /// The organization the caller acts in; partner callers must name one.
    pub fn organization(&self) -> Result<Uuid, ApiError> {
        match self {
            Self::Organization { organization_id } | Self::User { organization_id, .. } => Ok(*organization_id),
            Self::Partner => Err(ApiError::forbidden(
                "the deployment key acts on organizations as Bearer; use Basic auth with organization_id:key to act inside one",
            )),
        }
    }

    /// Requires partner scope.
    pub fn partner(&self) -> Result<(), ApiError> {
        match self {
            Self::Partner => Ok(()),
            _ => Err(ApiError::forbidden("this endpoint needs the deployment (partner) key")),
        }
    }

    /// Whether the caller may see organization `id`.
    pub fn can_see(&self, id: Uuid) -> bool {
        match self {
            Self::Partner => true,
            Self::Organization { organization_id } | Self::User { organization_id, .. } => *organization_id == id,
        }
    }

    /// A short stable identity for idempotency scoping.
    pub fn scope(&self) -> String {
        match self {
            Self::Partner => "partner".into(),
            Self::Organization { organization_id } => format!("org:{organization_id}"),
            Self::User { user_id, .. } => format!("user:{user_id}"),
        }
    }
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

async fn authenticate(state: web::Data<AppState>, authorization: Option<String>) -> Result<Caller, ApiError> {
    let header =
        authorization.ok_or_else(|| ApiError::unauthorized("missing Authorization header (Bearer <API key>)"))?;
    let (scheme, credentials) = header.split_once(' ').unwrap_or((header.as_str(), ""));
    let credentials = credentials.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" if same_secret(credentials, &state.settings.deployment_key) => Ok(Caller::Partner),
        "bearer" => {
            let client = state.pool.get().await?;
            let row = client
                .query_opt(
                    "update api_keys k set last_used_at = now() from users u
                     where k.key_hash = $1 and u.id = k.user_id
                     returning u.id, u.organization_id, u.email, u.role",
                    &[&hash_api_key(credentials)],
                )
                .await?;
            let row = row.ok_or_else(|| ApiError::unauthorized("the API key is not valid"))?;
            Ok(Caller::User { user_id: row.get(0), organization_id: row.get(1), email: row.get(2), role: row.get(3) })
        }
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
            let (org, key) =
                decoded.split_once(':').ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
            if !same_secret(key, &state.settings.deployment_key) {
                return Err(ApiError::unauthorized("the deployment key is not valid"));
            }
            let organization_id = Uuid::parse_str(org).map_err(|_| ApiError::unauthorized("unknown organization"))?;
            let client = state.pool.get().await?;
            let exists = client.query_opt("select 1 from organizations where id = $1", &[&organization_id]).await?;
            exists.ok_or_else(|| ApiError::unauthorized("unknown organization"))?;
            Ok(Caller::Organization { organization_id })
        }
        _ => Err(ApiError::unauthorized("unsupported Authorization scheme (use Bearer or Basic)")),
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::unauthorized("not configured"))?;
            authenticate(state, authorization).await
        })
    }
}
