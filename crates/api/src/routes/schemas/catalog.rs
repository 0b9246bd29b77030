//! A connection's schemas as the API shows them: the cached catalog (discovered through the
//! connector's `Source::discover`, within its deadlines, when there is none yet), refreshed in
//! the background on request, with the user's primary-key overrides laid over it.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value as Json, json};
use syncline_core::connector::{Catalog, Stream};
use uuid::Uuid;

use crate::{
    AppState,
    error::ApiError,
    routes::connections,
    store::{self, connections::Connection, schema_overrides::Overrides},
};

/// A connection's catalog with the user's overrides.
pub struct View {
    pub catalog: Catalog,
    overrides: Vec<Overrides>,
}

impl View {
    /// Schema `id`; 404 when the catalog has none.
    pub fn stream(&self, id: &str) -> Result<&Stream, ApiError> {
        self.catalog.stream(id).ok_or_else(|| ApiError::not_found("schema"))
    }

    /// The key the user set for `stream`, if any.
    fn key_override(&self, stream: &Stream) -> Option<&[String]> {
        self.overrides.iter().find(|o| o.schema_id == stream.name)?.primary_keys.as_deref()
    }

    /// The fields identifying a record of `stream`: the user's key, else the source's.
    pub fn primary_key<'a>(&'a self, stream: &'a Stream) -> &'a [String] {
        self.key_override(stream).unwrap_or(&stream.key)
    }

    /// `Schema {id, name, fields}` (fields only when asked for).
    pub fn schema_json(&self, stream: &Stream, include_fields: bool) -> Json {
        let mut schema = json!({"id": stream.name, "name": stream.name});
        if include_fields {
            let fields: Vec<Json> = stream.fields.iter().map(|f| self.field_json(stream, &f.name)).collect();
            schema["fields"] = json!(fields);
        }
        schema
    }

    /// `SchemaField` of field `name` of `stream` (`primary_key_override` only when the user set
    /// the key). `remote_type` is Syncline's type name, PostgreSQL's spelling.
    pub fn field_json(&self, stream: &Stream, name: &str) -> Json {
        let field_type = stream.fields.iter().find(|f| f.name == name).map(|f| &f.field_type);
        let key = self.key_override(stream);
        let mut field = json!({
            "id": name,
            "name": name,
            "type": field_type.map_or("unknown", |t| t.api_name()),
            "remote_type": field_type.map(|t| t.postgres_name()),
            "is_primary_key": self.primary_key(stream).iter().any(|k| k == name),
            "source_primary_key": stream.key.iter().any(|k| k == name),
            "user_managed": false,
        });
        if let Some(key) = key {
            field["primary_key_override"] = json!(key.iter().any(|k| k == name));
        }
        field
    }
}

/// How long a refresh may be under way before another may start: twice what connecting and
/// one interactive call may take.
fn stale_after(state: &AppState) -> Duration {
    (state.connector.deadlines.connect + state.connector.deadlines.query) * 2
}

/// 422 unless `connection` can be read from.
pub fn require_source(connection: &Connection) -> Result<(), ApiError> {
    match syncline_connectors::get(&connection.type_id).is_some_and(|c| c.spec().capabilities.source) {
        true => Ok(()),
        false => Err(ApiError::unprocessable(format!("a {} connection has no schemas to read", connection.type_id))),
    }
}

/// Discovers `connection`'s catalog now and caches it (or the failure, keeping the catalog found
/// before).
async fn discover(
    state: &AppState,
    connection: &Connection,
    started: chrono::DateTime<Utc>,
) -> Result<Catalog, ApiError> {
    let found = async {
        let opened = connections::open(state, connection)?;
        let source = opened.connector.source(&state.connector, &opened.config)?;
        Ok::<_, ApiError>(source.discover().await?)
    }
    .await;
    let client = state.pool.get().await?;
    match &found {
        Ok(catalog) => store::catalogs::store(&client, connection.id, started, catalog).await?,
        Err(e) => store::catalogs::fail(&client, connection.id, started, &e.message).await?,
    }
    found
}

/// The schemas of connection `connection_id` as cached, without discovering (`None` when
/// never discovered).
pub async fn cached(state: &AppState, connection_id: Uuid) -> Result<Option<View>, ApiError> {
    let client = state.pool.get().await?;
    let cached = store::catalogs::get(&client, connection_id).await?;
    let Some(catalog) = cached.map(|c| c.catalog()).transpose()?.flatten() else { return Ok(None) };
    let overrides = store::schema_overrides::list(&client, connection_id).await?;
    Ok(Some(View { catalog, overrides }))
}

/// `connection`'s schemas: the cached catalog, else one discovered now.
pub async fn load(state: &AppState, connection: &Connection) -> Result<View, ApiError> {
    require_source(connection)?;
    if let Some(view) = cached(state, connection.id).await? {
        return Ok(view);
    }
    let catalog = discover(state, connection, Utc::now()).await?;
    let overrides = store::schema_overrides::list(&state.pool.get().await?, connection.id).await?;
    Ok(View { catalog, overrides })
}

/// Starts discovering `connection`'s catalog again in the background, unless a refresh is
/// under way; the cache says how it went.
pub async fn refresh(state: &AppState, connection: &Connection) -> Result<(), ApiError> {
    require_source(connection)?;
    let claimed = store::catalogs::begin_refresh(&state.pool.get().await?, connection.id, stale_after(state)).await?;
    let Some(started) = claimed else { return Ok(()) };
    let (state, connection) = (state.clone(), connection.clone());
    tokio::spawn(async move {
        if let Err(e) = discover(&state, &connection, started).await {
            tracing::warn!(connection_id = %connection.id, error = %e, "schema refresh failed");
        }
    });
    Ok(())
}

/// `{cache_status, last_refresh_started, last_refresh_finished}` of `connection` (`none` before
/// the first discovery), with the last refresh's `error`.
pub async fn status(state: &AppState, connection: &Connection) -> Result<Json, ApiError> {
    let cached = store::catalogs::get(&state.pool.get().await?, connection.id).await?;
    Ok(match cached {
        Some(c) => json!({
            "cache_status": c.status,
            "last_refresh_started": c.refresh_started_at,
            "last_refresh_finished": c.refresh_finished_at,
            "error": c.error,
        }),
        None => json!({"cache_status": "none", "last_refresh_started": null, "last_refresh_finished": null}),
    })
}
