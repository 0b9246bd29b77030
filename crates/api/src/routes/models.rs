//! Models: a SQL query (or table) on a source connection, with the fields it yields.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use syncline_core::record::Field;
use uuid::Uuid;

use super::{check_policies, connections, envelope};
use crate::{
    AppState,
    access::{Action, Kind},
    auth::Caller,
    error::{ApiError, parse_body},
    extract::{Authorized, Tenant, can},
    idempotency, input,
    store::{self, models::Model},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(create).service(preview).service(get_one).service(update).service(remove).service(sample);
}

fn to_json(model: &Model) -> Json {
    json!({
        "id": model.id,
        "name": model.name,
        "organization_id": model.organization_id,
        "connection_id": model.connection_id,
        "type": "query",
        "configuration": model.configuration,
        "fields": model.fields,
        "identifier": model.identifier,
        "tracking_columns": model.tracking_columns,
        "labels": model.labels,
        "policies": model.policies,
        "relations": [],
        "version": model.version,
        "created_at": model.created_at,
        "updated_at": model.updated_at,
    })
}

#[derive(Deserialize)]
struct ModelBody {
    name: Option<String>,
    connection_id: Option<Uuid>,
    configuration: Option<Json>,
    identifier: Option<String>,
    tracking_columns: Option<Vec<String>>,
    labels: Option<Vec<String>>,
    policies: Option<Vec<String>>,
}

/// `ModelField` of a field a model configuration yields, identified by `id` (`{model}.{name}`
/// within a model).
pub(super) fn field_json(field: &Field, id: String, unique: bool) -> Json {
    json!({
        "id": id,
        "name": field.name,
        "label": field.name,
        "type": field.field_type.api_name(),
        "remote_type": field.field_type.postgres_name(),
        "unique": unique,
        "user_added": false,
    })
}

/// A model body checked against its source: its fields as the API shows them.
struct Checked {
    name: String,
    connection_id: Uuid,
    configuration: Json,
    fields: Json,
}

/// Validates a model body: its connection must be one the caller may read, its query must run.
async fn check(state: &AppState, caller: &Caller, input: &ModelBody, model_id: Uuid) -> Result<Checked, ApiError> {
    let org = caller.organization()?;
    check_policies(&state.pool.get().await?, org, input.policies.as_deref().unwrap_or_default()).await?;
    let name = input::name(input.name.as_deref(), "name")?;
    let connection_id = input.connection_id.ok_or_else(|| ApiError::bad_request("connection_id is required"))?;
    let configuration =
        input.configuration.clone().ok_or_else(|| ApiError::bad_request("configuration is required"))?;
    let connection = connections::open_by_id(state, caller, connection_id, Action::Read).await.map_err(|e| match e
        .status
        .as_u16()
    {
        404 => ApiError::unprocessable("connection_id names no connection of this organization")
            .with_metadata(json!({"field": "connection_id"})),
        _ => e,
    })?;
    let source = connection.connector.source(&state.connector, &connection.config)?;
    let fields = source.model_fields(&configuration).await?;
    let now = chrono::Utc::now();
    let unique = input.identifier.as_deref();
    if let Some(identifier) = unique
        && !fields.iter().any(|f| f.name == identifier)
    {
        return Err(ApiError::bad_request(format!("identifier {identifier:?} is not a field of the model")));
    }
    let fields: Vec<Json> = fields
        .iter()
        .map(|f| {
            let mut field = field_json(f, format!("{model_id}.{}", f.name), unique == Some(f.name.as_str()));
            (field["created_at"], field["updated_at"]) = (json!(now), json!(now));
            field
        })
        .collect();
    Ok(Checked { name: name.to_owned(), connection_id, configuration, fields: json!(fields) })
}

impl Checked {
    /// What [`store::models::insert`] and [`store::models::update`] store for `input`.
    fn values<'a>(&'a self, input: &'a ModelBody, labels: &'a Json) -> store::models::Values<'a> {
        store::models::Values {
            connection_id: self.connection_id,
            name: &self.name,
            configuration: &self.configuration,
            fields: &self.fields,
            identifier: input.identifier.as_deref(),
            tracking_columns: input.tracking_columns.as_deref().unwrap_or_default(),
            labels,
            policies: input.policies.as_deref().unwrap_or_default(),
        }
    }
}

#[get("/models")]
async fn list(state: web::Data<AppState>, tenant: Tenant) -> Result<HttpResponse, ApiError> {
    let readable = tenant.caller.readable(Kind::Model);
    let models = store::models::list(&state.pool.get().await?, tenant.organization_id, &readable).await?;
    Ok(envelope(models.iter().map(to_json).collect()))
}

#[post("/models")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    tenant: Tenant,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (org, caller) = (tenant.organization_id, &tenant.caller);
    caller.check(Action::Create, Kind::Model, &[])?;
    idempotency::once(&state, &req, caller, &body, async {
        let input: ModelBody = parse_body(&body)?;
        let id = Uuid::new_v4();
        let checked = check(&state, caller, &input, id).await?;
        let labels = json!(input.labels.clone().unwrap_or_default());
        let model = store::models::insert(&state.pool.get().await?, org, id, &checked.values(&input, &labels)).await?;
        Ok(envelope(to_json(&model)))
    })
    .await
}

#[post("/model-preview")]
async fn preview(state: web::Data<AppState>, tenant: Tenant, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let org = tenant.organization_id;
    let input: ModelBody = parse_body(&body)?;
    let model = check(&state, &tenant.caller, &input, Uuid::nil()).await?;
    Ok(envelope(json!({
        "name": model.name,
        "organization_id": org,
        "connection_id": model.connection_id,
        "configuration": model.configuration,
        "fields": model.fields,
        "identifier": input.identifier,
    })))
}

#[get("/models/{id}")]
async fn get_one(model: Authorized<Model, can::Read>) -> HttpResponse {
    envelope(to_json(&model))
}

#[put("/models/{id}")]
async fn update(
    state: web::Data<AppState>,
    model: Authorized<Model, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = (model.organization_id, model.id);
    let input: ModelBody = parse_body(&body)?;
    // No state-database connection is held while the source checks the query.
    let checked = check(&state, &model.caller, &input, id).await?;
    let labels = json!(input.labels.clone().unwrap_or_default());
    let updated = store::models::update(&state.pool.get().await?, org, id, &checked.values(&input, &labels)).await?;
    Ok(envelope(to_json(&updated.ok_or_else(|| ApiError::not_found("model"))?)))
}

#[derive(Deserialize)]
struct DeleteQuery {
    force: Option<bool>,
}

#[delete("/models/{id}")]
async fn remove(
    state: web::Data<AppState>,
    model: Authorized<Model, can::Delete>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let (org, id) = (model.organization_id, model.id);
    let client = state.pool.get().await?;
    let used = store::models::users(&client, id).await?;
    if used > 0 && !query.force.unwrap_or(false) {
        return Err(ApiError::unprocessable(format!(
            "the model is used by {used} sync(s); delete them first or pass force=true"
        )));
    }
    store::models::delete(&client, org, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[get("/models/{id}/sample")]
async fn sample(state: web::Data<AppState>, model: Authorized<Model, can::Read>) -> Result<HttpResponse, ApiError> {
    let connection = connections::open_by_id(&state, &model.caller, model.connection_id, Action::Read).await?;
    let source = connection.connector.source(&state.connector, &connection.config)?;
    let records = source.sample(&model.configuration, 10).await?;
    let records: Vec<Json> = records.into_iter().map(|r| json!({ model.id.to_string(): r })).collect();
    Ok(envelope(json!({"records": records, "warnings": []})))
}
