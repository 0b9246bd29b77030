//! What a connection offers and what uses it: the values a configuration field may take
//! (`parameter_values`, e.g. the databases of a server) and the syncs that use a connection
//! (`usage`).

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::connector::{DynConnector, ParameterValue};
use uuid::Uuid;

use super::{connections, envelope};
use crate::{
    AppState,
    access::{Action, Kind},
    error::{ApiError, parse_body},
    extract::{Authorized, Tenant, can},
    store::{self, connections::Connection},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(type_values).service(connection_values).service(usage);
}

#[derive(Deserialize)]
struct ValuesBody {
    field: Option<String>,
    /// The draft configuration.
    parameters: Option<Json>,
    connection_id: Option<Uuid>,
    /// Search text: only values whose label contains it.
    query: Option<String>,
}

/// `{allows_creation, values}` for one field: listed values, or free input when the connector
/// lists none.
fn field_values(values: Option<Vec<ParameterValue>>, query: Option<&str>) -> Json {
    let query = query.map(str::to_lowercase).filter(|q| !q.is_empty());
    let listed = values.is_some();
    let values: Vec<Json> = values
        .unwrap_or_default()
        .into_iter()
        .filter(|v| query.as_ref().is_none_or(|q| v.label.to_lowercase().contains(q)))
        .map(|v| json!({"label": v.label, "value": v.value}))
        .collect();
    json!({"allows_creation": !listed, "values": values})
}

/// Asks the connector for a field's values, once the egress policy allows the configuration.
async fn values_of(
    state: &AppState,
    connector: &dyn DynConnector,
    config: &Json,
    field: &str,
) -> Result<Option<Vec<ParameterValue>>, ApiError> {
    connector.endpoint(config)?.check(&state.connector).await?;
    Ok(connector.parameter_values(&state.connector, config, field).await?)
}

/// The values configuration field `field` of a type may take, for a draft configuration
/// (laid over a saved connection's when `connection_id` is given; using its secrets needs
/// `update` on it, as testing it does).
#[post("/connection_types/{type}/parameter_values")]
async fn type_values(
    state: web::Data<AppState>,
    tenant: Tenant,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = &tenant.caller;
    let connector = syncline_connectors::get(&path).ok_or_else(|| ApiError::not_found("connection type"))?;
    let input: ValuesBody = parse_body(&body)?;
    let field = input.field.filter(|f| !f.is_empty()).ok_or_else(|| ApiError::bad_request("field is required"))?;
    let draft = input.parameters.unwrap_or_else(|| json!({}));
    let config = match input.connection_id {
        Some(id) => {
            let saved = connections::open_by_id(&state, caller, id, Action::Update).await?;
            if saved.connector.spec().id != connector.spec().id {
                return Err(ApiError::unprocessable(format!(
                    "connection {id} is not a {} connection",
                    connector.spec().id
                ))
                .with_metadata(json!({"field": "connection_id"})));
            }
            saved.overlaid(draft)?
        }
        None => {
            caller.check(Action::Create, Kind::Connection, &[])?;
            draft
        }
    };
    let values = values_of(&state, connector.as_ref(), &config, &field).await?;
    Ok(envelope(json!({ field: field_values(values, input.query.as_deref()) })))
}

/// The values every listable configuration field of a saved connection may take.
#[get("/connections/{id}/parameter_values")]
async fn connection_values(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
) -> Result<HttpResponse, ApiError> {
    let saved = connections::open(&state, &connection)?;
    let fields: Vec<String> = saved.connector.spec().config_schema["properties"]
        .as_object()
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default();
    let mut data = serde_json::Map::new();
    for field in fields {
        if let Some(values) = values_of(&state, saved.connector.as_ref(), &saved.config, &field).await? {
            data.insert(field, field_values(Some(values), None));
        }
    }
    Ok(envelope(Json::Object(data)))
}

/// What uses a connection: the model syncs that read from it (through their model) or write to
/// it, each with its executions of the last 24 hours. Database backends do not count API calls,
/// so `callsLast24h` counts executions, as each sync's `totalCalls` does.
#[get("/connections/{id}/usage")]
async fn usage(
    state: web::Data<AppState>,
    connection: Authorized<Connection, can::Read>,
) -> Result<HttpResponse, ApiError> {
    let syncs = store::connections::usage(&state.pool.get().await?, connection.organization_id, connection.id).await?;
    let by_sync: Vec<Json> = syncs
        .iter()
        .map(|sync| {
            json!({
                "syncId": sync.sync_id,
                "syncName": sync.name,
                "syncType": "model_sync",
                "lastRunAt": sync.last_run_at,
                "totalCalls": sync.runs,
                "categories": [{"key": "executions", "label": "Executions", "calls": sync.runs}],
            })
        })
        .collect();
    Ok(envelope(json!({
        "connectionId": connection.id,
        "callsLast24h": syncs.iter().map(|sync| sync.runs).sum::<i64>(),
        "reportsSyncStats": true,
        "bySync": by_sync,
    })))
}
