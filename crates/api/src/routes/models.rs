//! Models: a SQL query (or table) on a source connection, with the fields it yields.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{authorize, check_policies, connections, envelope, get_owned, list_owned, parse_id};
use crate::{
    AppState,
    access::{Action, Kind},
    auth::Caller,
    error::{ApiError, parse_body},
    idempotency, input,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(create).service(preview).service(get_one).service(update).service(remove).service(sample);
}

const COLUMNS: &str = "id, name, organization_id, connection_id, configuration, fields, identifier, tracking_columns, labels, policies, version, created_at, updated_at";

fn to_json(row: &Row) -> Json {
    json!({
        "id": row.get::<_, Uuid>(0),
        "name": row.get::<_, String>(1),
        "organization_id": row.get::<_, Uuid>(2),
        "connection_id": row.get::<_, Uuid>(3),
        "type": "query",
        "configuration": row.get::<_, Json>(4),
        "fields": row.get::<_, Json>(5),
        "identifier": row.get::<_, Option<String>>(6),
        "tracking_columns": row.get::<_, Vec<String>>(7),
        "labels": row.get::<_, Json>(8),
        "policies": row.get::<_, Vec<String>>(9),
        "relations": [],
        "version": row.get::<_, i32>(10),
        "created_at": row.get::<_, chrono::DateTime<chrono::Utc>>(11),
        "updated_at": row.get::<_, chrono::DateTime<chrono::Utc>>(12),
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
    let connection =
        connections::open(state, caller, connection_id, Action::Read).await.map_err(|e| match e.status.as_u16() {
            404 => ApiError::bad_request("connection_id names no connection of this organization"),
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
            json!({
                "id": format!("{model_id}.{}", f.name),
                "name": f.name,
                "label": f.name,
                "type": f.field_type.api_name(),
                "remote_type": f.field_type.postgres_name(),
                "unique": unique == Some(f.name.as_str()),
                "user_added": false,
                "created_at": now,
                "updated_at": now,
            })
        })
        .collect();
    Ok(Checked { name: name.to_owned(), connection_id, configuration, fields: json!(fields) })
}

#[get("/models")]
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    list_owned(&state, &caller, (Kind::Model, COLUMNS), to_json).await
}

#[post("/models")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    caller.check(Action::Create, Kind::Model, &[])?;
    idempotency::once(&state, &req, &caller, &body, async {
        let input: ModelBody = parse_body(&body)?;
        let id = Uuid::new_v4();
        let model = check(&state, &caller, &input, id).await?;
        let client = state.pool.get().await?;
        let row = client
            .query_one(
                &format!("insert into models (id, organization_id, connection_id, name, configuration, fields, identifier, tracking_columns, labels, policies)
                          values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning {COLUMNS}"),
                &[&id, &org, &model.connection_id, &model.name, &model.configuration, &model.fields, &input.identifier,
                  &input.tracking_columns.clone().unwrap_or_default(), &json!(input.labels.clone().unwrap_or_default()), &input.policies.clone().unwrap_or_default()],
            )
            .await?;
        Ok(envelope(to_json(&row)))
    })
    .await
}

#[post("/model-preview")]
async fn preview(state: web::Data<AppState>, caller: Caller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let input: ModelBody = parse_body(&body)?;
    let model = check(&state, &caller, &input, Uuid::nil()).await?;
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
async fn get_one(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get_owned(&state, &caller, &path, (Kind::Model, COLUMNS), to_json).await
}

#[put("/models/{id}")]
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(&path, "model")?;
    let input: ModelBody = parse_body(&body)?;
    authorize(&state.pool.get().await?, &caller, Kind::Model, id, Action::Update).await?;
    // No state-database connection is held while the source checks the query.
    let model = check(&state, &caller, &input, id).await?;
    let row = state
        .pool
        .get()
        .await?
        .query_one(
            &format!("update models set connection_id = $3, name = $4, configuration = $5, fields = $6, identifier = $7, tracking_columns = $8,
                      labels = $9, policies = $10, version = version + 1, updated_at = now() where id = $1 and organization_id = $2 returning {COLUMNS}"),
            &[&id, &org, &model.connection_id, &model.name, &model.configuration, &model.fields, &input.identifier,
              &input.tracking_columns.clone().unwrap_or_default(), &json!(input.labels.clone().unwrap_or_default()), &input.policies.clone().unwrap_or_default()],
        )
        .await?;
    Ok(envelope(to_json(&row)))
}

#[derive(Deserialize)]
struct DeleteQuery {
    force: Option<bool>,
}

#[delete("/models/{id}")]
async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(&path, "model")?;
    let client = state.pool.get().await?;
    authorize(&client, &caller, Kind::Model, id, Action::Delete).await?;
    let used: i64 = client.query_one("select count(*) from model_syncs where model_id = $1", &[&id]).await?.get(0);
    if used > 0 && !query.force.unwrap_or(false) {
        return Err(ApiError::unprocessable(format!(
            "the model is used by {used} sync(s); delete them first or pass force=true"
        )));
    }
    client.execute("delete from models where id = $1 and organization_id = $2", &[&id, &org]).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[get("/models/{id}/sample")]
async fn sample(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(&path, "model")?;
    let row = {
        let client = state.pool.get().await?;
        authorize(&client, &caller, Kind::Model, id, Action::Read).await?;
        client
            .query_opt(
                "select connection_id, configuration from models where id = $1 and organization_id = $2",
                &[&id, &org],
            )
            .await?
            .ok_or_else(|| ApiError::not_found("model"))?
    };
    let connection = connections::open(&state, &caller, row.get(0), Action::Read).await?;
    let source = connection.connector.source(&state.connector, &connection.config)?;
    let records = source.sample(&row.get::<_, Json>(1), 10).await?;
    let records: Vec<Json> = records.into_iter().map(|r| json!({ id.to_string(): r })).collect();
    Ok(envelope(json!({"records": records, "warnings": []})))
}
