//! A bulk sync's schedules: the default one (`default_schedule`, id `default`) and additional
//! ones (`additional_schedules`, each running some schemas, possibly as a resync), kept in the
//! sync's spec with their ids and written to the `schedules` table; and the
//! `bulk_sync.schedules` routes, which speak camelCase.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use syncline_core::{
    bulk::{ResyncMode, StartOptions},
    schedule::{DEFAULT, Entry},
    sync::Schedule,
};
use uuid::Uuid;

use super::{invalid, stored_schemas};
use crate::{
    AppState,
    error::{ApiError, parse_body},
    extract::{Authorized, can},
    idempotency,
    routes::envelope,
    store::{self, StoreError, bulk_syncs::BulkSync},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(create).service(get_one).service(update).service(remove);
}

/// A schedule as a body gives it, in snake_case (bulk sync bodies) or camelCase (schedule
/// bodies).
#[derive(Deserialize)]
struct Body {
    id: Option<String>,
    frequency: Option<String>,
    minute: Option<String>,
    hour: Option<String>,
    #[serde(alias = "dayOfWeek")]
    day_of_week: Option<String>,
    #[serde(alias = "dayOfMonth")]
    day_of_month: Option<String>,
    month: Option<String>,
    schemas: Option<Vec<String>>,
    #[serde(alias = "selectiveMode")]
    selective_mode: Option<String>,
    #[serde(alias = "syncMode")]
    resync_mode: Option<String>,
}

/// One schedule of a bulk sync, as its spec keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BulkSchedule {
    pub id: String,
    #[serde(flatten)]
    pub when: Schedule,
    /// The schemas its runs cover (empty: every enabled one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync_mode: Option<ResyncMode>,
}

impl BulkSchedule {
    fn is_default(&self) -> bool {
        self.id == DEFAULT
    }

    /// The schedule as the `schedules` table keeps it, with the start options of its runs.
    pub fn entry(&self) -> Entry {
        let options =
            StartOptions { schemas: self.schemas.clone(), resync_mode: self.resync_mode, ..Default::default() };
        Entry {
            schedule_id: self.id.clone(),
            schedule: self.when.clone(),
            options: serde_json::to_value(options).expect("start options serialize"),
        }
    }

    /// The schedule as a bulk sync shows it (snake_case, without unset values).
    pub fn to_json(&self) -> Json {
        let mut shown = serde_json::to_value(self).expect("a schedule serializes");
        if let Json::Object(map) = &mut shown {
            map.retain(|_, v| !v.is_null());
            if !self.is_default() {
                map.insert("selective_mode".into(), json!("none"));
            }
        }
        shown
    }

    /// The schedule as the schedule routes show it (`BulkBulkSyncSchedule`, camelCase).
    fn to_wire(&self, sync_id: Uuid) -> Json {
        let resync = self.resync_mode.map(|m| serde_json::to_value(m).expect("a mode serializes"));
        json!({
            "id": self.id,
            "syncId": sync_id,
            "isDefault": self.is_default(),
            "frequency": self.when.frequency,
            "minute": self.when.minute,
            "hour": self.when.hour,
            "dayOfWeek": self.when.day_of_week,
            "dayOfMonth": self.when.day_of_month,
            "month": self.when.month,
            "schemas": self.schemas,
            "selectiveMode": "none",
            "syncMode": resync.unwrap_or_else(|| json!("normal")),
        })
    }
}

/// Checks the schedule at `field` of a body: when it runs (it must be able to), and for an
/// additional one which of the sync's `enabled` schemas it runs and how. The default schedule
/// takes no schemas and no resync mode. An additional schedule keeps the `id` it was given,
/// else gets a new one.
pub(super) fn check(value: &Json, field: &str, default: bool, enabled: &[String]) -> Result<BulkSchedule, ApiError> {
    let body: Body = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")).with_metadata(json!({ "field": field })))?;
    let when = Schedule {
        frequency: body.frequency,
        minute: body.minute,
        hour: body.hour,
        day_of_week: body.day_of_week,
        day_of_month: body.day_of_month,
        month: body.month,
        ..Schedule::default()
    };
    if when.frequency.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(&format!("{field}.frequency"), format!("{field}.frequency is required")));
    }
    when.check(field, true).map_err(|e| invalid(&e.field, e.message))?;
    if body.selective_mode.as_deref().is_some_and(|m| m != "none") {
        return Err(invalid(
            &format!("{field}.selective_mode"),
            format!("{field}.selective_mode is not supported: a run covers every field of its schemas (use none)"),
        ));
    }
    let resync_mode = match body.resync_mode.as_deref() {
        None | Some("normal") => None,
        Some(mode) => Some(serde_json::from_value(json!(mode)).map_err(|_| {
            invalid(
                &format!("{field}.resync_mode"),
                format!("{field}.resync_mode must be one of normal, refetch, resync, rebuild"),
            )
        })?),
    };
    let schemas = body.schemas.unwrap_or_default();
    if default && (resync_mode.is_some() || !schemas.is_empty()) {
        return Err(invalid(field, format!("{field} runs every enabled schema: add an additional schedule for some")));
    }
    for (j, schema) in schemas.iter().enumerate() {
        if !enabled.contains(schema) {
            return Err(invalid(
                &format!("{field}.schemas[{j}]"),
                format!("{schema:?} is not an enabled schema of the bulk sync"),
            ));
        }
    }
    let id = match (default, body.id.filter(|id| !id.is_empty() && id != DEFAULT)) {
        (true, _) => DEFAULT.to_owned(),
        (false, Some(id)) => id,
        (false, None) => Uuid::new_v4().to_string(),
    };
    Ok(BulkSchedule { id, when, schemas, resync_mode })
}

/// The schedules a bulk sync's spec keeps: the default one first.
pub(super) fn of_spec(spec: &Json) -> Result<Vec<BulkSchedule>, ApiError> {
    let malformed = |e: serde_json::Error| StoreError::Malformed { what: "bulk sync schedule", message: e.to_string() };
    let default: BulkSchedule = serde_json::from_value(spec["default_schedule"].clone()).map_err(malformed)?;
    let additional: Vec<BulkSchedule> = match &spec["additional_schedules"] {
        Json::Null => Vec::new(),
        listed => serde_json::from_value(listed.clone()).map_err(malformed)?,
    };
    Ok(std::iter::once(default).chain(additional).collect())
}

/// Stores `spec` as the spec of `sync`, with `schedules` (the default one first) in it and in
/// the `schedules` table.
pub(super) async fn save(
    state: &AppState,
    sync: &BulkSync,
    mut spec: Json,
    schedules: &[BulkSchedule],
) -> Result<BulkSync, ApiError> {
    spec["default_schedule"] = schedules[0].to_json();
    spec["additional_schedules"] = schedules[1..].iter().map(BulkSchedule::to_json).collect();
    let entries: Vec<Entry> = schedules.iter().map(BulkSchedule::entry).collect();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let saved = store::bulk_syncs::set_spec(&tx, (sync.organization_id, sync.id), &spec, Some(&entries))
        .await?
        .ok_or_else(|| ApiError::not_found("bulk_sync"))?;
    tx.commit().await?;
    Ok(saved)
}

#[derive(Deserialize)]
struct ScheduleBody {
    schedule: Option<Json>,
}

/// The schedule of a schedule body, checked; `id` is the schedule it replaces, if any.
async fn checked(state: &AppState, sync: &BulkSync, body: &[u8], id: Option<&str>) -> Result<BulkSchedule, ApiError> {
    let input: ScheduleBody = parse_body(body)?;
    let mut value = input.schedule.ok_or_else(|| invalid("schedule", "schedule is required".into()))?;
    value["id"] = json!(id);
    let enabled = stored_schemas(state, sync.id, Some(true)).await?;
    check(&value, "schedule", id == Some(DEFAULT), &enabled)
}

/// The position of schedule `id` among `schedules`; 404 when it has none.
fn position(schedules: &[BulkSchedule], id: &str) -> Result<usize, ApiError> {
    schedules.iter().position(|s| s.id == id).ok_or_else(|| ApiError::not_found("schedule"))
}

#[get("/bulk/syncs/{id}/schedules")]
async fn list(sync: Authorized<BulkSync, can::Read>) -> Result<HttpResponse, ApiError> {
    let schedules: Vec<Json> = of_spec(&sync.spec)?.iter().map(|s| s.to_wire(sync.id)).collect();
    Ok(envelope(json!(schedules)))
}

#[post("/bulk/syncs/{id}/schedules")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    sync: Authorized<BulkSync, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    idempotency::once(&state, &req, &sync.caller, &body, async {
        let mut schedules = of_spec(&sync.spec)?;
        let added = checked(&state, &sync, &body, None).await?;
        schedules.push(added.clone());
        save(&state, &sync, sync.spec.clone(), &schedules).await?;
        Ok(envelope(added.to_wire(sync.id)))
    })
    .await
}

#[get("/bulk/syncs/{id}/schedules/{schedule_id}")]
async fn get_one(
    sync: Authorized<BulkSync, can::Read>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let schedules = of_spec(&sync.spec)?;
    Ok(envelope(schedules[position(&schedules, &path.1)?].to_wire(sync.id)))
}

#[put("/bulk/syncs/{id}/schedules/{schedule_id}")]
async fn update(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Update>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let mut schedules = of_spec(&sync.spec)?;
    let at = position(&schedules, &path.1)?;
    schedules[at] = checked(&state, &sync, &body, Some(&path.1)).await?;
    save(&state, &sync, sync.spec.clone(), &schedules).await?;
    Ok(envelope(schedules[at].to_wire(sync.id)))
}

#[delete("/bulk/syncs/{id}/schedules/{schedule_id}")]
async fn remove(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Update>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let mut schedules = of_spec(&sync.spec)?;
    let at = position(&schedules, &path.1)?;
    if at == 0 {
        return Err(invalid(
            "schedule_id",
            "the default schedule cannot be deleted: set its frequency to manual instead".into(),
        ));
    }
    schedules.remove(at);
    save(&state, &sync, sync.spec.clone(), &schedules).await?;
    Ok(HttpResponse::NoContent().finish())
}
