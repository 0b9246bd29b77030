//! Checking a sync body against its model and destination before it is stored.

use serde_json::{Value as Json, json};
use syncline_core::{
    connector::{ErrorClass, SyncMode},
    sync::{Identities, SyncSpec},
};
use uuid::Uuid;

use crate::{
    AppState,
    access::Action,
    auth::Caller,
    error::{ApiError, parse_body},
    extract::authorized,
    input,
    routes::{check_policies, connections},
    store::{self, models::Model},
};

/// A sync body checked against its model and destination.
pub(super) struct Valid {
    pub(super) name: String,
    pub(super) active: bool,
    pub(super) spec: SyncSpec,
    pub(super) echo: Json,
    pub(super) model_id: Uuid,
    pub(super) policies: Vec<String>,
    pub(super) next_run_at: Option<chrono::DateTime<chrono::Utc>>,
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
            policies: &self.policies,
        }
    }
}

fn invalid(message: String, field: &str) -> ApiError {
    ApiError::unprocessable(message).with_metadata(json!({ "field": field }))
}

/// A body naming an object that does not exist (404 on its own) is invalid: 422 naming `field`.
fn missing_as_invalid(e: ApiError, field: &str, what: &str) -> ApiError {
    match e.status.as_u16() {
        404 => invalid(format!("{field} names no {what} of this organization"), field),
        _ => e,
    }
}

/// Checks a sync body; its model and target connection must be ones the caller may read.
pub(super) async fn validate(state: &AppState, caller: &Caller, body: &[u8]) -> Result<Valid, ApiError> {
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
    if object.get("identity").is_none()
        && let Some(identities) = object.get("identities")
    {
        let identities: Identities = serde_json::from_value(identities.clone())
            .map_err(|e| ApiError::bad_request(format!("identities: {e}")))?;
        match identities.strategy.as_deref() {
            None | Some("and") => {}
            Some("priority") if identities.mappings.len() <= 1 => {}
            Some(other) => {
                return Err(invalid(
                    format!(
                        "identities.strategy {other:?} is not supported with several mappings (use \"and\": every mapping must match)"
                    ),
                    "identities.strategy",
                ));
            }
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
    if spec.fields.is_empty() {
        return Err(invalid("fields must map at least one model field".into(), "fields"));
    }
    let sources: Vec<_> = spec
        .fields
        .iter()
        .filter_map(|f| f.source.as_ref())
        .chain(spec.identity_mappings().into_iter().map(|i| &i.source))
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
    let model_fields: Vec<String> =
        model.fields.as_array().into_iter().flatten().filter_map(|f| f["name"].as_str().map(str::to_owned)).collect();
    for source in &sources {
        if !model_fields.contains(&source.field) {
            return Err(invalid(
                format!("model field {:?} does not exist (the model has {})", source.field, model_fields.join(", ")),
                "fields",
            ));
        }
    }
    let target_object = spec
        .target
        .object
        .clone()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| invalid("target.object is required".into(), "target.object"))?;
    let destination = connections::open_by_id(state, caller, spec.target.connection_id, Action::Read)
        .await
        .map_err(|e| missing_as_invalid(e, "target.connection_id", "connection"))?;
    if !destination.connector.spec().capabilities.destination {
        return Err(invalid(
            format!("a {} connection cannot be a sync target", destination.connector.spec().id),
            "target.connection_id",
        ));
    }
    let destination = destination.connector.destination(&state.connector, &destination.config)?;
    let target_fields = destination.target_fields(&target_object).await.map_err(|e| match e.class {
        ErrorClass::NotFound => invalid(format!("target object {target_object:?} does not exist"), "target.object"),
        _ => e.into(),
    })?;
    let target_names: Vec<&str> = target_fields.iter().map(|f| f.name.as_str()).collect();
    let mut seen = Vec::new();
    for mapping in &spec.fields {
        if !target_names.contains(&mapping.target.as_str()) {
            return Err(invalid(format!("field {:?} does not exist on {target_object}", mapping.target), "fields"));
        }
        if seen.contains(&&mapping.target) {
            return Err(invalid(format!("field {:?} is mapped more than once", mapping.target), "fields"));
        }
        seen.push(&mapping.target);
    }
    let identities = spec.identity_mappings();
    if identities.is_empty() && mode.requires_identity() {
        return Err(invalid(format!("mode {} needs an identity", mode.as_str()), "identity"));
    }
    for (n, identity) in identities.iter().enumerate() {
        let field = |name: &str| match spec.identities.is_some() {
            true => format!("identities.mappings[{n}].{name}"),
            false => format!("identity.{name}"),
        };
        if identity.function != "Equality" {
            return Err(invalid(
                format!("identity function {:?} is not supported (use Equality)", identity.function),
                &field("function"),
            ));
        }
        if !target_names.contains(&identity.target.as_str()) {
            return Err(invalid(
                format!("identity field {:?} does not exist on {target_object}", identity.target),
                &field("target"),
            ));
        }
        if identities[..n].iter().any(|other| other.target == identity.target) {
            return Err(invalid(format!("identity field {:?} is mapped twice", identity.target), &field("target")));
        }
    }
    let next_run = spec.schedule.next_after(chrono::Utc::now()).map_err(|e| invalid(e, "schedule"))?;
    let next_run_at = next_run.filter(|_| active);
    Ok(Valid { name, active, spec, echo, model_id, policies, next_run_at })
}
