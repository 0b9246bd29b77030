//! The schemas of a bulk sync (`bulk_sync.schemas`): list, get, update (one schema's whole
//! configuration), patch (several schemas, each only in what it gives) and cancel (one schema
//! of the execution in progress, which the engine stops).

use actix_web::{HttpResponse, get, patch, post, put, web};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use syncline_core::{
    bulk::StartOptions,
    executions::{ACTIVE, BULK_SYNC},
};

use super::{
    invalid, schedules,
    selection::{self, Writing},
    stored_schemas, writing,
};
use crate::{
    AppState,
    error::{ApiError, parse_body},
    extract::{Authorized, can},
    routes::{
        envelope,
        schemas::catalog::{self, View},
    },
    store::{self, bulk_schemas::BulkSchema, bulk_syncs::BulkSync, executions::Execution},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(patch_many).service(get_one).service(update).service(cancel);
}

/// `BulkSchemaListItem`, without its fields.
fn list_item(schema: &BulkSchema, writing: Writing) -> Json {
    let config = &schema.config;
    json!({
        "id": schema.schema_id,
        "enabled": schema.enabled,
        "output_name": config.output_name(&schema.schema_id, writing.normalize),
        "user_output_name": config.user_output_name,
        "partition_key": config.partition_key,
        "tracking_field": config.tracking_field,
        "data_cutoff_timestamp": null,
        "disable_data_cutoff": false,
        "history_enabled": false,
        "destination_history_output_name": null,
    })
}

/// `BulkSchema`: the list item with its fields (every field of the source's cached schema,
/// those the configuration does not list as `automatically_add_new_fields` says; the configured
/// ones when the catalog has no such schema) and `filters` (none).
fn to_json(schema: &BulkSchema, view: Option<&View>, writing: Writing) -> Json {
    let configured = &schema.config.fields;
    let field = |id: &str| {
        let selected = configured.iter().find(|f| f.id() == id);
        let enabled = match selected {
            Some(f) => f.enabled(),
            None => schema.config.adds_new_fields(writing.new_fields),
        };
        let user_output_name = selected.and_then(|f| f.output_name());
        json!({
            "id": id,
            "enabled": enabled,
            "obfuscated": false,
            "output_name": writing.column(id, user_output_name),
            "user_output_name": user_output_name,
        })
    };
    let fields: Vec<Json> = match view.and_then(|v| v.catalog.stream(&schema.schema_id)) {
        Some(stream) => stream.fields.iter().map(|f| field(&f.name)).collect(),
        None => configured.iter().map(|f| field(f.id())).collect(),
    };
    let mut shown = list_item(schema, writing);
    shown["fields"] = json!(fields);
    shown["filters"] = json!([]);
    shown
}

/// Schema `schema_id` of `sync`; 404 when the sync does not replicate it.
async fn configured(state: &AppState, sync: &BulkSync, schema_id: &str) -> Result<BulkSchema, ApiError> {
    let client = state.pool.get().await?;
    store::bulk_schemas::get(&client, sync.id, schema_id).await?.ok_or_else(|| ApiError::not_found("schema"))
}

/// The source's schemas, for checking a change.
async fn source_view(state: &AppState, sync: &BulkSync) -> Result<View, ApiError> {
    let client = state.pool.get().await?;
    let source = store::connections::get(&client, sync.organization_id, sync.source_connection_id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection"))?;
    drop(client);
    catalog::load(state, &source).await
}

/// Stores `changed` schemas of `sync` (`item(n)` names the `n`th in errors) once every schema
/// still writes its own table and none that a schedule runs is disabled; answers them as
/// `BulkSchema`s.
async fn save(
    state: &AppState,
    sync: &BulkSync,
    changed: Vec<BulkSchema>,
    (view, item): (&View, fn(usize) -> String),
) -> Result<Vec<Json>, ApiError> {
    let writing = writing(sync)?;
    let scheduled = schedules::of_spec(&sync.spec)?;
    for (n, schema) in changed.iter().enumerate().filter(|(_, s)| !s.enabled) {
        if let Some(schedule) = scheduled.iter().find(|s| s.schemas.contains(&schema.schema_id)) {
            return Err(invalid(
                &selection::at(&item(n), "enabled"),
                format!("{} is run by schedule {}: take it out of the schedule first", schema.schema_id, schedule.id),
            ));
        }
    }
    let mut client = state.pool.get().await?;
    let mut all = store::bulk_schemas::list(&client, sync.id, None).await?;
    all.retain(|s| !changed.iter().any(|c| c.schema_id == s.schema_id));
    let unchanged = all.len();
    all.extend(changed.iter().cloned());
    selection::check_distinct(&all, writing.normalize, |i| match i.checked_sub(unchanged) {
        Some(n) => selection::at(&item(n), "user_output_name"),
        None => "user_output_name".into(),
    })?;
    let tx = client.transaction().await?;
    store::bulk_schemas::put(&tx, sync.id, &changed).await?;
    store::bulk_syncs::touch(&tx, sync.id).await?;
    tx.commit().await?;
    Ok(changed.iter().map(|s| to_json(s, Some(view), writing)).collect())
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "filters[enabled]")]
    enabled: Option<String>,
}

#[get("/bulk/syncs/{id}/schemas")]
async fn list(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let enabled = match query.enabled.as_deref() {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::bad_request("filters[enabled] must be true or false")),
    };
    let schemas = store::bulk_schemas::list(&state.pool.get().await?, sync.id, enabled).await?;
    let view = catalog::cached(&state, sync.source_connection_id).await?;
    let writing = writing(&sync)?;
    // With the fields, which tools built on the list (dagster-polytomic's assets) read.
    Ok(envelope(schemas.iter().map(|s| to_json(s, view.as_ref(), writing)).collect()))
}

#[get("/bulk/syncs/{id}/schemas/{schema_id}")]
async fn get_one(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Read>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let schema = configured(&state, &sync, &path.1).await?;
    let view = catalog::cached(&state, sync.source_connection_id).await?;
    Ok(envelope(to_json(&schema, view.as_ref(), writing(&sync)?)))
}

/// Replaces the configuration of one schema (omitted settings: their defaults).
#[put("/bulk/syncs/{id}/schemas/{schema_id}")]
async fn update(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Update>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let mut item: Map<String, Json> = parse_body(&body)?;
    let current = configured(&state, &sync, &path.1).await?;
    item.insert("id".into(), json!(current.schema_id));
    let view = source_view(&state, &sync).await?;
    let changed = selection::parse(&Json::Object(item), "", &view, writing(&sync)?)?;
    let mut saved = save(&state, &sync, vec![changed], (&view, |_| String::new())).await?;
    Ok(envelope(saved.remove(0)))
}

/// Settings a schema shows but that are not set (derived or always the same).
const READ_ONLY: &[&str] = &["output_name", "destination_history_output_name"];

#[derive(Deserialize)]
struct PatchBody {
    #[serde(default)]
    schemas: Vec<Map<String, Json>>,
}

/// Changes several schemas, each only in the settings it gives.
#[patch("/bulk/syncs/{id}/schemas")]
async fn patch_many(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: PatchBody = parse_body(&body)?;
    let writing = writing(&sync)?;
    let view = source_view(&state, &sync).await?;
    let mut changed = Vec::with_capacity(input.schemas.len());
    let client = state.pool.get().await?;
    for (i, patch) in input.schemas.into_iter().enumerate() {
        let field = format!("schemas[{i}]");
        let id = patch.get("id").and_then(Json::as_str).unwrap_or_default();
        let current = store::bulk_schemas::get(&client, sync.id, id)
            .await?
            .ok_or_else(|| invalid(&format!("{field}.id"), format!("{id:?} is not a schema of the bulk sync")))?;
        let mut item = selection::item(&current);
        item.extend(patch.into_iter().filter(|(k, v)| !v.is_null() && !READ_ONLY.contains(&k.as_str())));
        changed.push(selection::parse(&Json::Object(item), &field, &view, writing)?);
    }
    drop(client);
    selection::check_distinct(&changed, writing.normalize, |i| format!("schemas[{i}]"))?;
    Ok(envelope(json!(save(&state, &sync, changed, (&view, |n| format!("schemas[{n}]"))).await?)))
}

/// What cancelling `schema` does to `execution`, in progress: the engine stops the schema once
/// it planned it; before that the schema is taken out of the waiting execution (canceled when
/// it ran nothing else); while the engine plans, 409 asks to try again.
async fn cancel_in(
    state: &AppState,
    sync: &BulkSync,
    schema: &BulkSchema,
    execution: Execution,
) -> Result<&'static str, ApiError> {
    let mut options: StartOptions = serde_json::from_value(execution.options).unwrap_or_default();
    let covered = match options.schemas.is_empty() {
        true => schema.enabled,
        false => options.schemas.contains(&schema.schema_id),
    };
    if !covered {
        return Ok("the execution in progress does not run this schema");
    }
    let client = state.pool.get().await?;
    match store::bulk_schema_executions::request_cancel(&client, execution.id, &schema.schema_id).await? {
        Some(status) if status == "running" => return Ok("cancel requested"),
        Some(_) => return Ok("the schema already ended in the execution in progress"),
        None => {}
    }
    if options.schemas.is_empty() {
        options.schemas = stored_schemas(state, sync.id, Some(true)).await?;
    }
    options.schemas.retain(|s| *s != schema.schema_id);
    if options.schemas.is_empty() {
        store::executions::request_cancel(&client, (BULK_SYNC, sync.id), Some(execution.id)).await?;
        return Ok("cancel requested");
    }
    let options = serde_json::to_value(&options).expect("start options serialize");
    match store::executions::set_waiting_options(&client, execution.id, &options).await? {
        true => Ok("the schema was taken out of the execution, which has not started yet"),
        false => Err(ApiError::conflict("the execution is being planned: cancel the schema again in a moment")),
    }
}

/// Asks the engine to stop one schema of the execution in progress.
#[post("/bulk/syncs/{id}/schemas/{schema_id}/cancel")]
async fn cancel(
    state: web::Data<AppState>,
    sync: Authorized<BulkSync, can::Run>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let schema = configured(&state, &sync, &path.1).await?;
    let running = store::executions::latest(&state.pool.get().await?, (BULK_SYNC, sync.id), ACTIVE, true).await?;
    let message = match running {
        None => "no execution is running",
        Some(execution) => cancel_in(&state, &sync, &schema, execution).await?,
    };
    Ok(envelope(json!({ "message": message })))
}
