//! `Idempotency-Key` on creating POSTs: the first outcome for a key is replayed for 24 hours,
//! a request still in flight under the same key answers 409, and a key reused for a different
//! request answers 422. Server errors are not remembered, so a retry can succeed.
//!
//! No state-database connection is held while the handler runs (it takes its own): a request
//! holds at most one at a time.

use actix_web::{HttpRequest, HttpResponse, ResponseError, body::MessageBody, http::StatusCode};
use sha2::{Digest, Sha256};

use tokio_postgres::Row;

use crate::{
    AppState,
    auth::Caller,
    error::ApiError,
    store::{self, FromRow},
};

const HEADER: &str = "Idempotency-Key";

/// Runs `handler` at most once per idempotency key (when the request carries one).
pub async fn once<F>(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    body: &[u8],
    handler: F,
) -> Result<HttpResponse, ApiError>
where
    F: Future<Output = Result<HttpResponse, ApiError>>,
{
    let Some(key) = req.headers().get(HEADER).map(|v| v.to_str().unwrap_or_default().to_owned()) else {
        return handler.await;
    };
    if !(8..=255).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ApiError::bad_request("Idempotency-Key must be 8–255 characters of A–Z, a–z, 0–9, _ or -"));
    }
    let scope = caller.scope();
    let request = format!("{} {} {}", req.method(), req.path(), hex::encode(Sha256::digest(body)));
    let client = state.pool.get().await?;
    client
        .execute(
            "delete from idempotency_keys where scope = $1 and key = $2 and created_at < now() - interval '24 hours'",
            &[&scope, &key],
        )
        .await?;
    let claimed = client
        .execute(
            "insert into idempotency_keys (scope, key, request) values ($1, $2, $3) on conflict do nothing",
            &[&scope, &key, &request],
        )
        .await?;
    if claimed == 1 {
        drop(client);
        return run_and_remember(state, &scope, &key, handler).await;
    }
    let sql = "select request, status, body from idempotency_keys where scope = $1 and key = $2";
    let Claimed { request: stored, status, body } = store::fetch_one(&client, sql, &[&scope, &key]).await?;
    if stored != request {
        return Err(ApiError::unprocessable("this Idempotency-Key was already used for a different request"));
    }
    let Some(status) = status else {
        return Err(ApiError::conflict("a request with this Idempotency-Key is still in progress"));
    };
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    Ok(HttpResponse::build(status).content_type("application/json").body(body.unwrap_or_default()))
}

/// A key's claim: the request it was claimed for and, once known, its outcome.
struct Claimed {
    request: String,
    status: Option<i32>,
    body: Option<Vec<u8>>,
}

impl FromRow for Claimed {
    const WHAT: &'static str = "idempotency key";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self { request: row.try_get("request")?, status: row.try_get("status")?, body: row.try_get("body")? })
    }
}

/// Runs the handler of a freshly claimed key and stores its outcome (or frees the key after a
/// server error). If the request is dropped midway (the client went away), the claim is
/// released so the key is not stuck "in progress".
async fn run_and_remember<F>(state: &AppState, scope: &str, key: &str, handler: F) -> Result<HttpResponse, ApiError>
where
    F: Future<Output = Result<HttpResponse, ApiError>>,
{
    let mut release = Release { pool: state.pool.clone(), scope: scope.to_owned(), key: key.to_owned(), armed: true };
    let response = handler.await.unwrap_or_else(|e| e.error_response());
    let status = response.status();
    if status.is_server_error() {
        return Ok(response);
    }
    let (head, body) = response.into_parts();
    let bytes = body.try_into_bytes().unwrap_or_default();
    release.armed = false;
    state
        .pool
        .get()
        .await?
        .execute(
            "update idempotency_keys set status = $3, body = $4 where scope = $1 and key = $2",
            &[&scope, &key, &(status.as_u16() as i32), &bytes.to_vec()],
        )
        .await?;
    Ok(head.set_body(bytes).map_into_boxed_body())
}

/// Deletes a claimed key when dropped before the outcome was stored.
struct Release {
    pool: syncline_core::db::DbPool,
    scope: String,
    key: String,
    /// Cleared once the outcome is being stored.
    armed: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let pool = self.pool.clone();
        let (scope, key) = (std::mem::take(&mut self.scope), std::mem::take(&mut self.key));
        tokio::spawn(async move {
            let deleted = async {
                let client = pool.get().await?;
                client.execute("delete from idempotency_keys where scope = $1 and key = $2", &[&scope, &key]).await?;
                Ok::<_, ApiError>(())
            };
            if let Err(e) = deleted.await {
                tracing::warn!(error = %e, "could not release an idempotency key");
            }
        });
    }
}
