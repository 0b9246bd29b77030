//! Checking a sync body against its model and destination before it is stored.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use serde_json::{Value as Json, json};
use syncline_core::{
    connector::{ErrorClass, IdentityFunction, SyncMode},
    sync::{
        Identities, SyncSpec,
        filter::{Invalid, Kind},
    },
};
use uuid::Uuid;

use super::new_target::{self, NewTarget};
use crate::{
    AppState,
    access::Action,
    auth::Caller,
    error::{ApiError, parse_body},
    extract::authorized,
    input,
    routes::{check_policies, connections},
    store::{self, connections::Connection, models::Model, run_after::Upstream, syncs::ModelSync},
};

use super::run_after;

/// A sync body checked against its model and destination.
pub(super) struct Valid {
    pub(super) name: String,
    pub(super) active: bool,
    pub(super) spec: SyncSpec,
    pub(super) echo: Json,
    pub(super) model_id: Uuid,
    pub(super) policies: Vec<String>,
    pub(super) next_run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The syncs it runs after (`runafter`).
    pub(super) upstreams: Vec<Upstream>,
    /// The target object to create with the sync (`target.create`), if it does not exist yet.
    pub(super) new_target: Option<NewTarget>,
}

impl Valid {
    /// What [`store::syncs::insert`] and [`store::syncs::update`] store.
    pub(super) fn values(&self) -> store::syncs::Values<'_> {
        store::syncs::Values {
            model_id: self.model_id,
            target_connection_id: self.spec.target.connection_id,
            name: &self.name,
            active: self.active,
            mode: self.spec.mode.as_str(),
            spec: &self.echo,
            schedule: &self.spec.schedule,
            next_run_at: self.next_run_at,
            upstreams: &self.upstreams,
            policies: &self.policies,
        }
    }

    /// Creates the target object the sync names with `target.create`, if it did not exist: last,
    /// inside transaction `tx` storing the sync, so a refusal stores nothing.
    pub(super) async fn create_target(&self, tx: &impl GenericClient) -> Result<(), ApiError> {
        match &self.new_target {
            Some(target) => target.create(tx).await,
            None => Ok(()),
        }
    }
}

/// A 422 naming `field`.
pub(super) fn invalid(message: String, field: &str) -> ApiError {
    ApiError::unprocessable(message).with_metadata(json!({ "field": field }))
}

/// A body naming an object that does not exist (404 on its own) is invalid: 422 naming `field`.
fn missing_as_invalid(e: ApiError, field: &str, what: &str) -> ApiError {
    match e.status.as_u16() {
        404 => invalid(format!("{field} names no {what} of this organization"), field),
        _ => e,
    }
}

/// Body fields Syncline cannot honour (yet), refused rather than stored and ignored: where
/// each is and why.
fn unsupported(body: &Json) -> Option<(String, &'static str)> {
    let set = |value: &Json| match value {
        Json::Null | Json::Bool(false) => false,
        Json::String(s) => !s.is_empty(),
        Json::Array(items) => !items.is_empty(),
        Json::Object(map) => !map.is_empty(),
        _ => true,
    };
    let refused: [(&str, &str); 11] = [
        ("/filters", "the deprecated combined filters are not supported: use model_filters and target_filters"),
        ("/filter_logic", "the deprecated combined filters are not supported: use model_filters.logic"),
        ("/encryption_passphrase", "field encryption is not supported"),
        ("/target/search_values", "search values are not supported by database targets"),
        ("/target/configuration", "database targets take no configuration"),
        ("/target/new_name", "renaming the target is not supported"),
        ("/target/filter_logic", "use target_filters.logic"),
        ("/identity/new_field", "creating the identity field is not supported"),
        ("/identity/remote_field_type_id", "remote field types are not supported by database targets"),
        ("/schedule/job_id", "dbt Cloud schedules are not supported"),
        ("/schedule/connection_id", "dbt Cloud schedules are not supported"),
    ];
    for (pointer, message) in refused {
        if body.pointer(pointer).is_some_and(set) {
            return Some((pointer[1..].replace('/', "."), message));
        }
    }
    for list in ["fields", "override_fields"] {
        for (n, field) in body[list].as_array().into_iter().flatten().enumerate() {
            for (key, message) in [
                (
                    "new",
                    "creating target fields is not supported: add the column, or create the target with target.create",
                ),
                ("encryption_enabled", "field encryption is not supported"),
            ] {
                if field.get(key).is_some_and(set) {
                    return Some((format!("{list}[{n}].{key}"), message));
                }
            }
        }
    }
    None
}

/// A filter, override or constant that cannot be honoured, as the 422 naming it.
pub(super) fn refused(e: Invalid) -> ApiError {
    invalid(e.message, &e.field)
}

/// Field names and their kinds, from a list of fields with Polytomic `type`s.
fn kinds<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> HashMap<String, Kind> {
    fields.map(|(name, type_name)| (name.to_owned(), Kind::of(type_name))).collect()
}

/// The connection `model` reads, whoever may read it (the sync's runs read it the same way);
/// 422 naming `field` when it was deleted.
pub(super) async fn model_connection(state: &AppState, model: &Model, field: &str) -> Result<Connection, ApiError> {
    store::connections::get(&state.pool.get().await?, model.organization_id, model.connection_id)
        .await?
        .ok_or_else(|| invalid("the model's connection was deleted".into(), field))
}

/// Checks a sync body; its model and target connection must be ones the caller may read.
/// `current` is the sync an update replaces.
pub(super) async fn validate(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
    current: Option<&ModelSync>,
) -> Result<Valid, ApiError> {
    let org = caller.organization()?;
    let mut echo: Json = parse_body(body)?;
    let object = echo.as_object_mut().ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    object.retain(|_, v| !v.is_null());
    let name = input::name(object.get("name").and_then(Json::as_str), "name")?;
    let mode_name = object.get("mode").and_then(Json::as_str).unwrap_or_default();
    let mode = SyncMode::parse(mode_name).ok_or_else(|| {
        let known: Vec<&str> = SyncMode::ALL.iter().map(|m| m.as_str()).collect();
        invalid(format!("mode must be one of {}", known.join(", ")), "mode")
    })?;
    if let Some((field, message)) = unsupported(&Json::Object(object.clone())) {
        return Err(invalid(format!("{field}: {message}"), &field));
    }
    if object.get("identity").is_none()
        && let Some(identities) = object.get("identities")
    {
        let identities: Identities = serde_json::from_value(identities.clone())
            .map_err(|e| ApiError::bad_request(format!("identities: {e}")))?;
        if let Some(other) = identities.strategy.as_deref().filter(|s| !["and", "priority"].contains(s)) {
            return Err(invalid(
                format!("identities.strategy {other:?} must be \"and\" (every mapping matches) or \"priority\""),
                "identities.strategy",
            ));
        }
        // The deprecated single `identity` echoes the first mapping, as Polytomic does.
        if let Some(first) = identities.mappings.into_iter().next() {
            object.insert("identity".into(), serde_json::to_value(first).unwrap_or_default());
        }
    }
    object.entry("schedule").or_insert_with(|| json!({"frequency": "manual"}));
    let active = match object.get("active") {
        None => true,
        Some(Json::Bool(active)) => *active,
        Some(_) => return Err(invalid("active must be true or false".into(), "active")),
    };
    object.insert("active".into(), json!(active));
    let spec: SyncSpec =
        serde_json::from_value(echo.clone()).map_err(|e| ApiError::bad_request(format!("invalid sync: {e}")))?;
    if spec.fields.is_empty() && spec.override_fields.is_empty() {
        return Err(invalid("fields must map at least one model field".into(), "fields"));
    }
    for (n, mapping) in spec.fields.iter().enumerate() {
        if mapping.source.is_some() == mapping.override_value.is_some() {
            return Err(invalid(
                format!("fields[{n}] needs either a source (a model field) or an override_value (a constant)"),
                &format!("fields[{n}]"),
            ));
        }
    }
    let mappings =
        spec.fields.iter().map(|f| ("fields", f)).chain(spec.override_fields.iter().map(|f| ("override_fields", f)));
    for (n, (list, mapping)) in mappings.clone().enumerate() {
        let n = if list == "fields" { n } else { n - spec.fields.len() };
        if !matches!(mapping.sync_mode.as_deref(), None | Some("create" | "updateOrCreate")) {
            return Err(invalid(
                format!("{list}[{n}].sync_mode must be create (only fill empty values) or updateOrCreate"),
                &format!("{list}[{n}].sync_mode"),
            ));
        }
        if list == "override_fields" && mapping.override_value.is_none() {
            return Err(invalid(
                format!("{list}[{n}].override_value is required"),
                &format!("{list}[{n}].override_value"),
            ));
        }
    }
    let model_filter_sources = spec.model_filters.iter().flat_map(|f| f.conditions.iter().map(|c| &c.source));
    let sources: Vec<_> = spec
        .fields
        .iter()
        .filter_map(|f| f.source.as_ref())
        .chain(spec.identity_mappings().into_iter().map(|i| &i.source))
        .chain(model_filter_sources)
        .chain(spec.overrides.iter().filter_map(|o| o.field.as_ref()))
        .collect();
    let model_id = sources
        .first()
        .map(|s| s.model_id)
        .ok_or_else(|| invalid("fields must map at least one model field".into(), "fields"))?;
    if sources.iter().any(|s| s.model_id != model_id) {
        return Err(invalid("every mapped field must come from the same model".into(), "fields"));
    }
    let policies: Vec<String> = match echo.get("policies") {
        Some(p) => serde_json::from_value(p.clone()).map_err(|e| invalid(format!("policies: {e}"), "policies"))?,
        None => Vec::new(),
    };
    check_policies(&state.pool.get().await?, org, &policies).await?;
    let model = authorized::<Model>(state, caller, model_id, Action::Read)
        .await
        .map_err(|e| missing_as_invalid(e, "fields.source.model_id", "model"))?;
    let model_fields = kinds(
        model
            .fields
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| Some((f["name"].as_str()?, f["type"].as_str().unwrap_or_default()))),
    );
    for source in &sources {
        if !model_fields.contains_key(&source.field) {
            let mut names: Vec<&str> = model_fields.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(invalid(
                format!("model field {:?} does not exist (the model has {})", source.field, names.join(", ")),
                "fields",
            ));
        }
    }
    let model_filter = spec.model_filter(|field| model_fields.get(field).copied()).map_err(refused)?;
    if model_filter.is_some() {
        let source = model_connection(state, &model, "model_filters").await?;
        if !connections::connector(&source.type_id)?.spec().capabilities.filters {
            return Err(invalid(format!("a {} model cannot be filtered", source.type_id), "model_filters"));
        }
    }
    let given_object = spec.target.object.clone().filter(|o| !o.is_empty());
    if given_object.is_none() && spec.target.create.is_none() {
        return Err(invalid("target.object (or target.create, to create one) is required".into(), "target.object"));
    }
    let destination = connections::open_by_id(state, caller, spec.target.connection_id, Action::Read)
        .await
        .map_err(|e| missing_as_invalid(e, "target.connection_id", "connection"))?;
    let connector_id = destination.connector.spec().id;
    if !destination.connector.spec().capabilities.destination {
        return Err(invalid(format!("a {connector_id} connection cannot be a sync target"), "target.connection_id"));
    }
    let destination = destination.connector.destination(&state.connector, &destination.config)?;
    if !destination.modes().contains(&mode) {
        return Err(invalid(format!("a {connector_id} target does not support mode {}", mode.as_str()), "mode"));
    }
    let (target_object, new_target) = match &spec.target.create {
        None => (given_object.unwrap_or_default(), None),
        Some(properties) => {
            let current = current
                .filter(|c| c.target_connection_id == spec.target.connection_id)
                .and_then(|c| c.spec["target"]["object"].as_str());
            new_target::resolve(state, &spec, properties, (&destination, connector_id), &model, current).await?
        }
    };
    let target_fields: Vec<(String, String)> = match &new_target {
        Some(new) => new.object.fields.iter().map(|f| (f.name.clone(), f.field_type.api_name().to_owned())).collect(),
        None => {
            let fields = destination.target_fields(&target_object).await.map_err(|e| match e.class {
                ErrorClass::NotFound => {
                    invalid(format!("target object {target_object:?} does not exist"), "target.object")
                }
                _ => e.into(),
            })?;
            fields.into_iter().map(|f| (f.name, f.field_type)).collect()
        }
    };
    let target_kinds = kinds(target_fields.iter().map(|(name, type_name)| (name.as_str(), type_name.as_str())));
    let mut seen = Vec::new();
    for (list, mapping) in mappings {
        if !target_kinds.contains_key(&mapping.target) {
            return Err(invalid(format!("field {:?} does not exist on {target_object}", mapping.target), list));
        }
        if seen.contains(&&mapping.target) {
            return Err(invalid(format!("field {:?} is mapped more than once", mapping.target), list));
        }
        seen.push(&mapping.target);
    }
    let shaping = spec
        .shaping(|field| model_fields.get(field).copied(), |field| target_kinds.get(field).copied())
        .map_err(refused)?;
    for (n, condition) in spec.target_filters.iter().flat_map(|f| f.conditions.iter()).enumerate() {
        if !target_kinds.contains_key(&condition.field) {
            return Err(invalid(
                format!("field {:?} does not exist on {target_object}", condition.field),
                &format!("target_filters.conditions[{n}].field"),
            ));
        }
    }
    if !shaping.is_plain() && !destination.shapes_writes() {
        return Err(invalid(
            format!("a {connector_id} target cannot take constants, overrides, per-field sync modes or target filters"),
            "fields",
        ));
    }
    if let Some(field) = spec.blast_radius.as_ref().and_then(|b| b.invalid_share()) {
        return Err(invalid(format!("{field} must be a share between 0 and 1"), field));
    }
    let identities = spec.identity_mappings();
    if identities.is_empty() && mode.requires_identity() {
        return Err(invalid(format!("mode {} needs an identity", mode.as_str()), "identity"));
    }
    let priority =
        identities.len() > 1 && spec.identities.as_ref().and_then(|i| i.strategy.as_deref()) == Some("priority");
    if priority && !destination.shapes_writes() {
        return Err(invalid(
            format!("a {connector_id} target matches on every identity field (strategy \"and\")"),
            "identities.strategy",
        ));
    }
    for (n, identity) in identities.iter().enumerate() {
        let field = |part: &str| spec.identity_field(n, part);
        match IdentityFunction::parse(&identity.function) {
            Some(IdentityFunction::Equality) => {}
            Some(IdentityFunction::ISubstring) if destination.shapes_writes() => {
                let strings = [model_fields.get(&identity.source.field), target_kinds.get(&identity.target)];
                if strings.iter().any(|kind| kind.is_some_and(|k| *k != Kind::String)) {
                    return Err(invalid("ISubstring matches string fields only".into(), &field("function")));
                }
            }
            _ => {
                return Err(invalid(
                    format!("identity function {:?} is not supported (use Equality or ISubstring)", identity.function),
                    &field("function"),
                ));
            }
        }
        if !target_kinds.contains_key(&identity.target) {
            return Err(invalid(
                format!("identity field {:?} does not exist on {target_object}", identity.target),
                &field("target"),
            ));
        }
        if identities[..n].iter().any(|other| other.target == identity.target) {
            return Err(invalid(format!("identity field {:?} is mapped twice", identity.target), &field("target")));
        }
        if identities[..n].iter().any(|other| other.source.field == identity.source.field) {
            return Err(invalid(
                format!("model field {:?} is already an identity: each mapping needs its own", identity.source.field),
                &field("source.field"),
            ));
        }
    }
    spec.schedule.check("schedule", false).map_err(refused)?;
    let upstreams = run_after::upstreams(state, caller, &spec.schedule).await?;
    let next_run_at = spec.schedule.next_after(chrono::Utc::now()).filter(|_| active);
    if spec.target.create.is_some() {
        // A created target is stored as the object it is, beside the properties that named it.
        echo["target"]["object"] = json!(target_object);
    }
    Ok(Valid { name, active, spec, echo, model_id, policies, next_run_at, upstreams, new_target })
}
