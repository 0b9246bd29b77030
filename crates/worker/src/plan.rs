//! Loading what an execution needs from Postgres: the sync's spec, its model, both
//! connections (secrets opened) and the diff state of the last successful run.

use std::{collections::HashMap, sync::Arc};

use serde_json::Value as Json;
use syncline_core::{
    connector::{Destination, Source},
    credentials,
    sync::SyncSpec,
};
use uuid::Uuid;

use crate::Services;

/// A record the destination rejected, as stored on the sync for the next run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RetryIdentity {
    /// The encoded identity, hex.
    pub key: String,
    /// Whether the record was new to the destination.
    pub insert: bool,
}

/// A sync ready to run.
pub struct Plan {
    pub spec: SyncSpec,
    pub model: Json,
    pub source: Arc<dyn Source>,
    pub destination: Arc<dyn Destination>,
    pub snapshot_path: Option<String>,
    /// Identities the destination rejected last time, with whether they were new then.
    pub retry: HashMap<Vec<u8>, bool>,
}

/// Loads the plan of `sync_id`; the error is a message for the execution's `errors`.
pub async fn load(services: &Services, sync_id: Uuid) -> Result<Plan, String> {
    let client = services.pool.get().await.map_err(|e| format!("state database: {e}"))?;
    let row = client
        .query_opt(
            "select s.spec, s.snapshot_path, s.retry_identities, m.configuration,
                    sc.type, sc.configuration, sc.secrets, tc.type, tc.configuration, tc.secrets
             from model_syncs s join models m on m.id = s.model_id
             join connections sc on sc.id = m.connection_id join connections tc on tc.id = s.target_connection_id
             where s.id = $1",
            &[&sync_id],
        )
        .await
        .map_err(|e| format!("state database: {e}"))?
        .ok_or("the sync was deleted")?;
    let spec: SyncSpec = serde_json::from_value(row.get(0)).map_err(|e| format!("sync configuration: {e}"))?;
    let open = |kind: usize| -> Result<Json, String> {
        let (type_id, public, sealed): (String, Json, Option<Vec<u8>>) =
            (row.get(kind), row.get(kind + 1), row.get(kind + 2));
        credentials::unseal(&public, sealed.as_deref(), &services.secrets)
            .map_err(|e| format!("connection {type_id}: {e}"))
    };
    let (source_type, target_type): (String, String) = (row.get(4), row.get(7));
    let source = syncline_connectors::get(&source_type)
        .ok_or_else(|| format!("connection type {source_type:?} is not supported"))?
        .source(&services.connector, &open(4)?)
        .map_err(|e| e.message)?;
    let destination = syncline_connectors::get(&target_type)
        .ok_or_else(|| format!("connection type {target_type:?} is not supported"))?
        .destination(&services.connector, &open(7)?)
        .map_err(|e| e.message)?;
    let retry: Vec<RetryIdentity> = serde_json::from_value(row.get(2)).unwrap_or_default();
    Ok(Plan {
        spec,
        model: row.get(3),
        source,
        destination,
        snapshot_path: row.get(1),
        retry: retry.iter().filter_map(|r| Some((hex::decode(&r.key).ok()?, r.insert))).collect(),
    })
}
