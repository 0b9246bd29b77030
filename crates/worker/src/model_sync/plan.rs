//! Loading what an execution needs from Postgres: the sync's spec, its model, both
//! connections (secrets opened) and the diff state of the last successful run.

use std::{collections::HashMap, sync::Arc};

use serde_json::Value as Json;
use syncline_core::{
    connector::{ConnectorError, Context, Destination, Source},
    sync::SyncSpec,
};
use uuid::Uuid;

use crate::{
    Services,
    connections::{self, state},
};

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
    /// Whether those are sent again even when unchanged (`auto_retry_record_errors`).
    auto_retry: bool,
    /// The names of the model and of the target connection, for the console log.
    pub model_name: String,
    pub target_name: String,
    pub organization_id: Uuid,
    /// Where the run's record logs go, when the organization keeps them: its prefix.
    pub record_log_prefix: Option<String>,
}

impl Plan {
    /// Whether the records rejected last time are sent again even when unchanged: with
    /// `auto_retry_record_errors`, or when the sync sends every record anyway.
    pub fn resends_rejected(&self) -> bool {
        self.auto_retry || self.spec.sync_all_records
    }
}

/// Loads the plan of `sync_id`, its connections opened with `ctx` (the run's own context, so
/// that cancelling it stops every call they make); the error is the execution's.
pub async fn load(services: &Services, ctx: &Context, sync_id: Uuid) -> Result<Plan, ConnectorError> {
    let client = services.pool.get().await.map_err(state)?;
    let row = client
        .query_opt(
            "select s.spec, s.snapshot_path, s.retry_identities, s.auto_retry_record_errors, s.organization_id,
                    o.record_logging, m.configuration, m.name as model_name, tc.name as target_name,
                    sc.type as source_type, sc.configuration as source_config, sc.secrets as source_secrets,
                    tc.type as target_type, tc.configuration as target_config, tc.secrets as target_secrets
             from model_syncs s join models m on m.id = s.model_id
             join connections sc on sc.id = m.connection_id join connections tc on tc.id = s.target_connection_id
             join organizations o on o.id = s.organization_id
             where s.id = $1",
            &[&sync_id],
        )
        .await
        .map_err(state)?
        .ok_or_else(|| ConnectorError::not_found("the sync was deleted"))?;
    let spec: SyncSpec = serde_json::from_value(row.try_get("spec").map_err(state)?)
        .map_err(|e| ConnectorError::config(format!("sync configuration: {e}")))?;
    let (source, source_config) = connections::open(services, &row, "source")?;
    let (target, target_config) = connections::open(services, &row, "target")?;
    let source = source.source(ctx, &source_config)?;
    let destination = target.destination(ctx, &target_config)?;
    let retry: Vec<RetryIdentity> =
        serde_json::from_value(row.try_get("retry_identities").map_err(state)?).unwrap_or_default();
    Ok(Plan {
        spec,
        model: row.try_get("configuration").map_err(state)?,
        source,
        destination,
        snapshot_path: row.try_get("snapshot_path").map_err(state)?,
        retry: retry.iter().filter_map(|r| Some((hex::decode(&r.key).ok()?, r.insert))).collect(),
        organization_id: row.try_get("organization_id").map_err(state)?,
        record_log_prefix: record_log_prefix(&row.try_get("record_logging").map_err(state)?),
        auto_retry: row.try_get("auto_retry_record_errors").map_err(state)?,
        model_name: row.try_get("model_name").map_err(state)?,
        target_name: row.try_get("target_name").map_err(state)?,
    })
}

/// The prefix of an organization's record logs, when its `record_logging` settings keep them.
fn record_log_prefix(settings: &Json) -> Option<String> {
    match settings["enabled"].as_bool() {
        Some(true) => Some(settings["deliveryPrefix"].as_str().unwrap_or_default().to_owned()),
        _ => None,
    }
}
