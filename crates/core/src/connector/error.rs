//! Connector failures, each with a class that decides what happens next: the API answers with
//! the class's status, and the worker retries only what may succeed on a later try.

use std::{sync::Arc, time::Duration};

use crate::egress::EgressError;

/// What kind of failure a connector hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "class")]
pub enum ErrorClass {
    /// The configuration is wrong (bad SQL, an unknown field, a host the egress policy refuses);
    /// retrying will not help until someone changes it.
    Config,
    /// The system refused the credentials.
    Auth,
    /// The named object does not exist.
    NotFound,
    /// The system asked us to slow down; retry after `retry_after` when it says.
    RateLimited {
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<Duration>,
    },
    /// A failure that may clear by itself (a network blip, a timeout, a restart).
    Transient,
    /// Anything else that retrying the same work will not fix.
    Permanent,
}

impl ErrorClass {
    /// Whether a later try of the same work may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient | Self::RateLimited { .. })
    }

    /// The class name recorded on executions (`transient`, `rate_limited`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Auth => "auth",
            Self::NotFound => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        }
    }
}

/// A connector failure with a message fit for the user (it names object, field and record) and
/// the underlying cause, when there is one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub class: ErrorClass,
    pub message: String,
    #[source]
    pub cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ConnectorError {
    /// A failure of `class`.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self { class, message: message.into(), cause: None }
    }

    /// The configuration is wrong.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Config, message)
    }

    /// The credentials were refused.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Auth, message)
    }

    /// A missing object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::NotFound, message)
    }

    /// The system is rate limiting us.
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self::new(ErrorClass::RateLimited { retry_after }, message)
    }

    /// A failure that may clear by itself.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, message)
    }

    /// A failure retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, message)
    }

    /// `what` did not answer within `limit` (transient).
    pub fn timed_out(what: &str, limit: Duration) -> Self {
        Self::transient(format!("{what} did not answer within {} s", limit.as_secs()))
    }

    /// Keeps `cause` as the source of this error.
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// The same failure with `context` in front of the message (`orders: …`).
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl From<EgressError> for ConnectorError {
    /// A refusal of the egress policy is a configuration error; a host that does not resolve
    /// may resolve later.
    fn from(e: EgressError) -> Self {
        match e {
            EgressError::Refused(ref why) => Self::config(why.clone()).caused_by(e),
            unresolved => Self::transient(unresolved.to_string()).caused_by(unresolved),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_and_rate_limited_are_retried() {
        let retried: Vec<bool> = [
            ErrorClass::Config,
            ErrorClass::Auth,
            ErrorClass::NotFound,
            ErrorClass::RateLimited { retry_after: None },
            ErrorClass::Transient,
            ErrorClass::Permanent,
        ]
        .into_iter()
        .map(ErrorClass::is_retryable)
        .collect();
        assert_eq!(retried, [false, false, false, true, true, false]);
    }

    #[test]
    fn keeps_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = ConnectorError::transient("cannot read").caused_by(io).context("orders");
        assert_eq!(e.to_string(), "orders: cannot read");
        assert_eq!(std::error::Error::source(&e).map(|s| s.to_string()).as_deref(), Some("reset by peer"));
    }
}
