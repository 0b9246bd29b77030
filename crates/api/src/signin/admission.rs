//! Who may sign in, in this order: an existing user (in their oldest membership); the root user
//! (`ROOT_USER`), who becomes an Admin of the oldest organization, created and named after
//! `DEPLOYMENT` when there is none; a verified email of an organization's SSO domain, which
//! joins it as a Member. Anyone else is turned away and nothing is created.

use deadpool_postgres::GenericClient;
use syncline_core::Settings;
use uuid::Uuid;

use super::provider::Identity;
use crate::{
    access::SystemRole,
    domain::{organizations, users},
    error::ApiError,
    store,
};

/// The user a sign-in opens a session for, and where.
pub struct Membership {
    pub user_id: Uuid,
    pub organization_id: Uuid,
}

/// Admits `identity` (see the module docs); run it in a transaction, as it may create an
/// organization and a user.
pub async fn admit(
    client: &impl GenericClient,
    settings: &Settings,
    identity: &Identity,
) -> Result<Membership, ApiError> {
    if identity.email_verified == Some(false) {
        return Err(ApiError::forbidden("the identity provider has not verified this email address"));
    }
    let email = identity.email.as_str();
    if let Some((user_id, organization_id)) = store::users::oldest_membership(client, email).await? {
        return Ok(Membership { user_id, organization_id });
    }
    if email.to_lowercase() == settings.root_user.to_lowercase() {
        let organization_id = match store::organizations::oldest(client).await? {
            Some(oldest) => oldest.id,
            None => organizations::create(client, &settings.deployment, None).await?,
        };
        return join(client, organization_id, email, SystemRole::Admin).await;
    }
    if identity.email_verified == Some(true)
        && let Some((_, domain)) = email.rsplit_once('@')
        && let Some(organization) = store::organizations::by_sso_domain(client, domain).await?
    {
        return join(client, organization.id, email, SystemRole::Member).await;
    }
    Err(ApiError::forbidden("no organization has a user with this email"))
}

/// Adds `email` to `organization_id` with `role`.
async fn join(
    client: &impl GenericClient,
    organization_id: Uuid,
    email: &str,
    role: SystemRole,
) -> Result<Membership, ApiError> {
    let user_id = users::upsert(client, organization_id, email, Some(role)).await?;
    Ok(Membership { user_id, organization_id })
}
