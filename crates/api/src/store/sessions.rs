//! Web sessions and sign-ins in flight. Only digests of session tokens are stored.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_opt};

/// A live session, as found from the digest of its token.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub email: String,
    pub csrf: String,
    /// Its last use was recorded over a minute ago.
    pub stale: bool,
}

impl FromRow for Session {
    const WHAT: &'static str = "session";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            organization_id: row.try_get("organization_id")?,
            email: row.try_get("email")?,
            csrf: row.try_get("csrf_token")?,
            stale: row.try_get("stale")?,
        })
    }
}

/// What a new session row holds.
pub struct NewSession<'a> {
    pub id: Uuid,
    pub token_hash: &'a [u8],
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub csrf: &'a str,
    pub ip: &'a str,
    /// The session ends this long after it opens, however active.
    pub max_age: Duration,
}

pub async fn insert(client: &impl GenericClient, session: &NewSession<'_>) -> Result<(), StoreError> {
    client
        .execute(
            "insert into sessions (id, token_hash, user_id, organization_id, csrf_token, ip, expires_at)
             values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
            &[
                &session.id,
                &session.token_hash,
                &session.user_id,
                &session.organization_id,
                &session.csrf,
                &session.ip,
                &session.max_age.as_secs_f64(),
            ],
        )
        .await?;
    Ok(())
}

/// The live session with token digest `token_hash`: not revoked, not expired, and used within
/// `idle`.
pub async fn find(
    client: &impl GenericClient,
    token_hash: &[u8],
    idle: Duration,
) -> Result<Option<Session>, StoreError> {
    let sql = "select s.id, s.user_id, s.organization_id, u.email, s.csrf_token,
                      s.last_seen_at < now() - interval '1 minute' as stale
                 from sessions s join users u on u.id = s.user_id
                where s.token_hash = $1 and s.revoked_at is null and s.expires_at > now()
                  and s.last_seen_at > now() - make_interval(secs => $2)";
    fetch_opt(client, sql, &[&token_hash, &idle.as_secs_f64()]).await
}

/// Records that session `id` was used now.
pub async fn touch(client: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    client.execute("update sessions set last_seen_at = now() where id = $1", &[&id]).await?;
    Ok(())
}

pub async fn revoke(client: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    client.execute("update sessions set revoked_at = now() where id = $1 and revoked_at is null", &[&id]).await?;
    Ok(())
}

/// A sign-in attempt: what the provider's callback must match, and where to return.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
}

impl FromRow for Attempt {
    const WHAT: &'static str = "sign-in attempt";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            state: row.try_get("state")?,
            nonce: row.try_get("nonce")?,
            pkce_verifier: row.try_get("pkce_verifier")?,
            return_to: row.try_get("return_to")?,
        })
    }
}

/// Stores `attempt`, and forgets attempts older than `ttl`.
pub async fn insert_attempt(client: &impl GenericClient, attempt: &Attempt, ttl: Duration) -> Result<(), StoreError> {
    client
        .execute(
            "delete from sign_in_attempts where created_at < now() - make_interval(secs => $1)",
            &[&ttl.as_secs_f64()],
        )
        .await?;
    client
        .execute(
            "insert into sign_in_attempts (state, nonce, pkce_verifier, return_to) values ($1, $2, $3, $4)",
            &[&attempt.state, &attempt.nonce, &attempt.pkce_verifier, &attempt.return_to],
        )
        .await?;
    Ok(())
}

/// Deletes and answers the attempt with `state` younger than `ttl`, so each is used at most once.
pub async fn take_attempt(
    client: &impl GenericClient,
    state: &str,
    ttl: Duration,
) -> Result<Option<Attempt>, StoreError> {
    let sql = "delete from sign_in_attempts where state = $1 and created_at > now() - make_interval(secs => $2)
               returning state, nonce, pkce_verifier, return_to";
    fetch_opt(client, sql, &[&state, &ttl.as_secs_f64()]).await
}
