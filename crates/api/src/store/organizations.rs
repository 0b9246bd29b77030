//! Organizations: their names and SSO settings, created with their system roles and Default
//! policy.

use deadpool_postgres::GenericClient;
use serde_json::Value as Json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{FromRow, StoreError, exists, fetch_all, fetch_opt, permissions};

/// An organization as the API shows it (its client secret stays sealed in the table).
#[derive(Debug, Clone)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub issuer: Option<String>,
    pub sso_domain: Option<String>,
    pub sso_org_id: Option<String>,
    pub client_id: Option<String>,
}

const COLUMNS: &str = "id, name, issuer, sso_domain, sso_org_id, client_id";

impl FromRow for Organization {
    const WHAT: &'static str = "organization";

    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            issuer: row.try_get("issuer")?,
            sso_domain: row.try_get("sso_domain")?,
            sso_org_id: row.try_get("sso_org_id")?,
            client_id: row.try_get("client_id")?,
        })
    }
}

/// The SSO settings an update replaces wholesale.
pub struct Settings<'a> {
    pub name: &'a str,
    pub issuer: Option<&'a str>,
    pub sso_domain: Option<&'a str>,
    pub sso_org_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    /// Sealed with the deployment's secret box.
    pub sealed_client_secret: Option<Vec<u8>>,
}

pub async fn get(client: &impl GenericClient, id: Uuid) -> Result<Option<Organization>, StoreError> {
    fetch_opt(client, &format!("select {COLUMNS} from organizations where id = $1"), &[&id]).await
}

pub async fn exists_by_id(client: &impl GenericClient, id: Uuid) -> Result<bool, StoreError> {
    exists(client, "select 1 from organizations where id = $1", &[&id]).await
}

/// Every organization, oldest first.
pub async fn list(client: &impl GenericClient) -> Result<Vec<Organization>, StoreError> {
    fetch_all(client, &format!("select {COLUMNS} from organizations order by created_at"), &[]).await
}

pub async fn find_by_name(client: &impl GenericClient, name: &str) -> Result<Option<Organization>, StoreError> {
    fetch_opt(client, &format!("select {COLUMNS} from organizations where name = $1"), &[&name]).await
}

/// The oldest organization, if there is one.
pub async fn oldest(client: &impl GenericClient) -> Result<Option<Organization>, StoreError> {
    fetch_opt(client, &format!("select {COLUMNS} from organizations order by created_at, id limit 1"), &[]).await
}

/// The oldest organization claiming email domain `domain` for sign-in.
pub async fn by_sso_domain(client: &impl GenericClient, domain: &str) -> Result<Option<Organization>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from organizations where lower(sso_domain) = lower($1) order by created_at, id limit 1"
    );
    fetch_opt(client, &sql, &[&domain]).await
}

/// Creates organization `name` with its system roles (Admin, Member) and its Default policy;
/// a taken name is a unique violation. Run it in a transaction.
pub async fn insert(client: &impl GenericClient, name: &str, sso_domain: Option<&str>) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    client
        .execute("insert into organizations (id, name, sso_domain) values ($1, $2, $3)", &[&id, &name, &sso_domain])
        .await?;
    permissions::insert_system(client, id).await?;
    Ok(id)
}

/// Replaces the name and SSO settings of organization `id`; `None` when there is none.
pub async fn update(
    client: &impl GenericClient,
    id: Uuid,
    settings: &Settings<'_>,
) -> Result<Option<Organization>, StoreError> {
    let sql = format!(
        "update organizations set name = $2, issuer = $3, sso_domain = $4, sso_org_id = $5, client_id = $6,
                client_secret = $7, updated_at = now() where id = $1 returning {COLUMNS}"
    );
    let params: &super::Params<'_> = &[
        &id,
        &settings.name,
        &settings.issuer,
        &settings.sso_domain,
        &settings.sso_org_id,
        &settings.client_id,
        &settings.sealed_client_secret,
    ];
    fetch_opt(client, &sql, params).await
}

/// Sets the email domain organization `id` claims for sign-in.
pub async fn set_sso_domain(client: &impl GenericClient, id: Uuid, domain: Option<&str>) -> Result<(), StoreError> {
    client.execute("update organizations set sso_domain = $2 where id = $1", &[&id, &domain]).await?;
    Ok(())
}

/// Deletes organization `id` with everything in it; answers it, or `None` when there is none.
pub async fn delete(client: &impl GenericClient, id: Uuid) -> Result<Option<Organization>, StoreError> {
    fetch_opt(client, &format!("delete from organizations where id = $1 returning {COLUMNS}"), &[&id]).await
}

/// Organization `id`'s record logging settings (`{enabled, deliveryPrefix}`).
pub async fn record_logging(client: &impl GenericClient, id: Uuid) -> Result<Json, StoreError> {
    let row = client.query_opt("select record_logging from organizations where id = $1", &[&id]).await?;
    Ok(row.map(|r| r.try_get("record_logging")).transpose()?.unwrap_or(Json::Null))
}

/// Organization `id`'s global error subscribers.
pub async fn error_subscribers(client: &impl GenericClient, id: Uuid) -> Result<Vec<String>, StoreError> {
    let row = client.query_opt("select error_subscribers from organizations where id = $1", &[&id]).await?;
    let emails =
        row.map(|r| r.try_get::<_, tokio_postgres::types::Json<Vec<String>>>("error_subscribers")).transpose()?;
    Ok(emails.map(|e| e.0).unwrap_or_default())
}

/// Replaces organization `id`'s global error subscribers.
pub async fn set_error_subscribers(client: &impl GenericClient, id: Uuid, emails: &[String]) -> Result<(), StoreError> {
    let emails = serde_json::json!(emails);
    client.execute("update organizations set error_subscribers = $2 where id = $1", &[&id, &emails]).await?;
    Ok(())
}

/// Replaces organization `id`'s record logging settings.
pub async fn set_record_logging(client: &impl GenericClient, id: Uuid, settings: &Json) -> Result<(), StoreError> {
    client.execute("update organizations set record_logging = $2 where id = $1", &[&id, settings]).await?;
    Ok(())
}
