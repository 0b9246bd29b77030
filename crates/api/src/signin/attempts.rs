//! Sign-ins in flight: what the callback must match (state, nonce, PKCE verifier) and where to
//! return, kept from the redirect to the provider until the callback uses it, at most once.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::provider::Authorization;
use crate::{
    error::ApiError,
    store::{self, sessions::Attempt},
};

/// How long a sign-in may take from the redirect to the callback.
pub const TTL: Duration = Duration::from_secs(600);

/// A sign-in attempt the callback used up.
pub struct Pending {
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
}

/// Stores the attempt `authorization` starts (returning to `return_to` if it is a path on this
/// site, else to `/`), and forgets expired ones.
pub async fn record(
    client: &impl GenericClient,
    authorization: &Authorization,
    return_to: Option<&str>,
) -> Result<(), ApiError> {
    let attempt = Attempt {
        state: authorization.state.clone(),
        nonce: authorization.nonce.clone(),
        pkce_verifier: authorization.pkce_verifier.clone(),
        return_to: local_path(return_to),
    };
    Ok(store::sessions::insert_attempt(client, &attempt, TTL).await?)
}

/// Deletes and answers the live attempt with `state`, so each is used at most once.
pub async fn take(client: &impl GenericClient, state: &str) -> Result<Option<Pending>, ApiError> {
    let attempt = store::sessions::take_attempt(client, state, TTL).await?;
    Ok(attempt.map(|a| Pending { nonce: a.nonce, pkce_verifier: a.pkce_verifier, return_to: a.return_to }))
}

/// `return_to` when it is a path on this site (one leading `/`, no scheme or host), else `/`.
fn local_path(return_to: Option<&str>) -> String {
    match return_to {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn returns_only_to_local_paths() {
        assert_eq!(local_path(Some("/syncs/1?tab=runs#top")), "/syncs/1?tab=runs#top");
        assert_eq!(local_path(Some("/")), "/");
        for outside in [None, Some(""), Some("syncs"), Some("//evil.example"), Some("/\\evil.example")] {
            assert_eq!(local_path(outside), "/", "{outside:?}");
        }
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\nSet-Cookie: x")), "/");
    }
}
