//! Posting to Slack as its documentation describes, through the Web API (`chat.postMessage`
//! with a bot token: errors come as HTTP 200 with `{"ok": false, "error": …}`) or an incoming
//! webhook (errors are HTTP statuses with a plain-text reason); a caller over the rate limit
//! gets 429 with `Retry-After` seconds. Slack allows about one message per second per channel:
//! [`Pace`] spaces a process's messages so.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

pub use reqwest::Url;
use serde_json::{Value as Json, json};

/// Why a message was not posted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// Over the rate limit: try again after this long.
    #[error("Slack is rate limiting (retry after {0:?})")]
    RateLimited(Duration),
    /// Slack could not be reached or failed (may clear by itself).
    #[error("Slack failed: {0}")]
    Unavailable(String),
    /// Slack refused the message (an unknown channel, a revoked token): trying again will not help.
    #[error("Slack refused the message: {0}")]
    Refused(String),
}

/// The longest wait a 429 is honoured with; a longer `Retry-After` is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Slack's Web API and incoming webhooks.
pub struct Slack {
    http: reqwest::Client,
    api: Url,
}

impl Slack {
    /// Slack at Web API `api` (`https://slack.com/api/`), called with `http`.
    pub fn new(http: reqwest::Client, api: Url) -> Self {
        Self { http, api }
    }

    /// Posts `text` to `channel` (an id or a `#name`) as the bot whose token is `token`.
    pub async fn post(&self, token: &str, channel: &str, text: &str) -> Result<(), SlackError> {
        let url = self.api.join("chat.postMessage").map_err(|e| SlackError::Refused(e.to_string()))?;
        let request = self.http.post(url).bearer_auth(token).json(&json!({ "channel": channel, "text": text }));
        let response = sent(request).await?;
        let body: Json = response.json().await.map_err(|e| SlackError::Unavailable(e.to_string()))?;
        match (body["ok"].as_bool(), body["error"].as_str()) {
            (Some(true), _) => Ok(()),
            (_, Some("ratelimited" | "rate_limited")) => Err(SlackError::RateLimited(Duration::from_secs(1))),
            (_, Some(error @ ("internal_error" | "fatal_error" | "service_unavailable"))) => {
                Err(SlackError::Unavailable(error.to_owned()))
            }
            (_, error) => Err(SlackError::Refused(error.unwrap_or("no answer").to_owned())),
        }
    }

    /// Posts `text` to the incoming webhook `url`.
    pub async fn post_to_webhook(&self, url: &Url, text: &str) -> Result<(), SlackError> {
        let response = sent(self.http.post(url.clone()).json(&json!({ "text": text }))).await?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => {
                let reason = response.text().await.unwrap_or_default();
                Err(SlackError::Refused(format!("HTTP {status}: {}", reason.trim())))
            }
        }
    }
}

/// The answer to `request`, unless it is a rate limit (429, with its `Retry-After`) or a
/// failure of Slack's (no answer, a 5xx).
async fn sent(request: reqwest::RequestBuilder) -> Result<reqwest::Response, SlackError> {
    let response = request.send().await.map_err(|e| SlackError::Unavailable(e.to_string()))?;
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(1), Duration::from_secs);
        return Err(SlackError::RateLimited(after.min(MAX_RETRY_AFTER)));
    }
    if status.is_server_error() {
        return Err(SlackError::Unavailable(format!("HTTP {status}")));
    }
    Ok(response)
}

/// Spaces messages to each channel (or webhook) [`Pace::SPACING`] apart within this process.
#[derive(Default)]
pub struct Pace(Mutex<HashMap<String, Instant>>);

impl Pace {
    /// Slack's pace for one channel.
    pub const SPACING: Duration = Duration::from_secs(1);

    /// Waits until a message may go to `channel`, and books its turn.
    pub async fn turn(&self, channel: &str) {
        let wait = {
            let mut next = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let at = next.get(channel).copied().filter(|at| *at > now).unwrap_or(now);
            next.insert(channel.to_owned(), at + Self::SPACING);
            at - now
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_channel_gets_one_message_a_second() {
        let pace = Pace::default();
        let started = tokio::time::Instant::now();
        pace.turn("#a").await;
        pace.turn("#b").await;
        assert_eq!(started.elapsed(), Duration::ZERO, "channels do not wait for each other");
        pace.turn("#a").await;
        pace.turn("#a").await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
