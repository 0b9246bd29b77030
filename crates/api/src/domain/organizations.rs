//! Creating and provisioning organizations.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::users;
use crate::{access::SystemRole, error::ApiError, store};

/// Creates organization `name` with its system roles (Admin, Member) and its Default policy;
/// 409 when the name is taken. Run it in a transaction.
pub async fn create(client: &impl GenericClient, name: &str, sso_domain: Option<&str>) -> Result<Uuid, ApiError> {
    Ok(store::organizations::insert(client, name, sso_domain).await?)
}

/// Organization `name` (created when missing, claiming `domain` for sign-in when given) with
/// `emails` as its admins; existing users are kept as they are. Run it in a transaction.
/// Answers the organization's id and the users.
pub async fn provision(
    client: &impl GenericClient,
    name: &str,
    domain: Option<&str>,
    emails: &[String],
) -> Result<(Uuid, Vec<store::users::User>), ApiError> {
    let organization_id = match store::organizations::find_by_name(client, name).await? {
        Some(existing) => existing.id,
        None => create(client, name, domain).await?,
    };
    if domain.is_some() {
        store::organizations::set_sso_domain(client, organization_id, domain).await?;
    }
    let mut provisioned = Vec::new();
    for email in emails {
        let id = users::upsert(client, organization_id, email, Some(SystemRole::Admin)).await?;
        provisioned.push(users::get(client, organization_id, id).await?);
    }
    Ok((organization_id, provisioned))
}
