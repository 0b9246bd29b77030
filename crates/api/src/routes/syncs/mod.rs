//! Model syncs: configuration, starting executions, status.

mod validate;

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use syncline_core::{
    executions::{self, MODEL_SYNC, StartError},
    schedule::{self, FREQUENCIES},
    sync::SyncSpec,
};
use tokio_postgres::Row;
use uuid::Uuid;

use self::validate::validate;
use super::{Page, authorize, envelope, executions as execution_routes, get_owned, parse_id};
use crate::{
    AppState,
    access::{Action, Kind},
    auth::Caller,
    error::{ApiError, parse_body},
    idempotency,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(schedules)
        .service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(start)
        .service(status)
        .service(activate)
        .service(cancel);
}

const COLUMNS: &str =
    "id, organization_id, name, active, mode, spec, model_id, target_connection_id, created_at, updated_at";

fn to_json(row: &Row) -> Json {
    let mut sync = match row.get::<_, Json>(5) {
        Json::Object(map) => map,
        _ => Map::new(),
    };
    let model_id: Uuid = row.get(6);
    for (key, value) in [
        ("id", json!(row.get::<_, Uuid>(0))),
        ("organization_id", json!(row.get::<_, Uuid>(1))),
        ("name", json!(row.get::<_, String>(2))),
        ("active", json!(row.get::<_, bool>(3))),
        ("mode", json!(row.get::<_, String>(4))),
        ("model_ids", json!([model_id])),
        ("problems", json!([])),
        ("created_at", json!(row.get::<_, chrono::DateTime<chrono::Utc>>(8))),
        ("updated_at", json!(row.get::<_, chrono::DateTime<chrono::Utc>>(9))),
    ] {
        sync.insert(key.into(), value);
    }
    Json::Object(sync)
}

fn list_item(row: &Row) -> Json {
    let spec: Json = row.get(5);
    json!({
        "id": row.get::<_, Uuid>(0),
        "organization_id": row.get::<_, Uuid>(1),
        "name": row.get::<_, String>(2),
        "active": row.get::<_, bool>(3),
        "mode": row.get::<_, String>(4),
        "model_ids": [row.get::<_, Uuid>(6)],
        "target_connection_id": row.get::<_, Uuid>(7),
        "target_object": spec["target"]["object"],
        "schedule": spec["schedule"],
        "created_at": row.get::<_, chrono::DateTime<chrono::Utc>>(8),
        "updated_at": row.get::<_, chrono::DateTime<chrono::Utc>>(9),
    })
}

#[get("/syncs/schedules")]
async fn schedules(_caller: Caller) -> HttpResponse {
    let options: Vec<Json> = FREQUENCIES
        .iter()
        .map(|(frequency, description)| json!({"frequency": frequency, "label": frequency, "description": description, "configuration": {}}))
        .collect();
    envelope(json!({ "schedule_options": options }))
}

#[derive(Deserialize)]
struct ListQuery {
    active: Option<bool>,
    mode: Option<String>,
    target_connection_id: Option<Uuid>,
    page_token: Option<String>,
    limit: Option<i64>,
}

#[get("/syncs")]
async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let readable = caller.readable(Kind::Sync);
    let page = Page::parse(query.page_token.as_deref(), query.limit, 50)?;
    let (limit, offset) = page.bounds();
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "select {COLUMNS} from model_syncs where organization_id = $1 and ($2::bool is null or active = $2)
                      and ($3::text is null or mode = $3) and ($4::uuid is null or target_connection_id = $4)
                      and ($7 or policies && $8) order by updated_at desc, id limit $5 offset $6"
            ),
            &[
                &org,
                &query.active,
                &query.mode,
                &query.target_connection_id,
                &limit,
                &offset,
                &readable.everywhere,
                &readable.policies,
            ],
        )
        .await?;
    Ok(page.respond(&rows, list_item))
}

#[post("/syncs")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    caller.check(Action::Create, Kind::Sync, &[])?;
    idempotency::once(&state, &req, &caller, &body, async {
        let valid = validate(&state, &caller, &body).await?;
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let id = Uuid::new_v4();
        let row = tx
            .query_one(
                &format!("insert into model_syncs (id, organization_id, model_id, target_connection_id, name, active, mode, spec, policies)
                          values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning {COLUMNS}"),
                &[&id, &org, &valid.model_id, &valid.spec.target.connection_id, &valid.name, &valid.active,
                  &valid.spec.mode.as_str(), &valid.echo, &valid.policies],
            )
            .await?;
        schedule::set(&tx, (MODEL_SYNC, id, org), &valid.spec.schedule, valid.next_run_at).await?;
        tx.commit().await?;
        Ok(envelope(to_json(&row)))
    })
    .await
}

#[get("/syncs/{id}")]
async fn get_one(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get_owned(&state, &caller, &path, (Kind::Sync, COLUMNS), to_json).await
}

#[put("/syncs/{id}")]
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(&path, "sync")?;
    authorize(&state.pool.get().await?, &caller, Kind::Sync, id, Action::Update).await?;
    // No state-database connection is held while the destination is asked about the target.
    let valid = validate(&state, &caller, &body).await?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            &format!("update model_syncs set model_id = $3, target_connection_id = $4, name = $5, active = $6, mode = $7, spec = $8,
                      policies = $9, updated_at = now() where id = $1 and organization_id = $2 returning {COLUMNS}"),
            &[&id, &org, &valid.model_id, &valid.spec.target.connection_id, &valid.name, &valid.active,
              &valid.spec.mode.as_str(), &valid.echo, &valid.policies],
        )
        .await?;
    schedule::set(&tx, (MODEL_SYNC, id, org), &valid.spec.schedule, valid.next_run_at).await?;
    tx.commit().await?;
    Ok(envelope(to_json(&row)))
}

#[delete("/syncs/{id}")]
async fn remove(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(&path, "sync")?;
    let client = state.pool.get().await?;
    authorize(&client, &caller, Kind::Sync, id, Action::Delete).await?;
    let row = client
        .query_opt(
            "delete from model_syncs where id = $1 and organization_id = $2 returning snapshot_path",
            &[&id, &org],
        )
        .await?;
    row.ok_or_else(|| ApiError::not_found("sync"))?;
    if let Err(e) = state.store.delete_prefix(&format!("syncs/{id}")).await {
        tracing::warn!(sync_id = %id, error = %e, "could not remove the sync's diff state");
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct StartBody {
    resync: Option<bool>,
}

/// Starts an execution of `sync_id` and enqueues it; 409 if one is in progress.
pub async fn start_execution(
    state: &AppState,
    org: Uuid,
    sync_id: Uuid,
    trigger: &str,
    resync: bool,
) -> Result<Json, ApiError> {
    let client = state.pool.get().await?;
    let id = executions::create(&client, MODEL_SYNC, sync_id, org, trigger, resync).await.map_err(|e| match e {
        StartError::AlreadyRunning => ApiError::conflict("the sync already has an execution in progress"),
        StartError::Db(e) => e.into(),
    })?;
    if let Err(e) = state.queues.enqueue(MODEL_SYNC, id).await {
        tracing::error!(execution_id = %id, error = %e, "cannot enqueue execution");
        client
            .execute(
                "update executions set status = 'failed', errors = $2, completed_at = now() where id = $1",
                &[&id, &json!(["the job queue is unavailable"])],
            )
            .await?;
        return Err(ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "the job queue is unavailable"));
    }
    let row = client
        .query_one(&format!("select {} from executions e where e.id = $1", execution_routes::COLUMNS), &[&id])
        .await?;
    Ok(execution_routes::to_json(&row))
}

#[post("/syncs/{id}/executions")]
async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(&path, "sync")?;
    idempotency::once(&state, &req, &caller, &body, async {
        let input: StartBody = parse_body(&body)?;
        authorize(&state.pool.get().await?, &caller, Kind::Sync, id, Action::Run).await?;
        Ok(envelope(start_execution(&state, org, id, "manual", input.resync.unwrap_or(false)).await?))
    })
    .await
}

#[get("/syncs/{id}/status")]
async fn status(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(&path, "sync")?;
    let client = state.pool.get().await?;
    authorize(&client, &caller, Kind::Sync, id, Action::Read).await?;
    client
        .query_opt("select 1 from model_syncs where id = $1 and organization_id = $2", &[&id, &org])
        .await?
        .ok_or_else(|| ApiError::not_found("sync"))?;
    let next_run_at = schedule::next_run_at(&client, MODEL_SYNC, id).await?;
    let cols = execution_routes::COLUMNS;
    let current = client
        .query_opt(&format!("select {cols} from executions e where e.kind = 'model_sync' and e.subject_id = $1 and e.status = any($2) order by e.created_at desc limit 1"),
            &[&id, &executions::ACTIVE])
        .await?;
    let last = client
        .query_opt(&format!("select {cols} from executions e where e.kind = 'model_sync' and e.subject_id = $1 and not (e.status = any($2)) order by e.created_at desc limit 1"),
            &[&id, &executions::ACTIVE])
        .await?;
    Ok(envelope(json!({
        "current_execution": current.as_ref().map(execution_routes::to_json),
        "last_execution": last.as_ref().map(execution_routes::to_json),
        "next_execution_time": next_run_at,
    })))
}

#[derive(Deserialize)]
struct ActivateBody {
    active: Option<bool>,
}

#[post("/syncs/{id}/activate")]
async fn activate(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(&path, "sync")?;
    let client = state.pool.get().await?;
    authorize(&client, &caller, Kind::Sync, id, Action::Update).await?;
    let input: ActivateBody = parse_body(&body)?;
    let active = input.active.ok_or_else(|| ApiError::unprocessable("active is required"))?;
    let row = client
        .query_opt("select spec from model_syncs where id = $1 and organization_id = $2", &[&id, &org])
        .await?
        .ok_or_else(|| ApiError::not_found("sync"))?;
    let spec: SyncSpec = serde_json::from_value(row.get(0))
        .map_err(|e| ApiError::unprocessable(format!("stored sync is invalid: {e}")))?;
    let next_run_at = match active {
        true => spec.schedule.next_after(chrono::Utc::now()).map_err(ApiError::unprocessable)?,
        false => None,
    };
    client
        .execute("update model_syncs set active = $3, spec = jsonb_set(spec, '{active}', to_jsonb($3::boolean)), updated_at = now()
                  where id = $1 and organization_id = $2", &[&id, &org, &active])
        .await?;
    schedule::set(&client, (MODEL_SYNC, id, org), &spec.schedule, next_run_at).await?;
    Ok(envelope(json!({ "id": id, "active": active })))
}

#[post("/syncs/{id}/cancel")]
async fn cancel(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path, "sync")?;
    let client = state.pool.get().await?;
    authorize(&client, &caller, Kind::Sync, id, Action::Run).await?;
    let message = match execution_routes::request_cancel(&client, id, None).await? {
        0 => "no execution is running",
        _ => "cancel requested",
    };
    Ok(envelope(json!({ "message": message })))
}
