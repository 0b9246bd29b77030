//! What users changed of a connection's discovered schemas (`schema_overrides`): the primary
//! key. `primary_keys` holds the whole key that replaces the source's (`None`: the source's
//! key stands).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, fetch_all};

/// The overrides of one schema.
#[derive(Debug, Clone)]
pub struct Overrides {
    pub schema_id: String,
    pub primary_keys: Option<Vec<String>>,
}

impl FromRow for Overrides {
    const WHAT: &'static str = "schema override";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self { schema_id: row.try_get("schema_id")?, primary_keys: row.try_get("primary_keys")? })
    }
}

/// The overrides of every schema of connection `connection_id`.
pub async fn list(client: &impl GenericClient, connection_id: Uuid) -> Result<Vec<Overrides>, StoreError> {
    let sql = "select schema_id, primary_keys from schema_overrides where connection_id = $1 order by schema_id";
    fetch_all(client, sql, &[&connection_id]).await
}

/// Sets the primary key of schema `schema_id` (`None`: back to the source's).
pub async fn set_primary_keys(
    client: &impl GenericClient,
    (connection_id, schema_id): (Uuid, &str),
    primary_keys: Option<&[String]>,
) -> Result<(), StoreError> {
    client
        .execute(
            "insert into schema_overrides (connection_id, schema_id, primary_keys) values ($1, $2, $3)
             on conflict (connection_id, schema_id) do update set primary_keys = $3",
            &[&connection_id, &schema_id, &primary_keys],
        )
        .await?;
    Ok(())
}
