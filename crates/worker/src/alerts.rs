//! Sync error emails over SMTP (`SMTP_URL`, `SMTP_FROM`): an execution event that changes a
//! sync's state — its first failure, its recovery, its first run with record errors (migration
//! V24 marks it), and an execution running longer than `LONGSYNC_THRESHOLD` minutes — goes to the
//! organization's global error subscribers and the sync's own (record errors only for a model
//! sync that asks for them). One email per event, never one per
//! failing run. Every worker looks for unsent alerts each second and claims a few; a failure is
//! tried again later with growing waits, up to [`MAX_ATTEMPTS`].

use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::Mailbox, message::header::ContentType,
};
use serde_json::Value as Json;
use syncline_core::{config::SmtpSettings, connector::ConnectorError};
use tokio::sync::watch;

use crate::{Services, connections::state, rounds};

/// How often a worker looks for alerts to send.
const EVERY: Duration = Duration::from_secs(1);
/// Alerts one worker claims at once.
const CLAIM: i64 = 20;
/// How long a claim lasts: longer than sending the claimed alerts takes.
const CLAIM_SECONDS: f64 = 120.0;
/// Tries of one alert before it is given up.
const MAX_ATTEMPTS: i32 = 8;
/// The longest one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends until `stop` turns true; nothing without `SMTP_URL`.
pub async fn send_until(services: &Services, stop: watch::Receiver<bool>) {
    let Some(smtp) = &services.smtp else { return };
    let from: Mailbox = match smtp.from.parse() {
        Ok(from) => from,
        Err(e) => {
            tracing::error!(error = %e, "SMTP_FROM is not an address: no sync error emails are sent");
            return;
        }
    };
    let mailer = match mailer(smtp) {
        Ok(mailer) => mailer,
        Err(e) => {
            tracing::error!(error = %e, "SMTP_URL cannot be used: no sync error emails are sent");
            return;
        }
    };
    let sender = Sender { mailer, from };
    rounds::every(EVERY, stop, async || {
        if let Some(threshold) = services.long_sync
            && let Err(e) = note_long_runs(services, threshold).await
        {
            tracing::warn!(error = %e.message, "could not look for long runs");
        }
        if let Err(e) = send_claimed(services, &sender).await {
            tracing::warn!(error = %e.message, "could not send sync error emails");
        }
    })
    .await
}

/// Where emails go out, and from whom.
struct Sender {
    mailer: Mailer,
    from: Mailbox,
}

type Mailer = AsyncSmtpTransport<Tokio1Executor>;

fn mailer(smtp: &SmtpSettings) -> Result<Mailer, lettre::transport::smtp::Error> {
    Ok(AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp.url.as_str())?.timeout(Some(SMTP_TIMEOUT)).build())
}

/// Writes a `long_running` alert for each execution running longer than `threshold` that has
/// none yet.
async fn note_long_runs(services: &Services, threshold: Duration) -> Result<(), ConnectorError> {
    let client = services.pool.get().await.map_err(state)?;
    client
        .execute(
            "insert into events (organization_id, type, payload, alert)
             select x.organization_id, case x.kind when 'model_sync' then 'sync' else 'bulk_sync' end || '.long_running',
                    jsonb_build_object('execution_id', x.id, 'organization_id', x.organization_id,
                                       'sync_id', x.subject_id, 'sync_name', coalesce(m.name, b.name),
                                       'started_at', x.started_at, 'minutes', $1::float8 / 60),
                    'long_running'
             from executions x
             left join model_syncs m on x.kind = 'model_sync' and m.id = x.subject_id
             left join bulk_syncs b on x.kind = 'bulk_sync' and b.id = x.subject_id
             where x.status = 'running' and x.kind in ('model_sync', 'bulk_sync')
               and x.started_at < now() - make_interval(secs => $1)
             on conflict do nothing",
            &[&threshold.as_secs_f64()],
        )
        .await
        .map_err(state)?;
    Ok(())
}

/// Claims unsent alerts and sends each to its recipients.
async fn send_claimed(services: &Services, sender: &Sender) -> Result<(), ConnectorError> {
    let client = services.pool.get().await.map_err(state)?;
    let claimed = client
        .query(
            "update events e set email_claimed_until = now() + make_interval(secs => $2), email_attempts = email_attempts + 1
             from (select e.id,
                          (select coalesce(jsonb_agg(distinct email), '[]') from (
                               select jsonb_array_elements_text(o.error_subscribers) as email
                               union all
                               select jsonb_array_elements_text(s.error_subscribers) from model_syncs s
                               where s.id = e.subject_id and e.type like 'sync.%'
                               union all
                               select jsonb_array_elements_text(coalesce(b.spec #> '{error_handling,subscribers}', '[]'))
                               from bulk_syncs b where b.id = e.subject_id and e.type like 'bulk_sync.%') r
                           where e.alert <> 'record_errors'
                              or exists (select from model_syncs s where s.id = e.subject_id and e.type like 'sync.%'
                                         and s.notify_on_record_errors)) as recipients
                   from events e join organizations o on o.id = e.organization_id
                   where e.alert is not null and e.emailed_at is null
                     and (e.email_claimed_until is null or e.email_claimed_until < now())
                   order by e.id for update of e skip locked limit $1) c
             where e.id = c.id
             returning e.id, e.type, e.alert, e.payload, c.recipients, e.email_attempts",
            &[&CLAIM, &CLAIM_SECONDS],
        )
        .await
        .map_err(state)?;
    for row in claimed {
        let (id, event_type, alert): (uuid::Uuid, String, String) = (row.get(0), row.get(1), row.get(2));
        let (payload, recipients, attempts): (Json, Json, i32) = (row.get(3), row.get(4), row.get(5));
        let recipients: Vec<&str> = recipients.as_array().into_iter().flatten().filter_map(Json::as_str).collect();
        let sent = match recipients.is_empty() {
            true => Ok(()),
            false => send(sender, &recipients, &compose(&alert, &event_type, &payload, services)).await,
        };
        let (done, error) = match sent {
            Ok(()) => (true, None),
            Err(e) => (attempts >= MAX_ATTEMPTS, Some(e)),
        };
        if let Some(error) = &error {
            tracing::warn!(event = %id, %alert, %error, attempts, given_up = done, "a sync error email was not sent");
        }
        let wait = rounds::retry_wait(attempts, CLAIM_SECONDS);
        client
            .execute(
                "update events set emailed_at = case when $2 then now() end, email_error = $3,
                        email_claimed_until = now() + make_interval(secs => $4)
                 where id = $1",
                &[&id, &done, &error, &wait],
            )
            .await
            .map_err(state)?;
    }
    Ok(())
}

/// An email's subject and text.
struct Email {
    subject: String,
    text: String,
}

/// The email of an alert about the execution `payload` describes.
fn compose(alert: &str, event_type: &str, payload: &Json, services: &Services) -> Email {
    let field = |name: &str| payload[name].as_str().unwrap_or_default().to_owned();
    let (sync, execution) = (field("sync_name"), field("execution_id"));
    let (what, syncs) = match event_type.starts_with("bulk_sync.") {
        true => ("Bulk sync", "bulk/syncs"),
        false => ("Sync", "syncs"),
    };
    let path = format!("api/{syncs}/{}/executions/{execution}", field("sync_id"));
    let link = services.public_url.join(&path).map(|u| u.to_string()).unwrap_or_default();
    let (subject, summary) = match alert {
        "failed" => (format!("{what} \"{sync}\" failed"), format!("failed: {}", field("error"))),
        "recovered" => (format!("{what} \"{sync}\" recovered"), "completed again after failing".to_owned()),
        "long_running" => (
            format!("{what} \"{sync}\" has been running for over {} minutes", payload["minutes"]),
            format!("has been running since {}", field("started_at")),
        ),
        _ => (
            format!("{what} \"{sync}\" completed with record errors"),
            format!("completed, but {} records were rejected: {}", payload["number_of_errors"], field("error")),
        ),
    };
    let text = format!("{what} \"{sync}\", execution {execution}, {summary}\n\n{link}\n");
    Email { subject: format!("Syncline: {subject}"), text }
}

/// Sends `email` to `recipients`.
async fn send(sender: &Sender, recipients: &[&str], email: &Email) -> Result<(), String> {
    let mut message =
        Message::builder().from(sender.from.clone()).subject(&email.subject).header(ContentType::TEXT_PLAIN);
    for recipient in recipients {
        message = message.to(recipient.parse().map_err(|e| format!("{recipient}: {e}"))?);
    }
    let message = message.body(email.text.clone()).map_err(|e| e.to_string())?;
    sender.mailer.send(message).await.map(|_| ()).map_err(|e| e.to_string())
}
