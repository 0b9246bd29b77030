//! The users an organization's events name, as its identify calls describe them: the lookup
//! routes enrich events from (`user_name`, `user_email`, … from the user's traits), and the
//! `user.first_named` log event, emitted exactly once per user however many routes and workers
//! take in the same identify calls.
//!
//! A batch's identify traits are taken in before its events are laid out, so a track behind
//! the identify that named its user carries the name. A user without the trait gets an empty
//! value: events are never held back waiting for an identify.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value as Json, json};
use syncline_core::{connector::ConnectorError, db::DbPool, events::layout};
use uuid::Uuid;

use crate::connections::state;

/// The trait whose first value names a user.
const NAME: &str = "name";

/// The traits of users by id.
pub type Traits = HashMap<String, Map<String, Json>>;

/// The identify traits of `messages` by user, later calls' traits over earlier ones.
fn identified(messages: &[&Map<String, Json>]) -> BTreeMap<String, Map<String, Json>> {
    let mut users: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    for message in messages {
        let is_identify = message.get("type").and_then(Json::as_str) == Some("identify");
        let user = message.get("userId").and_then(Json::as_str).filter(|u| !u.is_empty());
        let (true, Some(user)) = (is_identify, user) else { continue };
        // RudderStack's clients send an identify's traits in its context only.
        let context_traits = message.get("context").and_then(|c| c.get("traits"));
        for traits in [context_traits, message.get("traits")].into_iter().flatten() {
            let Json::Object(traits) = traits else { continue };
            let known = traits.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone()));
            users.entry(user.to_owned()).or_default().extend(known);
        }
    }
    users
}

fn named(traits: &Map<String, Json>) -> Option<&str> {
    traits.get(NAME).and_then(Json::as_str).filter(|name| !name.is_empty())
}

/// Takes in the identify traits of `messages` (of source `source_id` of organization `org`),
/// and logs `user.first_named` for each user named for the first time. The users' rows are
/// locked in a fixed order, so concurrent deliveries take turns and a user is named once.
pub async fn absorb(
    pool: &DbPool,
    (org, source_id): (Uuid, Uuid),
    messages: &[&Map<String, Json>],
) -> Result<(), ConnectorError> {
    let users = identified(messages);
    if users.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = users.keys().map(String::as_str).collect();
    let mut client = pool.get().await.map_err(state)?;
    let tx = client.transaction().await.map_err(state)?;
    tx.execute(
        "insert into event_users (organization_id, user_id) select $1, u from unnest($2::text[]) u order by u
         on conflict do nothing",
        &[&org, &ids],
    )
    .await
    .map_err(state)?;
    let rows = tx
        .query(
            "select user_id, named_at is not null from event_users where organization_id = $1 and user_id = any($2)
             order by user_id for update",
            &[&org, &ids],
        )
        .await
        .map_err(state)?;
    let mut traits = Vec::with_capacity(rows.len());
    let (mut newly_named, mut names) = (Vec::new(), Vec::new());
    for row in &rows {
        let (user, was_named): (&str, bool) = (row.get(0), row.get(1));
        traits.push(Json::Object(users[user].clone()));
        if let Some(name) = named(&users[user]).filter(|_| !was_named) {
            newly_named.push(user);
            names.push(json!({"user_id": user, "name": name}));
        }
    }
    let locked: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
    tx.execute(
        "update event_users e set traits = e.traits || u.traits, updated_at = now(),
                named_at = case when u.user_id = any($4) then now() else e.named_at end
         from unnest($2::text[], $3::jsonb[]) as u(user_id, traits)
         where e.organization_id = $1 and e.user_id = u.user_id",
        &[&org, &locked, &traits, &newly_named],
    )
    .await
    .map_err(state)?;
    tx.execute(
        "insert into event_log (organization_id, source_id, kind, subject, payload)
         select $1, $2, 'user.first_named', u, p from unnest($3::text[], $4::jsonb[]) as n(u, p)
         on conflict do nothing",
        &[&org, &source_id, &newly_named, &names],
    )
    .await
    .map_err(state)?;
    tx.commit().await.map_err(state)
}

/// The user ids `messages` name, each once.
pub fn user_ids<'a>(messages: &[&'a Map<String, Json>]) -> Vec<&'a str> {
    let mut ids: Vec<&str> =
        messages.iter().filter_map(|m| m.get("userId").and_then(Json::as_str)).filter(|u| !u.is_empty()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The traits of the users `messages` name.
pub async fn lookup(pool: &DbPool, org: Uuid, messages: &[&Map<String, Json>]) -> Result<Traits, ConnectorError> {
    let ids = user_ids(messages);
    if ids.is_empty() {
        return Ok(Traits::new());
    }
    let client = pool.get().await.map_err(state)?;
    let rows = client
        .query(
            "select user_id, traits from event_users where organization_id = $1 and user_id = any($2)",
            &[&org, &ids],
        )
        .await
        .map_err(state)?;
    Ok(rows
        .iter()
        .filter_map(|r| match r.get::<_, Json>(1) {
            Json::Object(traits) => Some((r.get(0), traits)),
            _ => None,
        })
        .collect())
}

/// The columns `traits` (the route's enrichment) add to `message`: `user_<trait>` with the
/// trait of the message's user as text, empty when the user has none (so the column is text
/// whatever the traits hold, and an unknown user never clashes with its type).
pub fn columns(traits: &[String], users: &Traits, message: &Map<String, Json>) -> Vec<(String, Json)> {
    let user = message.get("userId").and_then(Json::as_str).and_then(|u| users.get(u));
    traits
        .iter()
        .map(|field| {
            let text = match user.and_then(|t| t.get(field)) {
                None | Some(Json::Null) => String::new(),
                Some(Json::String(text)) => text.clone(),
                Some(other) => other.to_string(),
            };
            (column(field), Json::String(text))
        })
        .collect()
}

/// The column of the user's `field`.
pub fn column(field: &str) -> String {
    format!("user_{}", layout::snake(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(value: Json) -> Map<String, Json> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn later_identifies_win_and_only_identifies_count() {
        let messages = [
            message(json!({"type": "identify", "userId": "u1", "traits": {"name": "Ada", "plan": "free"}})),
            message(json!({"type": "track", "userId": "u2", "traits": {"name": "Not a trait"}})),
            message(json!({"type": "identify", "userId": "u1", "traits": {"plan": "pro", "email": null}})),
            message(json!({"type": "identify", "userId": "u3", "context": {"traits": {"name": "Rudder"}}})),
        ];
        let users = identified(&messages.iter().collect::<Vec<_>>());
        assert_eq!(users.len(), 2);
        assert_eq!(Json::Object(users["u1"].clone()), json!({"name": "Ada", "plan": "pro"}));
        assert_eq!(users["u3"]["name"], "Rudder", "RudderStack's identify traits");
    }

    #[test]
    fn enrichment_fills_what_the_user_has_and_leaves_the_rest_empty() {
        let users = Traits::from([("u1".to_owned(), message(json!({"name": "Ada", "age": 36})))]);
        let fields = ["name".to_owned(), "firstName".to_owned(), "age".to_owned()];
        let known = columns(&fields, &users, &message(json!({"userId": "u1"})));
        let expected = [("user_name", json!("Ada")), ("user_first_name", json!("")), ("user_age", json!("36"))];
        assert_eq!(known, expected.map(|(c, v)| (c.to_owned(), v)), "text, whatever the traits hold");
        let unknown = columns(&fields, &users, &message(json!({"anonymousId": "a"})));
        assert_eq!(unknown[0], ("user_name".to_owned(), json!("")));
    }
}
