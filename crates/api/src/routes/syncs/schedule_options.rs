//! `GET /api/syncs/schedules`: the schedule frequencies a model sync runs on, each with its
//! fields described JSON-Schema-like.

use actix_web::{HttpResponse, get};
use serde_json::{Map, Value as Json, json};
use syncline_core::schedule::{FREQUENCIES, Frequency};

use crate::{auth::Caller, routes::envelope};

/// What a schedule field holds.
fn field_schema(name: &str) -> Json {
    let cron = |what: &str| {
        json!({"type": "string", "description": format!(
            "{what}: a value, a list (1,15), a range (1-5) or a step (*/10); * is every one"
        )})
    };
    let ids = |what: &str| json!({"type": "array", "items": {"type": "string", "format": "uuid"}, "description": what});
    match name {
        "minute" => cron("The minute (0-59)"),
        "hour" => cron("The hour (0-23, UTC)"),
        "day_of_month" => cron("The day of the month (1-31)"),
        "month" => cron("The month (1-12 or jan-dec)"),
        "day_of_week" => cron("The day of the week (0-7 or sun-sat; 0 and 7 are Sunday)"),
        "schedules" => json!({
            "type": "array", "minItems": 1,
            "description": "The schedules combined, each of frequency manual, continuous, hourly, daily, weekly, custom or builder",
            "items": {"type": "object", "required": ["frequency"]},
        }),
        "run_after" => json!({
            "type": "object",
            "description": "The syncs to run after (at least one)",
            "properties": {"sync_ids": ids("Model syncs"), "bulk_sync_ids": ids("Bulk syncs")},
        }),
        "run_after_success_only" => {
            json!({"type": "boolean", "description": "Whether only completed runs of the upstreams count"})
        }
        _ => json!({"type": "string"}),
    }
}

/// The frequency's fields, as a JSON Schema of the schedule object.
fn configuration(frequency: &Frequency) -> Json {
    let properties: Map<String, Json> = frequency
        .fields
        .iter()
        .map(|(name, default)| {
            let mut schema = field_schema(name);
            match *default {
                "" => {}
                "false" => schema["default"] = json!(false),
                default => schema["default"] = json!(default),
            }
            ((*name).to_owned(), schema)
        })
        .collect();
    let required: Vec<&str> = frequency.fields.iter().filter(|(_, d)| d.is_empty()).map(|(name, _)| *name).collect();
    json!({"type": "object", "properties": properties, "required": required})
}

#[get("/syncs/schedules")]
pub(super) async fn schedules(_caller: Caller) -> HttpResponse {
    let options: Vec<Json> = FREQUENCIES
        .iter()
        .map(|f| {
            json!({"frequency": f.name, "label": f.label, "description": f.description, "configuration": configuration(f)})
        })
        .collect();
    envelope(json!({ "schedule_options": options }))
}
