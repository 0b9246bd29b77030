//! Sending the log events of event streams (`user.first_named`, `delivery.dead_lettered`) to
//! the Slack channels their source's notification rules name: through the Web API with the
//! rule's bot token (sealed with the source) or `SLACK_TOKEN`, to the rule's channel or
//! `SLACK_CHANNEL`; or to the rule's incoming webhook (sealed too). Every worker looks for unsent
//! log events each second and claims a few (so workers share them and a dead worker's claim
//! expires); each is posted once to each of its channels, one message per second per channel,
//! waiting out Slack's 429 `Retry-After`. A failure is tried again later with growing waits, up
//! to [`MAX_ATTEMPTS`]; a message Slack refuses (an unknown channel) is not tried again. The
//! outcome is recorded on the log event.

use std::time::Duration;

use serde_json::Value as Json;
use syncline_core::{
    connector::ConnectorError,
    slack::{Pace, Slack, SlackError, Url},
};
use tokio::sync::watch;

use crate::{Services, connections::state, rounds};

/// How often a worker looks for log events to send.
const EVERY: Duration = Duration::from_secs(1);
/// Log events one worker claims at once.
const CLAIM: i64 = 20;
/// How long a claim lasts: longer than sending the claimed events takes.
const CLAIM_SECONDS: f64 = 120.0;
/// Tries of one log event before it is given up.
const MAX_ATTEMPTS: i32 = 10;
/// 429s one message waits out before its try counts as failed.
const RATE_LIMITED_TRIES: usize = 5;

/// Sends until `stop` turns true.
pub async fn send_until(services: &Services, stop: watch::Receiver<bool>) {
    let slack = Slack::new(services.connector.http.clone(), services.slack.api_url.clone());
    let pace = Pace::default();
    rounds::every(EVERY, stop, async || {
        if let Err(e) = send_claimed(services, &slack, &pace).await {
            tracing::warn!(error = %e.message, "could not send log events");
        }
    })
    .await
}

/// Claims unsent log events and sends each.
async fn send_claimed(services: &Services, slack: &Slack, pace: &Pace) -> Result<(), ConnectorError> {
    let client = services.pool.get().await.map_err(state)?;
    let claimed = client
        .query(
            "update event_log l set claimed_until = now() + make_interval(secs => $2), attempts = attempts + 1
             from (select e.id, s.name as source_name, coalesce(s.notifications, '[]') as rules,
                          s.notification_secrets
                   from event_log e left join event_sources s on s.id = e.source_id
                   where e.notified_at is null and (e.claimed_until is null or e.claimed_until < now())
                   order by e.id for update of e skip locked limit $1) c
             where l.id = c.id
             returning l.id, l.kind, l.payload, c.source_name, c.rules, l.attempts, c.notification_secrets",
            &[&CLAIM, &CLAIM_SECONDS],
        )
        .await
        .map_err(state)?;
    for row in claimed {
        let (id, kind, payload): (i64, String, Json) = (row.get(0), row.get(1), row.get(2));
        let (source, rules, attempts): (Option<String>, Json, i32) = (row.get(3), row.get(4), row.get(5));
        let sealed: Option<Vec<u8>> = row.get(6);
        let text = describe(&kind, &payload, source.as_deref().unwrap_or("a deleted source"));
        let mut sent = Ok(());
        match targets(services, &rules, sealed.as_deref(), &kind) {
            Ok(targets) => {
                for target in targets {
                    sent = post(services, slack, pace, &target, &text).await;
                    if sent.is_err() {
                        break;
                    }
                }
            }
            Err(refused) => sent = Err(refused),
        }
        let (done, error) = match sent {
            Ok(()) => (true, None),
            Err(e @ SlackError::Refused(_)) => (true, Some(e.to_string())),
            Err(e) => (attempts >= MAX_ATTEMPTS, Some(e.to_string())),
        };
        if let Some(error) = &error {
            tracing::warn!(log_event = id, %kind, %error, attempts, given_up = done, "a log event was not sent to Slack");
        }
        let wait = rounds::retry_wait(attempts, CLAIM_SECONDS);
        client
            .execute(
                "update event_log set notified_at = case when $2 then now() end, last_error = $3,
                        claimed_until = now() + make_interval(secs => $4)
                 where id = $1",
                &[&id, &done, &error, &wait],
            )
            .await
            .map_err(state)?;
    }
    Ok(())
}

/// Where a message goes.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A channel, through the Web API as the bot of `token`.
    Channel { token: String, channel: String },
    /// An incoming webhook.
    Webhook(String),
}

/// The targets of the rules of `rules` that take log events of `kind`, their secrets (a
/// token or a webhook URL each) unsealed from `sealed`; `SLACK_TOKEN` and `SLACK_CHANNEL`
/// stand in for what a rule leaves out.
fn targets(services: &Services, rules: &Json, sealed: Option<&[u8]>, kind: &str) -> Result<Vec<Target>, SlackError> {
    let secrets: Vec<Option<String>> = match sealed {
        None => vec![],
        Some(sealed) => {
            let opened =
                services.secrets.open(sealed).map_err(|e| SlackError::Refused(format!("rule secrets: {e}")))?;
            serde_json::from_slice(&opened).map_err(|e| SlackError::Refused(format!("rule secrets: {e}")))?
        }
    };
    let defaults = (services.slack.token.as_deref(), services.slack.channel.as_deref());
    Ok(rule_targets(rules, &secrets, kind, defaults))
}

/// [`targets`] once the secrets are open.
fn rule_targets(
    rules: &Json,
    secrets: &[Option<String>],
    kind: &str,
    (token, channel): (Option<&str>, Option<&str>),
) -> Vec<Target> {
    let mut targets = Vec::new();
    for (i, rule) in rules.as_array().into_iter().flatten().enumerate() {
        if !rule["events"].as_array().is_some_and(|events| events.iter().any(|e| e == kind)) {
            continue;
        }
        let secret = secrets.get(i).cloned().flatten();
        let target = match (rule["secret"].as_str(), secret) {
            (Some("webhook_url"), Some(url)) => Some(Target::Webhook(url)),
            (Some("token"), Some(token)) => rule["channel"]
                .as_str()
                .or(channel)
                .map(|channel| Target::Channel { token, channel: channel.to_owned() }),
            (_, _) => token
                .zip(rule["channel"].as_str().or(channel))
                .map(|(token, channel)| Target::Channel { token: token.to_owned(), channel: channel.to_owned() }),
        };
        if let Some(target) = target.filter(|t| !targets.contains(t)) {
            targets.push(target);
        }
    }
    targets
}

/// Posts `text` to `target` in its turn, waiting out rate limits a few times. A webhook URL
/// goes only where the egress policy lets connections go.
async fn post(services: &Services, slack: &Slack, pace: &Pace, target: &Target, text: &str) -> Result<(), SlackError> {
    let webhook = match target {
        Target::Webhook(url) => {
            let url = Url::parse(url).map_err(|e| SlackError::Refused(format!("webhook URL: {e}")))?;
            services.connector.allow_url(&url).await.map_err(|e| SlackError::Refused(e.message))?;
            Some(url)
        }
        Target::Channel { .. } => None,
    };
    let mut tries = 0;
    loop {
        let sent = match (target, webhook.as_ref()) {
            (Target::Channel { token, channel }, _) => {
                pace.turn(channel.as_str()).await;
                slack.post(token.as_str(), channel.as_str(), text).await
            }
            (Target::Webhook(key), Some(url)) => {
                pace.turn(key.as_str()).await;
                slack.post_to_webhook(url, text).await
            }
            (Target::Webhook(_), None) => unreachable!("a webhook target has its URL"),
        };
        match sent {
            Err(SlackError::RateLimited(after)) if tries < RATE_LIMITED_TRIES => {
                tries += 1;
                tokio::time::sleep(after).await;
            }
            sent => return sent,
        }
    }
}

/// The message of a log event.
fn describe(kind: &str, payload: &Json, source: &str) -> String {
    let text = |key: &str| payload[key].as_str().unwrap_or_default().to_owned();
    match kind {
        "user.first_named" => format!("New user: {} is {} (source {source})", text("user_id"), text("name")),
        "delivery.dead_lettered" => format!(
            "{} events of source {source} could not be delivered to schema {} and went to dead letters: {}",
            payload["events"],
            text("schema"),
            text("reason")
        ),
        other => format!("{other} (source {source}): {payload}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rules_pick_the_targets_of_a_kind() {
        let rules = json!([
            {"events": ["user.first_named"], "channel": "#polku"},
            {"events": ["user.first_named", "delivery.dead_lettered"]},
            {"events": ["delivery.dead_lettered"], "channel": "#ops", "secret": "token"},
            {"events": ["user.first_named"], "secret": "webhook_url"},
        ]);
        let secrets = [None, None, Some("xoxb-ops".to_owned()), Some("https://hooks.example/T/B/X".to_owned())];
        let channel = |token: &str, channel: &str| Target::Channel { token: token.into(), channel: channel.into() };
        assert_eq!(
            rule_targets(&rules, &secrets, "user.first_named", (Some("xoxb-env"), Some("#default"))),
            [
                channel("xoxb-env", "#polku"),
                channel("xoxb-env", "#default"),
                Target::Webhook("https://hooks.example/T/B/X".into())
            ]
        );
        assert_eq!(
            rule_targets(&rules, &secrets, "delivery.dead_lettered", (None, None)),
            [channel("xoxb-ops", "#ops")]
        );
        assert!(rule_targets(&json!([]), &[], "user.first_named", (Some("t"), Some("#c"))).is_empty());
    }

    #[test]
    fn messages_name_what_happened() {
        let named = describe("user.first_named", &json!({"user_id": "u1", "name": "Ada"}), "server");
        assert_eq!(named, "New user: u1 is Ada (source server)");
    }
}
