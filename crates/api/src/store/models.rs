//! Models: a query on a source connection and the fields it yields.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use tokio_postgres::{Row, types::ToSql};
use uuid::Uuid;

use super::{FromRow, StoreError, count, fetch_all, fetch_one, fetch_opt, keyed};
use crate::access::Readable;

#[derive(Debug, Clone)]
pub struct Model {
    pub id: Uuid,
    pub name: String,
    pub organization_id: Uuid,
    pub connection_id: Uuid,
    pub configuration: Json,
    pub fields: Json,
    pub identifier: Option<String>,
    pub tracking_columns: Vec<String>,
    pub labels: Json,
    pub policies: Vec<String>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, organization_id, connection_id, configuration, fields, identifier, tracking_columns,
                       labels, policies, version, created_at, updated_at";

impl FromRow for Model {
    const WHAT: &'static str = "model";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            organization_id: row.try_get("organization_id")?,
            connection_id: row.try_get("connection_id")?,
            configuration: row.try_get("configuration")?,
            fields: row.try_get("fields")?,
            identifier: row.try_get("identifier")?,
            tracking_columns: row.try_get("tracking_columns")?,
            labels: row.try_get("labels")?,
            policies: row.try_get("policies")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// What a create or an update stores.
pub struct Values<'a> {
    pub connection_id: Uuid,
    pub name: &'a str,
    pub configuration: &'a Json,
    pub fields: &'a Json,
    pub identifier: Option<&'a str>,
    pub tracking_columns: &'a [String],
    pub labels: &'a Json,
    pub policies: &'a [String],
}

impl Values<'_> {
    /// The columns after id and organization, in the order [`insert`] and [`update`] name them.
    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.connection_id,
            &self.name,
            self.configuration,
            self.fields,
            &self.identifier,
            &self.tracking_columns,
            self.labels,
            &self.policies,
        ]
    }
}

pub async fn get(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<Option<Model>, StoreError> {
    fetch_opt(client, &format!("select {COLUMNS} from models where id = $1 and organization_id = $2"), &[&id, &org])
        .await
}

/// The models of `org` the caller may read, oldest first.
pub async fn list(client: &impl GenericClient, org: Uuid, readable: &Readable) -> Result<Vec<Model>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from models where organization_id = $1 and ($2 or policies && $3) order by created_at"
    );
    fetch_all(client, &sql, &[&org, &readable.everywhere, &readable.policies]).await
}

/// Creates model `id` (its field ids carry it, so the caller picks it).
pub async fn insert(
    client: &impl GenericClient,
    org: Uuid,
    id: Uuid,
    values: &Values<'_>,
) -> Result<Model, StoreError> {
    let sql = format!(
        "insert into models (id, organization_id, connection_id, name, configuration, fields, identifier, tracking_columns, labels, policies)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning {COLUMNS}"
    );
    fetch_one(client, &sql, &keyed(&id, &org, values.params())).await
}

/// Replaces model `id`'s definition and moves its version on.
pub async fn update(
    client: &impl GenericClient,
    org: Uuid,
    id: Uuid,
    values: &Values<'_>,
) -> Result<Option<Model>, StoreError> {
    let sql = format!(
        "update models set connection_id = $3, name = $4, configuration = $5, fields = $6, identifier = $7,
                tracking_columns = $8, labels = $9, policies = $10, version = version + 1, updated_at = now()
          where id = $1 and organization_id = $2 returning {COLUMNS}"
    );
    fetch_opt(client, &sql, &keyed(&id, &org, values.params())).await
}

/// How many syncs use model `id`.
pub async fn users(client: &impl GenericClient, id: Uuid) -> Result<i64, StoreError> {
    count(client, "select count(*) as count from model_syncs where model_id = $1", &[&id]).await
}

pub async fn delete(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<(), StoreError> {
    client.execute("delete from models where id = $1 and organization_id = $2", &[&id, &org]).await?;
    Ok(())
}
