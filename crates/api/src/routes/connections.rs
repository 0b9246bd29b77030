//! Connection types and connections. Secrets are sealed at rest and never returned.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::{
    connector::{ConnectorError, DynConnector},
    credentials, jsonschema,
};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{authorize, check_policies, envelope, get_owned, list_owned, parse_id};
use crate::{
    AppState,
    access::{Action, Kind},
    auth::Caller,
    error::{ApiError, parse_body},
    idempotency, input,
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

const COLUMNS: &str = "id, name, organization_id, type, configuration, status, status_error, policies, healthcheck_interval, created_at, updated_at";

fn connector(type_id: &str) -> Result<&'static Arc<dyn DynConnector>, ApiError> {
    syncline_connectors::get(type_id).ok_or_else(|| {
        let known: Vec<&str> = syncline_connectors::all().iter().map(|c| c.spec().id).collect();
        ApiError::bad_request(format!("unknown connection type {type_id:?} (supported: {})", known.join(", ")))
    })
}

fn to_json(row: &Row) -> Json {
    let type_id: String = row.get(3);
    let name = syncline_connectors::get(&type_id).map_or(type_id.as_str(), |c| c.spec().name);
    json!({
        "id": row.get::<_, Uuid>(0),
        "name": row.get::<_, String>(1),
        "organization_id": row.get::<_, Uuid>(2),
        "type": {"id": type_id, "name": name, "operations": []},
        "configuration": row.get::<_, Json>(4),
        "status": row.get::<_, String>(5),
        "status_error": row.get::<_, Option<String>>(6),
        "saved": true,
        "policies": row.get::<_, Vec<String>>(7),
        "healthcheck_interval": row.get::<_, Option<String>>(8),
        "created_at": row.get::<_, chrono::DateTime<chrono::Utc>>(9),
        "updated_at": row.get::<_, chrono::DateTime<chrono::Utc>>(10),
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

/// Loads connection `id` for `caller` to do `action` with: 404 for other organizations'
/// connections, 403 when the caller's roles do not allow `action`.
pub async fn open(state: &AppState, caller: &Caller, id: Uuid, action: Action) -> Result<OpenConnection, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "select type, configuration, secrets, policies from connections where id = $1 and organization_id = $2",
            &[&id, &caller.organization()?],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("connection"))?;
    caller.check(action, Kind::Connection, &row.get::<_, Vec<String>>(3))?;
    let (type_id, public, sealed): (String, Json, Option<Vec<u8>>) = (row.get(0), row.get(1), row.get(2));
    let config = credentials::unseal(&public, sealed.as_deref(), &state.secrets).map_err(|e| {
        tracing::error!(connection_id = %id, error = %e, "cannot open connection secrets");
        ApiError::unprocessable(format!("the connection's stored credentials cannot be read: {e}"))
    })?;
    Ok(OpenConnection { connector: connector(&type_id)?, config })
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
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    list_owned(&state, &caller, (Kind::Connection, COLUMNS), to_json).await
}

#[post("/connections")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    caller.check(Action::Create, Kind::Connection, &[])?;
    idempotency::once(&state, &req, &caller, &body, async {
        let input: ConnectionBody = parse_body(&body)?;
        let policies = input.policies.clone().unwrap_or_default();
        check_policies(&state.pool.get().await?, org, &policies).await?;
        let name = input::name(input.name.as_deref(), "name")?;
        let connector = connector(input.type_id.as_deref().ok_or_else(|| ApiError::bad_request("type is required"))?)?;
        let config = input.configuration.clone().ok_or_else(|| ApiError::unprocessable("configuration is required"))?;
        checked(&state, connector, &config, input.validate.unwrap_or(true)).await?;
        let (public, sealed) = credentials::seal(connector.spec(), &config, &state.secrets);
        let client = state.pool.get().await?;
        let row = client
            .query_one(
                &format!("insert into connections (id, organization_id, name, type, configuration, secrets, healthcheck_interval, policies)
                          values ($1, $2, $3, $4, $5, $6, $7, $8) returning {COLUMNS}"),
                &[&Uuid::new_v4(), &org, &name, &connector.spec().id, &public, &sealed, &input.healthcheck_interval, &policies],
            )
            .await?;
        Ok(envelope(to_json(&row)))
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
            let saved = open(&state, &caller, id, Action::Update).await?;
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
async fn get_one(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get_owned(&state, &caller, &path, (Kind::Connection, COLUMNS), to_json).await
}

#[put("/connections/{id}")]
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(&path, "connection")?;
    let saved = open(&state, &caller, id, Action::Update).await?;
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
    let (public, sealed) = credentials::seal(connector.spec(), &config, &state.secrets);
    let client = state.pool.get().await?;
    let row = client
        .query_one(
            &format!("update connections set name = $3, configuration = $4, secrets = $5, healthcheck_interval = $6, policies = $7,
                      status = 'healthy', status_error = null, updated_at = now() where id = $1 and organization_id = $2 returning {COLUMNS}"),
            &[&id, &org, &name, &public, &sealed, &input.healthcheck_interval, &policies],
        )
        .await?;
    Ok(envelope(to_json(&row)))
}

#[derive(Deserialize)]
struct DeleteQuery {
    force: Option<bool>,
}

#[delete("/connections/{id}")]
async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(&path, "connection")?;
    let client = state.pool.get().await?;
    authorize(&client, &caller, Kind::Connection, id, Action::Delete).await?;
    if !query.force.unwrap_or(false) {
        let users = client
            .query_one(
                "select (select count(*) from models where connection_id = $1) + (select count(*) from model_syncs where target_connection_id = $1)",
                &[&id],
            )
            .await?;
        let count: i64 = users.get(0);
        if count > 0 {
            return Err(ApiError::unprocessable(format!(
                "the connection is used by {count} model(s) or sync(s); delete them first or pass force=true"
            )));
        }
    }
    client.execute("delete from connections where id = $1 and organization_id = $2", &[&id, &org]).await?;
    Ok(HttpResponse::NoContent().finish())
}
