//! Checking a bulk sync body (create, and update: a full replacement, except that omitted or
//! empty `schemas` keep the selection) against its connections and the source's catalog
//! before it is stored. What the engine does not honour yet is refused naming the field,
//! never stored and ignored: `source_configuration`, data cutoffs, record timestamp columns
//! (`disable_record_timestamps` must be true or absent), `normalize_names: legacy`, new tables
//! added on their own (`automatically_add_new_objects` other than `none`), and per schema
//! filters, history tables, partition keys and obfuscation.

use serde_json::{Map, Value as Json, json};
use syncline_core::{
    bulk::{AutoAdd, BulkMode, DestinationConfig},
    schedule::Entry,
};
use uuid::Uuid;

use super::{
    invalid, read, schedules,
    selection::{self, Writing},
    stored_schemas, value,
};
use crate::{
    AppState,
    access::Action,
    auth::Caller,
    error::{ApiError, parse_body},
    extract::authorized,
    input,
    routes::{
        bulk_syncs::discovery::{self, Side},
        check_policies,
        schemas::catalog::{self, View},
    },
    store::{self, bulk_schemas::BulkSchema, bulk_syncs::BulkSync, connections::Connection},
};

/// A bulk sync body checked against its connections and the source's catalog.
pub(super) struct Valid {
    name: String,
    source: Uuid,
    destination: Uuid,
    mode: BulkMode,
    active: bool,
    /// The spec: the body as the API echoes it.
    spec: Json,
    /// The schema selection, unless it stays as it is.
    pub(super) schemas: Option<Vec<BulkSchema>>,
    schedules: Vec<Entry>,
}

impl Valid {
    /// What [`store::bulk_syncs::insert`] and [`store::bulk_syncs::update`] store.
    pub(super) fn values(&self) -> store::bulk_syncs::Values<'_> {
        store::bulk_syncs::Values {
            name: &self.name,
            source_connection_id: self.source,
            destination_connection_id: self.destination,
            mode: self.mode.as_str(),
            active: self.active,
            spec: &self.spec,
            schedules: &self.schedules,
        }
    }
}

/// The connection the body names at `key`, which the caller may read and which can be `side`
/// of a bulk sync; an id naming no connection of the organization is 422 naming `key`.
async fn connection(
    state: &AppState,
    caller: &Caller,
    body: &Map<String, Json>,
    key: &str,
    side: Side,
) -> Result<Connection, ApiError> {
    let id = value(body, key).and_then(Json::as_str).ok_or_else(|| invalid(key, format!("{key} is required")))?;
    let missing = || invalid(key, format!("{key} names no connection of this organization"));
    let id = Uuid::parse_str(id).map_err(|_| missing())?;
    let connection =
        authorized::<Connection>(state, caller, id, Action::Read).await.map_err(|e| match e.status.as_u16() {
            404 => missing(),
            _ => e,
        })?;
    discovery::require(state, &connection, side, Some(key))?;
    Ok(connection)
}

/// The mode of a bulk sync into `destination`: `asked` if the destination takes it (422 naming
/// `mode` otherwise), else the destination's default (replicate where it takes it).
fn mode_into(state: &AppState, destination: &Connection, asked: Option<BulkMode>) -> Result<BulkMode, ApiError> {
    let modes = discovery::destination_modes(state, destination, Some("destination_connection_id"))?;
    match asked {
        None => Ok(modes[0]),
        Some(mode) if modes.contains(&mode) => Ok(mode),
        Some(mode) => {
            let taken: Vec<&str> = modes.iter().map(|m| m.as_str()).collect();
            Err(invalid(
                "mode",
                format!(
                    "a {} destination does not take {} mode (it takes {})",
                    destination.type_id,
                    mode.as_str(),
                    taken.join(", ")
                ),
            ))
        }
    }
}

/// What `automatically_add_new_fields` and `_objects` may be.
const AUTO_ADD: &str = "one of all, onlyIncremental, onlyNonIncremental, none";

/// Refuses what the engine does not honour yet (see the module docs) and checks the limits.
fn refuse_unsupported(body: &Map<String, Json>) -> Result<(), ApiError> {
    if value(body, "source_configuration").is_some_and(|c| c.as_object().is_none_or(|c| !c.is_empty())) {
        return Err(invalid(
            "source_configuration",
            "source_configuration is not supported: PostgreSQL and MySQL sources take no bulk settings (send {} or nothing)".into(),
        ));
    }
    if value(body, "data_cutoff_timestamp").is_some() {
        return Err(invalid(
            "data_cutoff_timestamp",
            "data_cutoff_timestamp is not supported: every row is replicated, however old".into(),
        ));
    }
    if value(body, "disable_record_timestamps").is_some_and(|v| v != &json!(true)) {
        return Err(invalid(
            "disable_record_timestamps",
            "disable_record_timestamps must be true: record timestamp columns are not written to the destination"
                .into(),
        ));
    }
    for key in ["concurrency_limit", "resync_concurrency_limit"] {
        if value(body, key).is_some_and(|v| v.as_i64().is_none_or(|n| n < 1)) {
            return Err(invalid(key, format!("{key} must be a positive integer")));
        }
    }
    Ok(())
}

/// The destination configuration: where the tables go, and how deletes show (`replicate` only).
fn destination_configuration(body: &Map<String, Json>, mode: BulkMode) -> Result<Json, ApiError> {
    let key = "destination_configuration";
    let mut given = value(body, key).cloned().unwrap_or_else(|| json!({}));
    let object = given.as_object_mut().ok_or_else(|| invalid(key, format!("{key} must be an object")))?;
    object.retain(|_, v| !v.is_null());
    if let Some(unknown) = object.keys().find(|k| !["schema", "soft_delete_column"].contains(&k.as_str())) {
        let field = format!("{key}.{unknown}");
        return Err(invalid(
            &field,
            format!("{field} is not a setting of bulk sync destinations (schema, soft_delete_column)"),
        ));
    }
    let config: DestinationConfig =
        serde_json::from_value(given.clone()).map_err(|e| invalid(key, format!("{key}: {e}")))?;
    if config.soft_delete_column.is_some() && mode != BulkMode::Replicate {
        let field = format!("{key}.soft_delete_column");
        return Err(invalid(&field, format!("{field} applies to replicate mode only (deletes propagate only there)")));
    }
    Ok(given)
}

/// The schema selection of the body, checked against the source's catalog: every source schema
/// when a create omits it, the stored one when an update does (checked again when the source or
/// the mode changed), else the listed schemas. Answers it (`None`: unchanged) and the ids of its
/// enabled schemas.
async fn selection(
    state: &AppState,
    body: &Map<String, Json>,
    (source, current): (&Connection, Option<&BulkSync>),
    writing: Writing,
) -> Result<(Option<Vec<BulkSchema>>, Vec<String>), ApiError> {
    let listed = match value(body, "schemas") {
        None => None,
        Some(Json::Array(items)) => Some(items).filter(|items| !items.is_empty()),
        Some(_) => return Err(invalid("schemas", "schemas must be a list".into())),
    };
    let unchanged = current.filter(|c| {
        let kept = super::writing(c).is_ok_and(|w| (w.mode, w.normalize) == (writing.mode, writing.normalize));
        c.source_connection_id == source.id && kept
    });
    let schemas = match (listed, current) {
        (None, Some(current)) if unchanged.is_some() => {
            return Ok((None, stored_schemas(state, current.id, Some(true)).await?));
        }
        (Some(items), _) => {
            let view = catalog::load(state, source).await?;
            let parsed = items
                .iter()
                .enumerate()
                .map(|(i, item)| selection::parse(item, &format!("schemas[{i}]"), &view, writing))
                .collect::<Result<Vec<_>, _>>()?;
            selection::check_distinct(&parsed, writing.normalize, |i| format!("schemas[{i}]"))?;
            parsed
        }
        (None, None) => every_schema(&catalog::load(state, source).await?, writing)?,
        (None, Some(current)) => {
            let view = catalog::load(state, source).await?;
            let stored = store::bulk_schemas::list(&state.pool.get().await?, current.id, None).await?;
            stored
                .iter()
                .map(|s| selection::parse(&Json::Object(selection::item(s)), "schemas", &view, writing))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let enabled = schemas.iter().filter(|s| s.enabled).map(|s| s.schema_id.clone()).collect();
    Ok((Some(schemas), enabled))
}

/// Every schema of the source with every field; in replicate mode, those without a primary key
/// are selected disabled.
fn every_schema(view: &View, writing: Writing) -> Result<Vec<BulkSchema>, ApiError> {
    let all: Vec<BulkSchema> = view
        .catalog
        .streams
        .iter()
        .map(|s| {
            let keyless = writing.mode == BulkMode::Replicate && view.primary_key(s).is_empty();
            selection::parse(&json!({"id": s.name, "enabled": !keyless}), "schemas", view, writing)
        })
        .collect::<Result<_, _>>()?;
    selection::check_distinct(&all, writing.normalize, |_| "schemas".into())?;
    Ok(all)
}

/// Checks a bulk sync body; `current` is the sync it replaces, if any.
pub(super) async fn validate(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
    current: Option<&BulkSync>,
) -> Result<Valid, ApiError> {
    let org = caller.organization()?;
    let mut body: Map<String, Json> = parse_body(body)?;
    body.retain(|_, v| !v.is_null());
    let name = input::name(value(&body, "name").and_then(Json::as_str), "name")?;
    if value(&body, "organization_id").is_some_and(|o| o.as_str() != Some(&org.to_string())) {
        return Err(invalid("organization_id", "organization_id must be the caller's organization".into()));
    }
    refuse_unsupported(&body)?;
    let mode: Option<BulkMode> = read(&body, "mode", "one of replicate, snapshot, append", invalid)?;
    let auto_fields: Option<AutoAdd> = read(&body, "automatically_add_new_fields", AUTO_ADD, invalid)?;
    let auto_objects: Option<AutoAdd> = read(&body, "automatically_add_new_objects", AUTO_ADD, invalid)?;
    if auto_objects.is_some_and(|a| a != AutoAdd::None) {
        return Err(invalid(
            "automatically_add_new_objects",
            "automatically_add_new_objects must be none: tables new at the source are added to a bulk sync through its schemas".into(),
        ));
    }
    let normalize_names = match value(&body, "normalize_names").map(Json::as_str) {
        None | Some(Some("enabled")) => "enabled",
        Some(Some("disabled")) => "disabled",
        Some(Some("legacy")) => {
            return Err(invalid(
                "normalize_names",
                "normalize_names legacy is not supported (use enabled or disabled)".into(),
            ));
        }
        Some(_) => return Err(invalid("normalize_names", "normalize_names must be enabled or disabled".into())),
    };
    let active = read(&body, "active", "true or false", invalid)?.unwrap_or(true);
    let policies: Vec<String> = read(&body, "policies", "a list of policy ids", invalid)?.unwrap_or_default();
    check_policies(&state.pool.get().await?, org, &policies).await?;
    let source = connection(state, caller, &body, "source_connection_id", Side::Source).await?;
    let destination = connection(state, caller, &body, "destination_connection_id", Side::Destination).await?;
    let mode = mode_into(state, &destination, mode)?;
    let destination_configuration = destination_configuration(&body, mode)?;
    let new_fields = auto_fields.unwrap_or_default();
    let writing = Writing { mode, normalize: normalize_names == "enabled", new_fields };
    let (schemas, enabled) = selection(state, &body, (&source, current), writing).await?;
    let default = schedules::check(
        value(&body, "default_schedule").unwrap_or(&json!({"frequency": "manual"})),
        "default_schedule",
        true,
        &enabled,
    )?;
    let additional = match value(&body, "additional_schedules") {
        None => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| schedules::check(item, &format!("additional_schedules[{i}]"), false, &enabled))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(invalid("additional_schedules", "additional_schedules must be a list".into())),
    };
    for (i, schedule) in additional.iter().enumerate() {
        if additional[..i].iter().any(|other| other.id == schedule.id) {
            let field = format!("additional_schedules[{i}].id");
            return Err(invalid(&field, format!("schedule id {:?} is used twice", schedule.id)));
        }
    }
    let mut spec = json!({
        "name": name,
        "organization_id": org,
        "source_connection_id": source.id,
        "destination_connection_id": destination.id,
        "destination_configuration": destination_configuration,
        "source_configuration": {},
        "mode": mode.as_str(),
        "active": active,
        "default_schedule": default.to_json(),
        "additional_schedules": additional.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
        "automatically_add_new_fields": new_fields,
        "automatically_add_new_objects": AutoAdd::None,
        "normalize_names": normalize_names,
        "disable_record_timestamps": true,
        "policies": policies,
    });
    for key in ["concurrency_limit", "resync_concurrency_limit"] {
        if let Some(limit) = value(&body, key) {
            spec[key] = limit.clone();
        }
    }
    if let Some(kept) = current.and_then(|c| c.spec.get(super::error_handling::KEY)) {
        spec[super::error_handling::KEY] = kept.clone();
    }
    let schedules = std::iter::once(&default).chain(&additional).map(|s| s.entry()).collect();
    Ok(Valid { name, source: source.id, destination: destination.id, mode, active, spec, schemas, schedules })
}
