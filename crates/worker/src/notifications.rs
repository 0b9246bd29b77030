//! Sending the log events of event streams (`user.first_named`, `delivery.dead_lettered`) to
//! the Slack channels their source's notification rules name. Every worker looks for unsent
//! log events each second and claims a few (so workers share them and a dead worker's claim
//! expires); each is posted once to each of its channels, one message per second per channel,
//! waiting out Slack's 429 `Retry-After`. A failure is tried again later with growing waits, up
//! to [`MAX_ATTEMPTS`]; a message Slack refuses (an unknown channel) is not tried again. The
//! outcome is recorded on the log event.

use std::time::Duration;

use serde_json::Value as Json;
use syncline_core::{
    connector::ConnectorError,
    slack::{Pace, Slack, SlackError},
};
use tokio::sync::watch;

use crate::{Services, connections::state};

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

/// Sends until `stop` turns true; does nothing without `SLACK_TOKEN`.
pub async fn send_until(services: &Services, mut stop: watch::Receiver<bool>) {
    let Some(token) = services.slack.token.clone() else { return };
    let slack = Slack::new(services.connector.http.clone(), services.slack.api_url.clone(), token);
    let pace = Pace::default();
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = async || {
        interval.tick().await;
        if let Err(e) = send_claimed(services, &slack, &pace).await {
            tracing::warn!(error = %e.message, "could not send log events");
        }
    };
    loop {
        // A round cut short leaves its claims to expire: their log events are sent again.
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = round() => {}
        }
    }
}

/// Claims unsent log events and sends each.
async fn send_claimed(services: &Services, slack: &Slack, pace: &Pace) -> Result<(), ConnectorError> {
    let client = services.pool.get().await.map_err(state)?;
    let claimed = client
        .query(
            "update event_log l set claimed_until = now() + make_interval(secs => $2), attempts = attempts + 1
             from (select e.id, s.name as source_name, coalesce(s.notifications, '[]') as rules
                   from event_log e left join event_sources s on s.id = e.source_id
                   where e.notified_at is null and (e.claimed_until is null or e.claimed_until < now())
                   order by e.id for update of e skip locked limit $1) c
             where l.id = c.id
             returning l.id, l.kind, l.payload, c.source_name, c.rules, l.attempts",
            &[&CLAIM, &CLAIM_SECONDS],
        )
        .await
        .map_err(state)?;
    for row in claimed {
        let (id, kind, payload): (i64, String, Json) = (row.get(0), row.get(1), row.get(2));
        let (source, rules, attempts): (Option<String>, Json, i32) = (row.get(3), row.get(4), row.get(5));
        let text = describe(&kind, &payload, source.as_deref().unwrap_or("a deleted source"));
        let mut sent = Ok(());
        for channel in channels(&rules, &kind, services.slack.channel.as_deref()) {
            sent = post(slack, pace, &channel, &text).await;
            if sent.is_err() {
                break;
            }
        }
        let (done, error) = match sent {
            Ok(()) => (true, None),
            Err(e @ SlackError::Refused(_)) => (true, Some(e.to_string())),
            Err(e) => (attempts >= MAX_ATTEMPTS, Some(e.to_string())),
        };
        if let Some(error) = &error {
            tracing::warn!(log_event = id, %kind, %error, attempts, given_up = done, "a log event was not sent to Slack");
        }
        // Tried again after 2^attempts seconds (at most the claim).
        let wait = f64::from(2_i32.saturating_pow(attempts as u32)).min(CLAIM_SECONDS);
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

/// Posts `text` to `channel` in its turn, waiting out rate limits a few times.
async fn post(slack: &Slack, pace: &Pace, channel: &str, text: &str) -> Result<(), SlackError> {
    let mut tries = 0;
    loop {
        pace.turn(channel).await;
        match slack.post(channel, text).await {
            Err(SlackError::RateLimited(after)) if tries < RATE_LIMITED_TRIES => {
                tries += 1;
                tokio::time::sleep(after).await;
            }
            sent => return sent,
        }
    }
}

/// The channels of `rules` that take log events of `kind` (`default` for rules naming none).
fn channels(rules: &Json, kind: &str, default: Option<&str>) -> Vec<String> {
    let mut channels: Vec<String> = rules
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| rule["events"].as_array().is_some_and(|events| events.iter().any(|e| e == kind)))
        .filter_map(|rule| rule["channel"].as_str().or(default).map(str::to_owned))
        .collect();
    channels.dedup();
    channels
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
    fn rules_pick_the_channels_of_a_kind() {
        let rules = json!([
            {"events": ["user.first_named"], "channel": "#polku"},
            {"events": ["user.first_named", "delivery.dead_lettered"]},
            {"events": ["delivery.dead_lettered"], "channel": "#ops"},
        ]);
        assert_eq!(channels(&rules, "user.first_named", Some("#default")), ["#polku", "#default"]);
        assert_eq!(channels(&rules, "delivery.dead_lettered", None), ["#ops"]);
        assert!(channels(&json!([]), "user.first_named", Some("#default")).is_empty());
    }

    #[test]
    fn messages_name_what_happened() {
        let named = describe("user.first_named", &json!({"user_id": "u1", "name": "Ada"}), "server");
        assert_eq!(named, "New user: u1 is Ada (source server)");
    }
}
