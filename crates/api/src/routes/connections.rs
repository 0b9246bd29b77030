//! Connection types and connections. Secrets are sealed at rest and never returned.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::{
    connector::{ConnectorError, DynConnector},
    credentials, jsonschema,
};
use uuid::Uuid;

use super::{check_policies, envelope};
use crate::{
    AppState,
    access::{Action, Kind},
    auth::Caller,
    error::{ApiError, parse_body},
    extract::{Authorized, Tenant, authorized, can},
    idempotency, input,
    store::{self, connections::Connection},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(types)
        .service(type_schema)
        .service(list)
        .service(create)
        .service(test)
        .service(get_one)
        .service(update)
        .service(remove);
}

pub(crate) fn connector(type_id: &str) -> Result<&'static Arc<dyn DynConnector>, ApiError> {
    syncline_connectors::get(type_id).ok_or_else(|| {
        let known: Vec<&str> = syncline_connectors::all().iter().map(|c| c.spec().id).collect();
        ApiError::bad_request(format!("unknown connection type {type_id:?} (supported: {})", known.join(", ")))
    })
}

fn to_json(connection: &Connection) -> Json {
    let type_id = connection.type_id.as_str();
    let name = syncline_connectors::get(type_id).map_or(type_id, |c| c.spec().name);
    json!({
        "id": connection.id,
        "name": connection.name,
        "organization_id": connection.organization_id,
        "type": {"id": type_id, "name": name, "operations": []},
        "configuration": connection.configuration,
        "status": connection.status,
        "status_error": connection.status_error,
        "saved": true,
        "policies": connection.policies,
        "healthcheck_interval": connection.healthcheck_interval,
        "created_at": connection.created_at,
        "updated_at": connection.updated_at,
    })
}

/// A saved connection with its configuration opened, for routes that talk to it.
pub struct OpenConnection {
    pub connector: &'static Arc<dyn DynConnector>,
    pub config: Json,
}

impl OpenConnection {
    /// `overlay` laid over the saved configuration, field by field. The saved secrets stay only
    /// while the result goes to the same host, port and user (see [`keep_secrets`]).
    pub fn overlaid(&self, overlay: Json) -> Result<Json, ApiError> {
        let mut config = self.config.clone();
        for secret in self.connector.spec().secret_fields() {
            credentials::remove(&mut config, &secret);
        }
        if let (Some(merged), Some(overlay)) = (config.as_object_mut(), overlay.as_object()) {
            merged.extend(overlay.clone());
        }
        keep_secrets(self.connector, &self.config, &mut config)?;
        Ok(config)
    }
}

/// Opens the secrets of `connection` into its configuration.
pub fn open(state: &AppState, connection: &Connection) -> Result<OpenConnection, ApiError> {
    let sealed = connection.secrets.as_deref();
    let config = credentials::unseal(&connection.configuration, sealed, &state.secrets).map_err(|e| {
        tracing::error!(connection_id = %connection.id, error = %e, "cannot open connection secrets");
        ApiError::unprocessable(format!("the connection's stored credentials cannot be read: {e}"))
    })?;
    Ok(OpenConnection { connector: connector(&connection.type_id)?, config })
}

/// Loads connection `id` for `caller` to do `action` with, opened: 404 for other
/// organizations' connections, 403 when the caller's roles do not allow `action`.
pub async fn open_by_id(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    action: Action,
) -> Result<OpenConnection, ApiError> {
    open(state, &authorized::<Connection>(state, caller, id, action).await?)
}

#[get("/connection_types")]
async fn types(_caller: Caller) -> HttpResponse {
    let types: Vec<Json> = syncline_connectors::all()
        .iter()
        .map(|c| {
            let spec = c.spec();
            json!({
                "id": spec.id,
                "name": spec.name,
                "capabilities": spec.capabilities,
                "configurationForm": {"jsonschema": spec.config_schema, "uischema": {}},
                "initialConfiguration": {},
                "envConfig": {},
                "use_oauth": false,
            })
        })
        .collect();
    envelope(json!(types))
}

#[get("/connection_types/{id}")]
async fn type_schema(_caller: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let connector = syncline_connectors::get(&path).ok_or_else(|| ApiError::not_found("connection type"))?;
    Ok(HttpResponse::Ok().json(&connector.spec().config_schema))
}

#[derive(Deserialize)]
struct ConnectionBody {
    name: Option<String>,
    #[serde(rename = "type")]
    type_id: Option<String>,
    configuration: Option<Json>,
    healthcheck_interval: Option<String>,
    policies: Option<Vec<String>>,
    validate: Option<bool>,
}

/// What a create or an update stores: `sealed` is the configuration split into what clients see
/// and the sealed secrets.
fn values<'a>(
    input: &'a ConnectionBody,
    name: &'a str,
    (public, sealed): &'a (Json, Option<Vec<u8>>),
    policies: &'a [String],
) -> store::connections::Values<'a> {
    store::connections::Values {
        name,
        configuration: public,
        sealed_secrets: sealed,
        healthcheck_interval: input.healthcheck_interval.as_deref(),
        policies,
    }
}

/// Validates a configuration against the type's schema and the egress policy and, unless told
/// not to, tries it.
async fn checked(
    state: &AppState,
    connector: &Arc<dyn DynConnector>,
    config: &Json,
    validate: bool,
) -> Result<(), ApiError> {
    jsonschema::validate(&connector.spec().config_schema, config, "configuration")
        .map_err(|message| ApiError::unprocessable(message).with_metadata(json!({"type": connector.spec().id})))?;
    if !validate {
        // Not tried, but still only where the egress policy lets it go (trying checks that too).
        let refused = |e: ConnectorError| ApiError::unprocessable(e.message).with_metadata(json!({"class": "config"}));
        return connector.endpoint(config)?.check(&state.connector).await.map_err(refused);
    }
    connector
        .check(&state.connector, config)
        .await
        .map_err(|e| ApiError::unprocessable(format!("connection test failed: {e}")))
}

/// Fills in the secrets `config` leaves out from the `saved` configuration, which clients never
/// see to send back — but only while `config` goes to the same host, port and user: a stored
/// secret is never sent anywhere else. Otherwise 422 naming the secrets to give again.
fn keep_secrets(connector: &Arc<dyn DynConnector>, saved: &Json, config: &mut Json) -> Result<(), ApiError> {
    let missing: Vec<String> = connector
        .spec()
        .secret_fields()
        .into_iter()
        .filter(|field| {
            credentials::lookup(config, field).is_none_or(Json::is_null) && credentials::lookup(saved, field).is_some()
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !connector.endpoint(saved)?.same_recipient(&connector.endpoint(config)?) {
        let fields: Vec<String> = missing.iter().map(|f| format!("configuration.{f}")).collect();
        return Err(ApiError::unprocessable(format!(
            "{} must be given again: the connection now goes to another host, port or user, and stored secrets only go where they were stored for",
            fields.join(", ")
        ))
        .with_metadata(json!({ "field": fields[0] })));
    }
    for field in missing {
        if let Some(secret) = credentials::lookup(saved, &field) {
            credentials::insert(config, &field, secret.clone());
        }
    }
    Ok(())
}

#[get("/connections")]
async fn list(state: web::Data<AppState>, tenant: Tenant) -> Result<HttpResponse, ApiError> {
    let readable = tenant.caller.readable(Kind::Connection);
    let connections = store::connections::list(&state.pool.get().await?, tenant.organization_id, &readable).await?;
    Ok(envelope(connections.iter().map(to_json).collect()))
}

#[post("/connections")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    tenant: Tenant,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (org, caller) = (tenant.organization_id, &tenant.caller);
    caller.check(Action::Create, Kind::Connection, &[])?;
    idempotency::once(&state, &req, caller, &body, async {
        let input: ConnectionBody = parse_body(&body)?;
        let policies = input.policies.clone().unwrap_or_default();
        check_policies(&state.pool.get().await?, org, &policies).await?;
        let name = input::name(input.name.as_deref(), "name")?;
        let connector = connector(input.type_id.as_deref().ok_or_else(|| ApiError::bad_request("type is required"))?)?;
        let config = input.configuration.clone().ok_or_else(|| ApiError::unprocessable("configuration is required"))?;
        checked(&state, connector, &config, input.validate.unwrap_or(true)).await?;
        let sealed = credentials::seal(connector.spec(), &config, &state.secrets);
        let values = values(&input, &name, &sealed, &policies);
        let connection =
            store::connections::insert(&state.pool.get().await?, org, connector.spec().id, &values).await?;
        Ok(envelope(to_json(&connection)))
    })
    .await
}

#[derive(Deserialize)]
struct TestBody {
    #[serde(rename = "type")]
    type_id: Option<String>,
    configuration: Option<Json>,
    connection_id: Option<Uuid>,
}

/// Tries a configuration. With `connection_id`, the configuration given is laid over the saved
/// one; using the saved secrets needs the `update` permission on it and the same endpoint.
#[post("/connections/test")]
async fn test(state: web::Data<AppState>, caller: Caller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let input: TestBody = parse_body(&body)?;
    let mut config = input.configuration.unwrap_or_else(|| json!({}));
    let connector = match input.connection_id {
        Some(id) => {
            let saved = open_by_id(&state, &caller, id, Action::Update).await?;
            config = saved.overlaid(config)?;
            saved.connector
        }
        None => {
            caller.check(Action::Create, Kind::Connection, &[])?;
            connector(input.type_id.as_deref().ok_or_else(|| ApiError::bad_request("type is required"))?)?
        }
    };
    checked(&state, connector, &config, true).await?;
    Ok(envelope(json!({"success": true})))
}

#[get("/connections/{id}")]
async fn get_one(connection: Authorized<Connection, can::Read>) -> HttpResponse {
    envelope(to_json(&connection))
}

#[put("/connections/{id}")]
async fn update(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = (connection.organization_id, connection.id);
    let saved = open(&state, &connection)?;
    let input: ConnectionBody = parse_body(&body)?;
    let policies = input.policies.clone().unwrap_or_default();
    check_policies(&state.pool.get().await?, org, &policies).await?;
    let name = input::name(input.name.as_deref(), "name")?;
    let connector = match &input.type_id {
        Some(t) if t != saved.connector.spec().id => {
            return Err(ApiError::unprocessable("a connection's type cannot change"));
        }
        _ => saved.connector,
    };
    let mut config = input.configuration.clone().ok_or_else(|| ApiError::unprocessable("configuration is required"))?;
    keep_secrets(connector, &saved.config, &mut config)?;
    checked(&state, connector, &config, input.validate.unwrap_or(true)).await?;
    let sealed = credentials::seal(connector.spec(), &config, &state.secrets);
    let values = values(&input, &name, &sealed, &policies);
    let updated = store::connections::update(&state.pool.get().await?, org, id, &values).await?;
    Ok(envelope(to_json(&updated.ok_or_else(|| ApiError::not_found("connection"))?)))
}

#[derive(Deserialize)]
struct DeleteQuery {
    force: Option<bool>,
}

#[delete("/connections/{id}")]
async fn remove(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Delete>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = (connection.organization_id, connection.id);
    let client = state.pool.get().await?;
    if !query.force.unwrap_or(false) {
        let count = store::connections::users(&client, id).await?;
        if count > 0 {
            return Err(ApiError::unprocessable(format!(
                "the connection is used by {count} model(s), sync(s) or bulk sync(s); delete them first or pass force=true"
            )));
        }
    }
    store::connections::delete(&client, org, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
