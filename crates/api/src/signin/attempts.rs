//! Sign-ins in flight: what the callback must match (state, nonce, PKCE verifier) and where to
//! return, kept from the redirect to the provider until the callback uses it, at most once.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::provider::Authorization;
use crate::error::ApiError;

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
    let ttl = TTL.as_secs_f64();
    client
        .execute("delete from sign_in_attempts where created_at < now() - make_interval(secs => $1)", &[&ttl])
        .await?;
    client
        .execute(
            "insert into sign_in_attempts (state, nonce, pkce_verifier, return_to) values ($1, $2, $3, $4)",
            &[&authorization.state, &authorization.nonce, &authorization.pkce_verifier, &local_path(return_to)],
        )
        .await?;
    Ok(())
}

/// Deletes and answers the live attempt with `state`, so each is used at most once.
pub async fn take(client: &impl GenericClient, state: &str) -> Result<Option<Pending>, ApiError> {
    let row = client
        .query_opt(
            "delete from sign_in_attempts where state = $1 and created_at > now() - make_interval(secs => $2)
             returning nonce, pkce_verifier, return_to",
            &[&state, &TTL.as_secs_f64()],
        )
        .await?;
    Ok(row.map(|r| Pending { nonce: r.get(0), pkce_verifier: r.get(1), return_to: r.get(2) }))
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
