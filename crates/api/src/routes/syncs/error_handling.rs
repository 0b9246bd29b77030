//! A model sync's error handling (`model_sync.error_handling`): whether the records the
//! destination rejected are sent again unchanged on the next run (`auto_retry_record_errors`,
//! a column of the sync the engine reads; when off they wait until they change), who gets its
//! error emails beside the organization's global error subscribers (`subscribers`, which need
//! `SMTP_URL`), and whether its first run with record errors is emailed too
//! (`notify_on_record_errors`). Syncline raises no warnings, so `warning_notifications` is
//! refused naming the field.

use actix_web::{HttpRequest, HttpResponse, get, put, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    AppState,
    error::{ApiError, parse_body},
    extract::{Authorized, can},
    idempotency,
    routes::{envelope, notifications},
    store::{self, syncs::ModelSync},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_one).service(update);
}

/// `SyncErrorHandling` of `sync`.
fn to_json(sync: &ModelSync) -> Json {
    json!({
        "auto_retry_record_errors": sync.auto_retry_record_errors,
        "notify_on_record_errors": sync.notify_on_record_errors,
        "warning_notifications": false,
        "subscribers": sync.error_subscribers,
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

/// Refuses warning notifications: Syncline raises no warnings to send.
fn check(input: &Body) -> Result<(), ApiError> {
    match input.warning_notifications {
        Some(true) => Err(ApiError::unprocessable(
            "warning_notifications: Syncline raises no warnings to notify about; leave it out or false",
        )
        .with_metadata(json!({ "field": "warning_notifications" }))),
        _ => Ok(()),
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
        let subscribers = match input.subscribers {
            Some(subscribers) => notifications::subscribers(&state, subscribers, "subscribers")?,
            None => sync.error_subscribers.clone(),
        };
        let handling = store::syncs::ErrorHandling {
            auto_retry_record_errors: input.auto_retry_record_errors.unwrap_or(sync.auto_retry_record_errors),
            notify_on_record_errors: input.notify_on_record_errors.unwrap_or(sync.notify_on_record_errors),
            subscribers: &subscribers,
        };
        let client = state.pool.get().await?;
        let updated = store::syncs::set_error_handling(&client, (sync.organization_id, sync.id), &handling).await?;
        Ok(envelope(to_json(&updated.ok_or_else(|| ApiError::not_found("sync"))?)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_notifications_are_refused_naming_the_field() {
        let body = |value: Json| -> Body { serde_json::from_value(value).expect("a body") };
        assert!(check(&body(json!({"notify_on_record_errors": true, "warning_notifications": false}))).is_ok());
        let e = check(&body(json!({"warning_notifications": true}))).expect_err("refused");
        assert_eq!((e.status.as_u16(), e.metadata), (422, json!({"field": "warning_notifications"})));
    }
}
