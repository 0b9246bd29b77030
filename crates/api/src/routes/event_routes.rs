//! An event source's routes: where its events are delivered. A route names a warehouse
//! connection the caller may read, a layout (`source_table`, Polku's one table per source, or
//! `segment`, Segment's warehouse tables) and a schema (the source's name in snake_case unless
//! given). Creating a route starts its delivery (kind `event_delivery`) through its schedule;
//! a new route delivers every event of its source the store still holds.

use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::Utc;
use serde_json::{Map, Value as Json, json};
use syncline_core::{
    events::{
        filter::Filter,
        layout::{self, Layout},
    },
    executions::EVENT_DELIVERY,
    schedule,
    sync::Schedule,
};
use uuid::Uuid;

use super::{envelope, parse_id};
use crate::{
    AppState,
    access::Action,
    error::{ApiError, parse_body},
    extract::{Authorized, Tenant, authorized, can},
    store::{
        self,
        connections::Connection,
        event_routes::{EventRoute, RouteSpec},
        event_sources::EventSource,
        models::Model,
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(create).service(get_one).service(update).service(remove);
}

/// The fields of a route body.
const FIELDS: &[&str] = &["connection_id", "layout", "schema", "enrichment", "lookup", "filters"];
/// Traits one route may add.
const MAX_ENRICHMENT: usize = 20;

pub(super) fn to_json(route: &EventRoute) -> Json {
    json!({
        "id": route.id,
        "source_id": route.source_id,
        "connection_id": route.connection_id,
        "layout": route.layout,
        "schema": route.schema,
        "enrichment": route.enrichment,
        "lookup": route.lookup,
        "filters": route.filters,
        "created_at": route.created_at,
        "updated_at": route.updated_at,
        "counts": {
            "delivered": route.delivered,
            "deduplicated": route.deduplicated,
            "filtered": route.filtered,
            "dead_lettered": route.dead_lettered,
        },
        "last_received_at": route.last_received_at,
        "delivered_at": route.delivered_at,
    })
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::unprocessable(message).with_metadata(json!({ "field": field }))
}

/// A route as the body asks for it, checked: fields it does not have, a connection the caller
/// cannot read or that takes no events, an unknown layout and a schema name that is not
/// snake_case are 422 naming the field.
struct RouteBody {
    connection_id: Uuid,
    layout: Layout,
    schema: String,
    /// Traits of the event's user each row gets as `user_<trait>` (`["name"]`: Polku's
    /// `user_name`), from the organization's identify calls.
    enrichment: Vec<String>,
    /// A model whose row for the event's user gives `user_<field>` columns:
    /// `{"model_id", "key" (its field holding user ids), "fields"}`.
    lookup: Option<Json>,
    /// Which events it takes ([`Filter`]).
    filters: Json,
}

impl RouteBody {
    async fn parse(state: &AppState, tenant: &Tenant, source: &EventSource, body: &[u8]) -> Result<Self, ApiError> {
        let body: Map<String, Json> = parse_body(body)?;
        if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(unknown, format!("{unknown} is not a field of an event route")));
        }
        let connection = text(&body, "connection_id")?
            .ok_or_else(|| invalid("connection_id", "connection_id is required".into()))?;
        let missing = || invalid("connection_id", "connection_id names no connection of this organization".into());
        let connection_id = Uuid::parse_str(connection).map_err(|_| missing())?;
        let connection = authorized::<Connection>(state, &tenant.caller, connection_id, Action::Read)
            .await
            .map_err(|e| if e.status.as_u16() == 404 { missing() } else { e })?;
        let takes_events = syncline_connectors::get(&connection.type_id).is_some_and(|c| c.spec().capabilities.events);
        if !takes_events {
            let message = format!("connection_id: a {} connection cannot take events", connection.type_id);
            return Err(invalid("connection_id", message));
        }
        let layout = match text(&body, "layout")? {
            None => Layout::SourceTable,
            Some(name) => Layout::parse(name)
                .ok_or_else(|| invalid("layout", format!("layout {name:?} is not source_table or segment")))?,
        };
        let schema = match text(&body, "schema")? {
            None => layout::table_name(&source.name),
            Some(schema) if layout::table_name(schema) == schema => schema.to_owned(),
            Some(schema) => {
                let message = format!("schema {schema:?} is not a snake_case name of at most 63 bytes");
                return Err(invalid("schema", message));
            }
        };
        let enrichment: Vec<String> = match body.get("enrichment") {
            None | Some(Json::Null) => vec![],
            Some(traits) => serde_json::from_value(traits.clone())
                .ok()
                .filter(|t: &Vec<String>| t.len() <= MAX_ENRICHMENT && t.iter().all(|t| !layout::snake(t).is_empty()))
                .ok_or_else(|| {
                    let message = format!("enrichment must list at most {MAX_ENRICHMENT} trait names (like \"name\")");
                    invalid("enrichment", message)
                })?,
        };
        let lookup = match body.get("lookup") {
            None | Some(Json::Null) => None,
            Some(given) => Some(lookup(state, tenant, given).await?),
        };
        let filters = match body.get("filters") {
            None | Some(Json::Null) => Filter::default(),
            Some(given) => serde_json::from_value::<Filter>(given.clone()).map_err(|e| {
                invalid(
                    "filters",
                    format!("filters must be {{\"types\": [...], \"events\": [...], \"match\": {{path: value}}}}: {e}"),
                )
            })?,
        };
        if let Some(problem) = filters.problem() {
            return Err(invalid("filters", format!("filters: {problem}")));
        }
        let filters = serde_json::to_value(filters).expect("a filter serializes");
        Ok(Self { connection_id, layout, schema, enrichment, lookup, filters })
    }

    fn spec(&self) -> RouteSpec<'_> {
        RouteSpec {
            connection_id: self.connection_id,
            layout: self.layout.as_str(),
            schema: &self.schema,
            enrichment: &self.enrichment,
            lookup: self.lookup.as_ref(),
            filters: &self.filters,
        }
    }
}

/// A lookup as given, checked: a model of the organization the caller may read, whose fields
/// include `key` and every one of `fields` (1 to 20). 422 naming the part at fault.
async fn lookup(state: &AppState, tenant: &Tenant, given: &Json) -> Result<Json, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Given {
        model_id: String,
        key: String,
        fields: Vec<String>,
    }
    let given: Given = serde_json::from_value(given.clone()).map_err(|e| {
        invalid("lookup", format!("lookup must be {{\"model_id\": …, \"key\": \"id\", \"fields\": [\"name\"]}}: {e}"))
    })?;
    let missing = || invalid("lookup.model_id", "lookup.model_id names no model of this organization".into());
    let model_id = Uuid::parse_str(&given.model_id).map_err(|_| missing())?;
    let model = authorized::<Model>(state, &tenant.caller, model_id, Action::Read)
        .await
        .map_err(|e| if e.status.as_u16() == 404 { missing() } else { e })?;
    let has = |name: &str| model.fields.as_array().into_iter().flatten().any(|f| f["name"] == name);
    if !has(&given.key) {
        return Err(invalid("lookup.key", format!("lookup.key {:?} is not a field of the model", given.key)));
    }
    if given.fields.is_empty() || given.fields.len() > MAX_ENRICHMENT {
        return Err(invalid(
            "lookup.fields",
            format!("lookup.fields must list 1 to {MAX_ENRICHMENT} fields of the model"),
        ));
    }
    if let Some(unknown) = given.fields.iter().find(|f| !has(f) || layout::snake(f).is_empty()) {
        return Err(invalid("lookup.fields", format!("lookup.fields: {unknown:?} is not a field of the model")));
    }
    Ok(json!({"model_id": model_id, "key": given.key, "fields": given.fields}))
}

/// The text at `key` of `body`, unless absent or null; 422 naming it when it is not text.
fn text<'a>(body: &'a Map<String, Json>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(key, format!("{key} must be a string"))),
    }
}

/// The route `route_id` of `source`, or 404.
pub(super) async fn route_of(state: &AppState, source: &EventSource, route_id: &str) -> Result<EventRoute, ApiError> {
    let id = parse_id(route_id, "event route")?;
    store::event_routes::get(&state.pool.get().await?, source.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("event route"))
}

#[get("/event_sources/{id}/routes")]
async fn list(
    state: web::Data<AppState>,
    source: Authorized<EventSource, can::Read>,
) -> Result<HttpResponse, ApiError> {
    let routes = store::event_routes::list(&state.pool.get().await?, source.id).await?;
    Ok(envelope(routes.iter().map(to_json).collect()))
}

#[post("/event_sources/{id}/routes")]
async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    source: Authorized<EventSource, can::Update>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input = RouteBody::parse(&state, &tenant, &source, &body).await?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let id = store::event_routes::insert(&tx, (source.organization_id, source.id), &input.spec()).await?;
    let always = Schedule { frequency: Some("continuous".into()), ..Default::default() };
    schedule::set(&tx, (EVENT_DELIVERY, id, source.organization_id), &always, Some(Utc::now())).await?;
    tx.commit().await?;
    let route = store::event_routes::get(&client, source.id, id).await?;
    Ok(envelope(to_json(&route.ok_or_else(|| ApiError::not_found("event route"))?)))
}

#[get("/event_sources/{id}/routes/{route_id}")]
async fn get_one(
    state: web::Data<AppState>,
    source: Authorized<EventSource, can::Read>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    Ok(envelope(to_json(&route_of(&state, &source, &path.1).await?)))
}

/// Changes a route; its delivery starts over with the new settings from where it was.
#[put("/event_sources/{id}/routes/{route_id}")]
async fn update(
    state: web::Data<AppState>,
    tenant: Tenant,
    source: Authorized<EventSource, can::Update>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let route = route_of(&state, &source, &path.1).await?;
    let input = RouteBody::parse(&state, &tenant, &source, &body).await?;
    let client = state.pool.get().await?;
    if !store::event_routes::update(&client, source.id, route.id, &input.spec()).await? {
        return Err(ApiError::not_found("event route"));
    }
    Ok(envelope(to_json(&route_of(&state, &source, &path.1).await?)))
}

/// Deletes a route with its position, counts and dead letters; its delivery ends.
#[delete("/event_sources/{id}/routes/{route_id}")]
async fn remove(
    state: web::Data<AppState>,
    source: Authorized<EventSource, can::Update>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let route = route_of(&state, &source, &path.1).await?;
    store::event_routes::delete(&state.pool.get().await?, source.id, route.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
