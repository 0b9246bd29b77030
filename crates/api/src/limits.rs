//! Abuse limits on authentication: failed sign-ins and credential attempts are counted in Redis
//! per client IP and per account from that IP (an organization named in Basic auth, an email at
//! sign-in) over a fixed window; past the budget, further failed attempts answer 429 until the
//! window ends. Only failures are limited: a valid credential always gets in, so nobody is
//! locked out by someone else's failures, from the same address or against the same account.
//!
//! Counting is best effort: when Redis cannot be reached the attempt is let through and logged,
//! so an outage of the cache never locks every user out.

use fred::prelude::{Builder, Client, ClientLike, Config, KeysInterface};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Length of the counting window.
const WINDOW_SECONDS: i64 = 300;
/// Failed attempts one IP address may make per window.
const PER_IP: i64 = 30;
/// Failed attempts against one account from one IP per window.
const PER_ACCOUNT: i64 = 10;

/// Who a failed attempt is charged to.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub ip: &'a str,
    pub account: Option<&'a str>,
}

/// Failed-authentication budgets in Redis.
#[derive(Clone)]
pub struct AuthLimiter {
    redis: Client,
    prefix: String,
}

impl AuthLimiter {
    /// Connects to Redis at `url`; budgets are kept under `{prefix}:auth-failures:`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, fred::error::Error> {
        let redis = Builder::from_config(Config::from_url(url)?).build()?;
        redis.init().await?;
        Ok(Self { redis, prefix: format!("{prefix}:auth-failures") })
    }

    fn keys(&self, attempt: Attempt<'_>) -> Vec<(String, i64)> {
        let mut keys = vec![(format!("{}:ip:{}", self.prefix, attempt.ip), PER_IP)];
        if let Some(account) = attempt.account {
            // Accounts are hashed so emails do not sit in the cache in clear.
            let source = format!("{}\0{}", account.to_lowercase(), attempt.ip);
            let digest = hex::encode(Sha256::digest(source.as_bytes()));
            keys.push((format!("{}:account:{digest}", self.prefix), PER_ACCOUNT));
        }
        keys
    }

    /// A failed attempt: 429 when its IP or account had already used up the budget, otherwise
    /// the attempt is charged and `error` is the answer.
    pub async fn failed(&self, attempt: Attempt<'_>, error: ApiError) -> ApiError {
        match self.check(attempt).await {
            Err(limited) => limited,
            Ok(()) => {
                self.charge(attempt).await;
                error
            }
        }
    }

    /// 429 when the IP or the account has used up its budget of failures.
    async fn check(&self, attempt: Attempt<'_>) -> Result<(), ApiError> {
        let keys = self.keys(attempt);
        let names: Vec<String> = keys.iter().map(|(key, _)| key.clone()).collect();
        let failures: Vec<Option<i64>> = match self.redis.mget(names).await {
            Ok(failures) => failures,
            Err(e) => {
                tracing::warn!(error = %e, "auth rate limit unavailable");
                return Ok(());
            }
        };
        let spent = keys.iter().zip(failures).find(|((_, budget), failures)| failures.is_some_and(|f| f >= *budget));
        let Some(((key, _), _)) = spent else { return Ok(()) };
        let ttl: i64 = self.redis.ttl(key).await.unwrap_or(WINDOW_SECONDS);
        Err(ApiError::too_many_requests("too many failed authentication attempts; try again later", ttl.max(1) as u64))
    }

    /// Charges one failed attempt to the IP and the account.
    async fn charge(&self, attempt: Attempt<'_>) {
        for (key, _) in self.keys(attempt) {
            let pipeline = self.redis.pipeline();
            let queued: Result<(), _> = pipeline.incr(&key).await;
            let expiry: Result<(), _> =
                pipeline.expire(&key, WINDOW_SECONDS, Some(fred::types::ExpireOptions::NX)).await;
            let counted: Result<(i64, i64), _> = pipeline.all().await;
            if let Err(e) = queued.and(expiry).and(counted.map(drop)) {
                tracing::warn!(error = %e, "cannot count a failed authentication attempt");
            }
        }
    }
}
