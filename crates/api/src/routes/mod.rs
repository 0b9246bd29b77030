//! The REST routes under `/api`, grouped by resource. Every route of this directory is under
//! `/api`: `build.rs` relies on it for the route table.

use actix_web::{HttpResponse, web};
use base64::Engine;
use deadpool_postgres::GenericClient;
use serde_json::{Value as Json, json};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{
    AppState,
    access::{Action, Kind},
    auth::Caller,
    error::ApiError,
};

pub mod audit_events;
pub mod connection_discovery;
pub mod connections;
pub mod executions;
pub mod models;
pub mod organizations;
pub mod permissions;
pub mod syncs;
pub mod targets;
pub mod users;

/// Registers the `/api` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .configure(organizations::configure)
            .configure(users::configure)
            .configure(permissions::configure)
            .configure(audit_events::configure)
            .configure(connections::configure)
            .configure(connection_discovery::configure)
            .configure(targets::configure)
            .configure(models::configure)
            .configure(syncs::configure)
            .configure(executions::configure),
    );
}

/// Parses a path id; a malformed id names no object, so it is a 404.
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what))
}

/// Wraps `data` in the `{"data": …}` envelope.
pub fn envelope(data: Json) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "data": data }))
}

/// Reads `columns` of row `id` of `table` if it belongs to organization `org`. Other
/// organizations' objects do not exist for the caller: 404 naming `what`.
pub async fn owned_row(
    client: &impl GenericClient,
    table: &str,
    columns: &str,
    id: Uuid,
    org: Uuid,
    what: &str,
) -> Result<Row, ApiError> {
    let sql = format!("select {columns} from {table} where id = $1 and organization_id = $2");
    client.query_opt(&sql, &[&id, &org]).await?.ok_or_else(|| ApiError::not_found(what))
}

/// 404 unless object `id` of `kind` belongs to the caller's organization, 403 unless the
/// caller's roles allow `action` on it.
pub async fn authorize(
    client: &impl GenericClient,
    caller: &Caller,
    kind: Kind,
    id: Uuid,
    action: Action,
) -> Result<(), ApiError> {
    let row = owned_row(client, kind.table(), "policies", id, caller.organization()?, kind.as_str()).await?;
    caller.check(action, kind, &row.get::<_, Vec<String>>(0))
}

/// 422 unless every id in `policies` names a policy of organization `org`.
pub async fn check_policies(client: &impl GenericClient, org: Uuid, policies: &[String]) -> Result<(), ApiError> {
    let ids: Vec<Uuid> = policies
        .iter()
        .map(|p| Uuid::parse_str(p).map_err(|_| ApiError::unprocessable(format!("policies: {p:?} is not a policy id"))))
        .collect::<Result<_, _>>()?;
    let found: i64 = client
        .query_one("select count(*) from policies where organization_id = $1 and id = any($2)", &[&org, &ids])
        .await?
        .get(0);
    match found as usize == ids.len() {
        true => Ok(()),
        false => Err(ApiError::unprocessable("policies: every entry must be a policy of this organization")),
    }
}

/// Answers one object of `kind` the caller may read, or 404 (unknown ids, and other
/// organizations' objects, do not exist for the caller).
pub async fn get_owned(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    (kind, columns): (Kind, &str),
    to_json: fn(&Row) -> Json,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let id = parse_id(raw_id, kind.as_str())?;
    let columns = format!("{columns}, policies as access_policies");
    let row = owned_row(&state.pool.get().await?, kind.table(), &columns, id, org, kind.as_str()).await?;
    caller.check(Action::Read, kind, &row.get::<_, Vec<String>>("access_policies"))?;
    Ok(envelope(to_json(&row)))
}

/// Answers every object of `kind` in the caller's organization that the caller may read,
/// oldest first.
pub async fn list_owned(
    state: &AppState,
    caller: &Caller,
    (kind, columns): (Kind, &str),
    to_json: fn(&Row) -> Json,
) -> Result<HttpResponse, ApiError> {
    let org = caller.organization()?;
    let readable = caller.readable(kind);
    let sql = format!(
        "select {columns} from {} where organization_id = $1 and ($2 or policies && $3) order by created_at",
        kind.table()
    );
    let rows = state.pool.get().await?.query(&sql, &[&org, &readable.everywhere, &readable.policies]).await?;
    Ok(envelope(rows.iter().map(to_json).collect()))
}

/// One page of a list: `page_token` is an opaque offset.
pub struct Page {
    offset: i64,
    limit: i64,
}

impl Page {
    /// Reads the page from the query; `limit` defaults to and is capped at `max`. A token this
    /// API did not hand out answers 422.
    pub fn parse(token: Option<&str>, limit: Option<i64>, max: i64) -> Result<Self, ApiError> {
        let offset = match token.filter(|t| !t.is_empty()) {
            Some(token) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|offset| *offset >= 0)
                .ok_or_else(|| {
                    ApiError::unprocessable("page_token is not valid: pass the next_page_token of a previous page")
                        .with_metadata(json!({"field": "page_token"}))
                })?,
            None => 0,
        };
        Ok(Self { offset, limit: limit.unwrap_or(max).clamp(1, max) })
    }

    /// `LIMIT` and `OFFSET` values: one row more than the page, to know if another follows.
    pub fn bounds(&self) -> (i64, i64) {
        (self.limit + 1, self.offset)
    }

    /// The `{data, pagination}` envelope for rows fetched with [`Page::bounds`].
    pub fn respond(&self, rows: &[Row], to_json: impl Fn(&Row) -> Json) -> HttpResponse {
        let next = match rows.len() as i64 > self.limit {
            true => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode((self.offset + self.limit).to_string()),
            false => String::new(),
        };
        let data: Vec<Json> = rows.iter().take(self.limit as usize).map(to_json).collect();
        HttpResponse::Ok().json(json!({"data": data, "pagination": {"next_page_token": next}}))
    }
}
