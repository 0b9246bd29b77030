//! What an event source is doing, for operators and the UI's event debugger: the events it
//! accepted; for each route, what it delivered, dropped as duplicates and dead-lettered, and
//! its lag (how long the oldest event it has not delivered yet has waited); and a live sample
//! of the source's newest events (of the last hour, at most 100).

use actix_web::{HttpResponse, get, web};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::events::store::{self as events, StoredEvent};

use super::envelope;
use crate::{
    AppState,
    error::ApiError,
    extract::{Authorized, can},
    store::{self, event_sources::EventSource},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(activity);
}

/// Events a sample shows at most, and by default.
const MAX_SAMPLE: i64 = 100;
const SAMPLE: i64 = 20;

#[derive(Deserialize)]
struct ActivityQuery {
    sample: Option<i64>,
}

fn sampled(event: &StoredEvent) -> Json {
    let message: Json = serde_json::from_slice(&event.message).unwrap_or(Json::Null);
    json!({"message_id": event.message_id, "received_at": event.received_at, "message": message})
}

#[get("/event_sources/{id}/activity")]
async fn activity(
    state: web::Data<AppState>,
    source: Authorized<EventSource, can::Read>,
    query: web::Query<ActivityQuery>,
) -> Result<HttpResponse, ApiError> {
    let wanted = query.sample.unwrap_or(SAMPLE).clamp(0, MAX_SAMPLE);
    let mut client = state.pool.get().await?;
    let (accepted, last_received_at) = events::accepted(&mut client, source.id).await?;
    let partitions = events::partitions(&client).await?;
    let now = Utc::now();
    let mut routes = Vec::new();
    for route in store::event_routes::list(&client, source.id).await? {
        let cursors = store::event_routes::cursors(&client, route.id).await?;
        let mut oldest = None;
        for partition in &partitions {
            let after = cursors.get(partition).copied().unwrap_or(0);
            let next = events::read_after(&client, *partition, source.id, after, 1).await?;
            oldest = next.iter().map(|e| e.received_at).chain(oldest).min();
        }
        let lag = oldest.map_or(0.0, |at| (now - at).num_milliseconds().max(0) as f64 / 1000.0);
        routes.push(json!({
            "id": route.id,
            "layout": route.layout,
            "schema": route.schema,
            "counts": {
                "delivered": route.delivered, "deduplicated": route.deduplicated, "filtered": route.filtered,
                "dead_lettered": route.dead_lettered,
            },
            "delivered_at": route.delivered_at,
            "pending": oldest.is_some(),
            "lag_seconds": lag,
        }));
    }
    let mut sample = Vec::new();
    for partition in partitions.iter().rev() {
        let room = wanted - sample.len() as i64;
        if room <= 0 {
            break;
        }
        sample.extend(events::newest(&client, *partition, source.id, now - Duration::hours(1), room).await?);
    }
    Ok(envelope(json!({
        "accepted": accepted,
        "last_received_at": last_received_at,
        "routes": routes,
        "sample": sample.iter().map(sampled).collect::<Vec<_>>(),
    })))
}
