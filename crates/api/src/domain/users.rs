//! Users: finding or creating them, their API shape, and minting their API keys.

use deadpool_postgres::GenericClient;
use serde_json::{Value as Json, json};
use syncline_core::crypto::{hash_api_key, new_api_key};
use uuid::Uuid;

use crate::{
    access::SystemRole,
    error::ApiError,
    store::{self, users::User},
};

/// A user as the API shows it.
pub fn to_json(user: &User) -> Json {
    json!({
        "id": user.id,
        "email": user.email,
        "organization_id": user.organization_id,
        "role": if user.admin { "admin" } else { "member" },
        "role_ids": user.role_ids,
    })
}

/// User `id` of `org`, or 404.
pub async fn get(client: &impl GenericClient, org: Uuid, id: Uuid) -> Result<User, ApiError> {
    store::users::get(client, org, id).await?.ok_or_else(|| ApiError::not_found("user"))
}

/// Creates a user in `org` with `role`, or finds the existing one with that email
/// (unchanged); answers its id. Without a role, an organization's first user becomes its Admin,
/// later ones Members.
pub async fn upsert(
    client: &impl GenericClient,
    org: Uuid,
    email: &str,
    role: Option<SystemRole>,
) -> Result<Uuid, ApiError> {
    if let Some(id) = store::users::insert(client, org, email).await? {
        let first = store::users::count_in(client, org).await? == 1;
        let role = role.unwrap_or(if first { SystemRole::Admin } else { SystemRole::Member });
        store::users::set_roles(client, id, &[store::permissions::system_role(client, org, role).await?]).await?;
        return Ok(id);
    }
    let existing = store::users::find_by_email(client, org, email).await?;
    existing.ok_or_else(|| ApiError::conflict(format!("a user with email {email:?} is being created; retry")))
}

/// Mints an API key for user `user_id` of `org` (404 when there is no such user); with
/// `replace`, the user's earlier keys are revoked first. Returns the key's id and its value
/// (shown once; only its digest is stored).
pub async fn mint_key(
    client: &impl GenericClient,
    org: Uuid,
    user_id: Uuid,
    replace: bool,
) -> Result<(Uuid, String), ApiError> {
    if !store::users::exists(client, org, user_id).await? {
        return Err(ApiError::not_found("user"));
    }
    let key = new_api_key();
    let id = store::keys::insert(client, org, user_id, &hash_api_key(&key), replace).await?;
    Ok((id, key))
}
