//! A model sync's error handling (`model_sync.error_handling`): whether the records the
//! destination rejected are sent again unchanged on the next run (`auto_retry_record_errors`,
//! a column of the sync the engine reads; when off they wait until they change). Notifications
//! are not built yet, so asking for any is refused naming the field; subscribers are still
//! checked as email addresses.

use actix_web::{HttpRequest, HttpResponse, get, put, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    AppState,
    error::{ApiError, parse_body},
    extract::{Authorized, can},
    idempotency, input,
    routes::envelope,
    store::{self, syncs::ModelSync},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_one).service(update);
}

/// `SyncErrorHandling` of `sync`.
fn to_json(sync: &ModelSync) -> Json {
    json!({
        "auto_retry_record_errors": sync.auto_retry_record_errors,
        "notify_on_record_errors": false,
        "warning_notifications": false,
        "subscribers": [],
    })
}

#[get("/syncs/{id}/error-handling")]
async fn get_one(sync: Authorized<ModelSync, can::Read>) -> HttpResponse {
    envelope(to_json(&sync))
}

/// An update: an omitted (or null) setting stays as it is.
#[derive(Deserialize)]
struct Body {
    auto_retry_record_errors: Option<bool>,
    notify_on_record_errors: Option<bool>,
    warning_notifications: Option<bool>,
    subscribers: Option<Vec<String>>,
}

/// 422 naming `field`, which asks for notifications.
fn no_notifications(field: &str) -> ApiError {
    ApiError::unprocessable(format!(
        "{field}: notifications are not available yet (email delivery is not built); leave it out, false or empty"
    ))
    .with_metadata(json!({ "field": field }))
}

/// Refuses what the settings ask for that cannot be honoured: any notification.
fn check(input: &Body) -> Result<(), ApiError> {
    let subscribers = input.subscribers.as_deref().unwrap_or_default();
    for (i, subscriber) in subscribers.iter().enumerate() {
        input::email(subscriber, &format!("subscribers[{i}]"))?;
    }
    let asked = [
        ("notify_on_record_errors", input.notify_on_record_errors == Some(true)),
        ("warning_notifications", input.warning_notifications == Some(true)),
        ("subscribers", !subscribers.is_empty()),
    ];
    match asked.into_iter().find(|(_, asked)| *asked) {
        Some((field, _)) => Err(no_notifications(field)),
        None => Ok(()),
    }
}

#[put("/syncs/{id}/error-handling")]
async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    sync: Authorized<ModelSync, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    idempotency::once(&state, &req, &sync.caller, &body, async {
        let input: Body = parse_body(&body)?;
        check(&input)?;
        let auto_retry = input.auto_retry_record_errors.unwrap_or(sync.auto_retry_record_errors);
        let client = state.pool.get().await?;
        let updated = store::syncs::set_auto_retry(&client, (sync.organization_id, sync.id), auto_retry).await?;
        Ok(envelope(to_json(&updated.ok_or_else(|| ApiError::not_found("sync"))?)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Json) -> Body {
        serde_json::from_value(value).expect("a body")
    }

    fn refused(value: Json) -> (String, Json) {
        let e = check(&body(value)).expect_err("refused");
        assert_eq!(e.status.as_u16(), 422);
        (e.message, e.metadata)
    }

    #[test]
    fn notifications_are_refused_naming_the_field() {
        assert!(check(&body(json!({"auto_retry_record_errors": false}))).is_ok());
        let off = json!({"notify_on_record_errors": false, "warning_notifications": null, "subscribers": []});
        assert!(check(&body(off)).is_ok(), "asking for no notification is honoured");
        for field in ["notify_on_record_errors", "warning_notifications"] {
            let (message, metadata) = refused(json!({ field: true }));
            assert!(message.contains("notifications are not available yet"), "{message}");
            assert_eq!(metadata, json!({ "field": field }));
        }
        let (_, metadata) = refused(json!({"subscribers": ["ops@example.com"]}));
        assert_eq!(metadata, json!({"field": "subscribers"}));
    }

    #[test]
    fn subscribers_must_be_email_addresses() {
        let (message, metadata) = refused(json!({"subscribers": ["ops@example.com", "not an address"]}));
        assert_eq!(message, "subscribers[1] must be an email address");
        assert_eq!(metadata, json!({"field": "subscribers[1]"}));
    }
}
