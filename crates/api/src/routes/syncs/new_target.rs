//! Syncs that create their target (`target.create` instead of `target.object`): the object the
//! properties name on the destination, checked, and its creation when the sync is stored.

use std::{collections::BTreeMap, sync::Arc};

use deadpool_postgres::GenericClient;
use syncline_core::{
    connector::{Destination, ErrorClass, ObjectSpec},
    sync::SyncSpec,
};
use uuid::Uuid;

use super::validate::{invalid, model_connection, refused};
use crate::{
    AppState,
    error::ApiError,
    routes::connections,
    store::{self, models::Model},
};

const FIELD: &str = "target.create";

/// The object `properties` name on `destination` (a `connector` connection): 422 naming
/// `target.create` when it cannot create targets, `target.create.<property>` for a property
/// missing, unknown, not among its listed values or unusable.
async fn named(
    destination: &dyn Destination,
    connector: &str,
    properties: &BTreeMap<String, String>,
) -> Result<String, ApiError> {
    let Some(creation) = destination.target_creation() else {
        return Err(invalid(format!("a {connector} target cannot be created: name an existing target.object"), FIELD));
    };
    let known = creation.properties();
    let ids: Vec<&str> = known.iter().map(|p| p.id).collect();
    if let Some(unknown) = properties.keys().find(|k| !ids.contains(&k.as_str())) {
        let message = format!("{unknown:?} is not a property of a new {connector} target ({})", ids.join(", "));
        return Err(invalid(message, &format!("{FIELD}.{unknown}")));
    }
    let mut values = Vec::with_capacity(known.len());
    for property in known {
        let field = format!("{FIELD}.{}", property.id);
        let value = properties.get(property.id).map(String::as_str).unwrap_or_default();
        if value.is_empty() {
            return Err(invalid(format!("{field} is required"), &field));
        }
        if property.listed && !creation.values(property.id).await?.iter().any(|v| v.value == value) {
            let message = format!("{} {value:?} does not exist or cannot hold new tables", property.id);
            return Err(invalid(message, &field));
        }
        values.push(value);
    }
    creation.object(&values).map_err(|e| invalid(e.message, &format!("{FIELD}.{}", e.property)))
}

/// Refuses a body giving `target.object` beside `target.create`, unless it is the echo of a
/// target this sync created (`object` is `current`, the object the sync writes to, and `named`).
fn one_of(object: Option<&str>, named: &str, current: Option<&str>) -> Result<(), ApiError> {
    match object {
        Some(object) if object != named || current != Some(named) => Err(invalid(
            "give either target.object (an existing object) or target.create (a new one), not both".into(),
            FIELD,
        )),
        _ => Ok(()),
    }
}

/// Where `spec`, a body with `target.create` = `properties`, writes on `destination` (a
/// `connector` connection): the object the properties name, and that object to create,
/// planned from the types of `model`'s fields at its source — none when it is `current`, the
/// object the sync writes to (created before: the body is its echo). An existing object is
/// refused.
pub(super) async fn resolve(
    state: &AppState,
    spec: &SyncSpec,
    properties: &BTreeMap<String, String>,
    (destination, connector): (&Arc<dyn Destination>, &str),
    model: &Model,
    current: Option<&str>,
) -> Result<(String, Option<NewTarget>), ApiError> {
    let named = named(destination.as_ref(), connector, properties).await?;
    one_of(spec.target.object.as_deref().filter(|o| !o.is_empty()), &named, current)?;
    if exists(destination.as_ref(), &named).await? {
        return match current == Some(named.as_str()) {
            true => Ok((named, None)),
            false => Err(exists_already(&named)),
        };
    }
    let source = connections::open(state, &model_connection(state, model, "fields").await?)?;
    let source = source.connector.source(&state.connector, &source.config)?;
    let types = source.model_fields(&model.configuration).await?;
    let model_type = |name: &str| types.iter().find(|f| f.name == name).map(|f| f.field_type.clone());
    let object = spec.created_object(named.clone(), model_type).map_err(refused)?;
    let (connection_id, destination) = (spec.target.connection_id, destination.clone());
    Ok((named, Some(NewTarget { connection_id, destination, object })))
}

/// A target object a sync creates when it is stored.
pub(super) struct NewTarget {
    connection_id: Uuid,
    destination: Arc<dyn Destination>,
    /// The object, with the fields the sync's mappings give it.
    pub(super) object: ObjectSpec,
}

impl NewTarget {
    /// Creates the object, within transaction `tx` (which stores the sync): requests creating
    /// the same object wait for each other's transaction, and the later one finds it exists.
    /// What the destination refuses is a 422 naming `target.create`.
    pub(super) async fn create(&self, tx: &impl GenericClient) -> Result<(), ApiError> {
        store::syncs::claim_new_target(tx, self.connection_id, &self.object.object).await?;
        if exists(self.destination.as_ref(), &self.object.object).await? {
            return Err(exists_already(&self.object.object));
        }
        match self.destination.apply(&self.object, false).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.class, ErrorClass::Transient | ErrorClass::RateLimited { .. }) => Err(e.into()),
            Err(e) => Err(invalid(format!("cannot create {}: {}", self.object.object, e.message), FIELD)),
        }
    }
}

/// Whether `destination` has `object`.
async fn exists(destination: &dyn Destination, object: &str) -> Result<bool, ApiError> {
    match destination.target_fields(object).await {
        Ok(_) => Ok(true),
        Err(e) if e.class == ErrorClass::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The 422 for a new target whose object exists already.
fn exists_already(object: &str) -> ApiError {
    invalid(format!("{object} already exists: name it as target.object, or create another"), FIELD)
}
