//! A route's lookup from a model: the model's rows (read through its connection, as a model
//! sync reads them) kept in `event_lookups` by their key field, so each event gets the fields
//! of the row whose key is its user id (`user_<field>`). The copy is read again when the
//! delivery starts and every `EVENTS_LOOKUP_REFRESH_MINUTES`; rows the model no longer has are
//! removed.

use std::collections::HashMap;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use syncline_core::{
    connector::{ConnectorError, ReadEvent, ReadRequest, Readable},
    db::DbPool,
};
use uuid::Uuid;

use crate::{
    Services,
    connections::{self, state},
};

/// What a route looks up: the model, its field holding user ids, and the fields to add.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Lookup {
    pub model_id: Uuid,
    pub key: String,
    pub fields: Vec<String>,
}

/// Rows written to the state database at once.
const CHUNK: usize = 5_000;

/// Reads route `route_id`'s lookup model (of organization `org`) into its copy; the rows read.
pub async fn refresh(
    services: &Services,
    (org, route_id): (Uuid, Uuid),
    lookup: &Lookup,
) -> Result<u64, ConnectorError> {
    let pool = &services.pool;
    let row = {
        let client = pool.get().await.map_err(state)?;
        client
            .query_opt(
                "select m.configuration, c.type as source_type, c.configuration as source_config, c.secrets as source_secrets
                 from models m join connections c on c.id = m.connection_id
                 where m.id = $1 and m.organization_id = $2",
                &[&lookup.model_id, &org],
            )
            .await
            .map_err(state)?
            .ok_or_else(|| ConnectorError::not_found("the lookup's model was deleted"))?
    };
    let model: Json = row.try_get("configuration").map_err(state)?;
    let (connector, config) = connections::open(services, &row, "source")?;
    let ctx = services.connector.child();
    let _cancel = ctx.cancel.clone().drop_guard();
    let source = connector.source(&ctx, &config)?;
    let fields: Vec<String> = std::iter::once(lookup.key.clone()).chain(lookup.fields.iter().cloned()).collect();
    let request = ReadRequest::new(Readable::Model(model), fields, services.batch_rows, services.batch_bytes);
    let mut events = source.read(request).await?.events;
    let started: chrono::DateTime<chrono::Utc> = {
        let client = pool.get().await.map_err(state)?;
        client.query_one("select clock_timestamp()", &[]).await.map_err(state)?.get(0)
    };
    let (mut keys, mut values, mut read) = (Vec::new(), Vec::new(), 0u64);
    while let Some(event) = events.next().await.transpose()? {
        let ReadEvent::Batch(batch) = event else { continue };
        for record in batch.records() {
            let row = record.values().map_err(|e| ConnectorError::permanent(format!("the lookup's model: {e}")))?;
            let key = match row[0].to_json() {
                Json::Null => continue,
                Json::String(key) => key,
                other => other.to_string(),
            };
            let found: Map<String, Json> =
                lookup.fields.iter().zip(&row[1..]).map(|(field, value)| (field.clone(), value.to_json())).collect();
            keys.push(key);
            values.push(Json::Object(found));
            read += 1;
            if keys.len() == CHUNK {
                store(pool, route_id, (&keys, &values), started).await?;
                (keys, values) = (Vec::new(), Vec::new());
            }
        }
    }
    store(pool, route_id, (&keys, &values), started).await?;
    let client = pool.get().await.map_err(state)?;
    client
        .execute("delete from event_lookups where route_id = $1 and refreshed_at < $2", &[&route_id, &started])
        .await
        .map_err(state)?;
    Ok(read)
}

/// Upserts rows of the copy, stamped `at`.
async fn store(
    pool: &DbPool,
    route_id: Uuid,
    (keys, values): (&[String], &[Json]),
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), ConnectorError> {
    if keys.is_empty() {
        return Ok(());
    }
    let client = pool.get().await.map_err(state)?;
    client
        .execute(
            "insert into event_lookups (route_id, key, fields, refreshed_at)
             select $1, k, v, $4 from unnest($2::text[], $3::jsonb[]) as u(k, v)
             on conflict (route_id, key) do update set fields = excluded.fields, refreshed_at = excluded.refreshed_at",
            &[&route_id, &keys, &values, &at],
        )
        .await
        .map_err(state)?;
    Ok(())
}

/// The looked-up fields of the users `messages` name, by user id.
pub async fn values(
    pool: &DbPool,
    route_id: Uuid,
    messages: &[&Map<String, Json>],
) -> Result<HashMap<String, Map<String, Json>>, ConnectorError> {
    let ids = super::users::user_ids(messages);
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query("select key, fields from event_lookups where route_id = $1 and key = any($2)", &[&route_id, &ids])
        .await
        .map_err(state)?;
    Ok(rows
        .iter()
        .filter_map(|r| match r.get::<_, Json>(1) {
            Json::Object(fields) => Some((r.get(0), fields)),
            _ => None,
        })
        .collect())
}

/// The columns `lookup` adds to `message`: `user_<field>` with the value of the row of the
/// message's user in `rows`, typed as the model has it; null when there is none.
pub fn columns(
    lookup: &Lookup,
    rows: &HashMap<String, Map<String, Json>>,
    message: &Map<String, Json>,
) -> Vec<(String, Json)> {
    let row = message.get("userId").and_then(Json::as_str).and_then(|u| rows.get(u));
    lookup
        .fields
        .iter()
        .map(|field| (super::users::column(field), row.and_then(|r| r.get(field)).cloned().unwrap_or(Json::Null)))
        .collect()
}
