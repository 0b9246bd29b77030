//! Roles and policies: what a user may do to which object.
//!
//! Every organization has the system roles Admin and Member and the system policy "Default",
//! which applies to every object of the organization. Custom policies apply to the objects
//! whose `policies` list names them. A policy action is either an object action (`read`,
//! `update`, `delete`, `run`) or a type-wide grant `<type>:<action>` (`connection:create`,
//! `sync:run`, `bulk_sync:run`) that covers every object of that type. Admins may do everything.

use std::fmt;

use serde_json::{Value as Json, json};
use uuid::Uuid;

/// The kinds of objects policies guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connection,
    Model,
    Sync,
    BulkSync,
    EventSource,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Connection, Kind::Model, Kind::Sync, Kind::BulkSync, Kind::EventSource];

    /// The name used in grants, audit events and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Model => "model",
            Self::Sync => "sync",
            Self::BulkSync => "bulk_sync",
            Self::EventSource => "event_source",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller does to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Create,
    Update,
    Delete,
    Run,
}

impl Action {
    const ALL: [Action; 5] = [Action::Read, Action::Create, Action::Update, Action::Delete, Action::Run];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Run => "run",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a policy action name; `system` policies apply everywhere, so they may grant `create`.
pub fn validate_action(action: &str, system: bool) -> Result<(), String> {
    let known = |name: &str| Action::ALL.iter().any(|a| a.as_str() == name);
    match action.split_once(':') {
        Some((kind, name)) if Kind::ALL.iter().any(|k| k.as_str() == kind) && known(name) => Ok(()),
        None if action == "create" && !system => Err(
            "create applies to an object type: use connection:create, model:create, sync:create, bulk_sync:create or event_source:create"
                .into(),
        ),
        None if known(action) => Ok(()),
        _ => Err(format!(
            "unknown action {action:?}: use read, update, delete or run, or <type>:<action> with type connection, model, sync, bulk_sync or event_source"
        )),
    }
}

/// The built-in roles every organization has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemRole {
    Admin,
    Member,
}

impl SystemRole {
    /// The role's name (also its row's name).
    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "Admin",
            Self::Member => "Member",
        }
    }

    /// Reads the legacy `role` field of a user body (`admin`, `member`, or `user` for member).
    pub fn parse(role: &str) -> Option<Self> {
        match role.to_ascii_lowercase().as_str() {
            "admin" => Some(Self::Admin),
            "member" | "user" => Some(Self::Member),
            _ => None,
        }
    }
}

/// The policy actions of the system "Default" policy of a new organization.
pub fn default_policy_actions(admin: Uuid, member: Uuid) -> Json {
    let mut actions = vec![json!({"action": "read", "role_ids": [admin, member]})];
    actions.extend(Action::ALL[1..].iter().map(|a| json!({"action": a.as_str(), "role_ids": [admin]})));
    Json::Array(actions)
}

/// One action a user's roles receive from one policy.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Grant {
    /// The granting policy; `None` for the system policy, which applies to every object.
    pub policy: Option<Uuid>,
    pub action: String,
}

impl Grant {
    fn covers(&self, action: Action, kind: Kind, object_policies: &[String]) -> bool {
        if let Some((k, a)) = self.action.split_once(':') {
            return k == kind.as_str() && a == action.as_str();
        }
        self.action == action.as_str()
            && match self.policy {
                None => true,
                Some(id) => object_policies.iter().any(|p| p.eq_ignore_ascii_case(&id.to_string())),
            }
    }
}

/// What a signed-in user's roles allow.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub admin: bool,
    pub role_ids: Vec<Uuid>,
    pub grants: Vec<Grant>,
}

impl Access {
    /// Whether `action` on an object of `kind` carrying `object_policies` is allowed.
    pub fn allows(&self, action: Action, kind: Kind, object_policies: &[String]) -> bool {
        self.admin || self.grants.iter().any(|g| g.covers(action, kind, object_policies))
    }

    /// Which objects of `kind` may be read: every one, or those carrying one of the policies.
    pub fn readable(&self, kind: Kind) -> Readable {
        let everywhere =
            self.admin || self.grants.iter().any(|g| g.policy.is_none() && g.covers(Action::Read, kind, &[]));
        let everywhere = everywhere || self.grants.iter().any(|g| g.action == format!("{kind}:read"));
        let policies = self
            .grants
            .iter()
            .filter(|g| g.action == Action::Read.as_str())
            .filter_map(|g| g.policy.map(|p| p.to_string()))
            .collect();
        Readable { everywhere, policies }
    }
}

/// The objects of one kind a caller may read, as SQL parameters:
/// `($everywhere or policies && $policies)`.
#[derive(Debug, Default)]
pub struct Readable {
    pub everywhere: bool,
    pub policies: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(grants: &[(Option<Uuid>, &str)]) -> Access {
        let grants = grants.iter().map(|(policy, action)| Grant { policy: *policy, action: (*action).into() });
        Access { admin: false, role_ids: vec![], grants: grants.collect() }
    }

    #[test]
    fn system_grants_apply_everywhere_and_custom_ones_to_their_objects() {
        let custom = Uuid::new_v4();
        let access = member(&[(None, "read"), (Some(custom), "update")]);
        assert!(access.allows(Action::Read, Kind::Sync, &[]));
        assert!(!access.allows(Action::Update, Kind::Sync, &[]));
        assert!(access.allows(Action::Update, Kind::Connection, &[custom.to_string()]));
        assert!(!access.allows(Action::Delete, Kind::Connection, &[custom.to_string()]));
    }

    #[test]
    fn type_wide_grants_cover_one_kind() {
        let access = member(&[(Some(Uuid::new_v4()), "connection:create")]);
        assert!(access.allows(Action::Create, Kind::Connection, &[]));
        assert!(!access.allows(Action::Create, Kind::Sync, &[]));
        assert!(Access { admin: true, ..Access::default() }.allows(Action::Delete, Kind::Model, &[]));
    }

    #[test]
    fn readable_objects_follow_the_grants() {
        let custom = Uuid::new_v4();
        let scoped = member(&[(Some(custom), "read")]).readable(Kind::Sync);
        assert!(!scoped.everywhere);
        assert_eq!(scoped.policies, vec![custom.to_string()]);
        assert!(member(&[(None, "read")]).readable(Kind::Sync).everywhere);
        assert!(member(&[(Some(custom), "sync:read")]).readable(Kind::Sync).everywhere);
        assert!(!member(&[(Some(custom), "sync:read")]).readable(Kind::Model).everywhere);
    }

    #[test]
    fn validates_action_names() {
        assert!(validate_action("read", false).is_ok());
        assert!(validate_action("sync:run", false).is_ok());
        assert!(validate_action("bulk_sync:create", false).is_ok());
        assert!(validate_action("create", true).is_ok());
        assert!(validate_action("create", false).unwrap_err().contains("connection:create"));
        assert!(validate_action("fly", false).unwrap_err().contains("unknown action"));
        assert!(validate_action("table:read", false).is_err());
    }
}
