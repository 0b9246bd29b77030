//! What each constraint of the schema guards, in the API's words: the object a table holds and
//! the request field a constraint checks. Constraints named the PostgreSQL way
//! (`<table>_<column>_key`, `_fkey`, `_check`) name their field themselves; the others are listed.

/// The request field behind constraints not named after a column.
const FIELDS: &[(&str, &str)] = &[
    ("users_org_email", "email"),
    ("roles_org_name", "name"),
    ("policies_org_name", "name"),
    ("event_sources_org_name", "name"),
    ("model_syncs_target_connection_id_fkey", "target.connection_id"),
    ("user_roles_role_id_fkey", "role_ids"),
    ("model_sync_run_after_upstream_sync_id_fkey", "schedule.run_after"),
    ("model_sync_run_after_upstream_bulk_sync_id_fkey", "schedule.run_after"),
];

/// The object a table holds, as the API names it.
pub fn object(table: &str) -> &str {
    match table {
        "organizations" => "organization",
        "users" => "user",
        "api_keys" => "API key",
        "roles" => "role",
        "user_roles" => "role",
        "policies" => "policy",
        "connections" => "connection",
        "models" => "model",
        "model_syncs" => "sync",
        "bulk_syncs" => "bulk sync",
        "event_sources" => "event source",
        "executions" => "execution",
        "sessions" => "session",
        other => other.strip_suffix('s').unwrap_or(other),
    }
}

/// `object` with its indefinite article.
pub fn with_article(object: &str) -> String {
    // By sound: "an organization", "an API key", but "a user".
    match object.starts_with(['a', 'e', 'i', 'o', 'A', 'E', 'I', 'O']) {
        true => format!("an {object}"),
        false => format!("a {object}"),
    }
}

/// The request field `constraint` of `table` checks (`column` when the server names one).
pub fn field(constraint: Option<&str>, table: Option<&str>, column: Option<&str>) -> String {
    if let Some(column) = column {
        return column.to_owned();
    }
    let Some(constraint) = constraint else { return "value".to_owned() };
    if let Some((_, field)) = FIELDS.iter().find(|(name, _)| *name == constraint) {
        return (*field).to_owned();
    }
    let unprefixed = table.and_then(|t| constraint.strip_prefix(t)?.strip_prefix('_')).unwrap_or(constraint);
    if unprefixed == "pkey" {
        return "id".to_owned();
    }
    let field = ["_fkey", "_key", "_check"].iter().find_map(|suffix| unprefixed.strip_suffix(suffix));
    field.unwrap_or(unprefixed).to_owned()
}

/// The value a unique violation's detail (`Key (organization_id, lower(name))=(…, acme) already
/// exists.`) names, without the organization it is unique in.
pub fn duplicate_value(detail: &str) -> Option<&str> {
    let key = detail.strip_prefix("Key (")?.strip_suffix(") already exists.")?;
    let (columns, values) = key.split_once(")=(")?;
    match columns.starts_with("organization_id, ") {
        true => values.split_once(", ").map(|(_, value)| value),
        false => Some(values),
    }
}

/// The table a foreign-key violation's detail (`Key (connection_id)=(…) is not present in table
/// "connections".`) names.
pub fn referenced_table(detail: &str) -> Option<&str> {
    detail.split_once("in table \"")?.1.strip_suffix("\".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_constraint_names() {
        assert_eq!(field(Some("organizations_name_key"), Some("organizations"), None), "name");
        assert_eq!(field(Some("models_connection_id_fkey"), Some("models"), None), "connection_id");
        assert_eq!(field(Some("model_syncs_model_id_fkey"), Some("model_syncs"), None), "model_id");
        assert_eq!(field(Some("model_syncs_mode_check"), Some("model_syncs"), None), "mode");
        assert_eq!(field(Some("connections_pkey"), Some("connections"), None), "id");
        assert_eq!(field(Some("roles_org_name"), Some("roles"), None), "name");
        assert_eq!(field(Some("users_org_email"), Some("users"), None), "email");
        assert_eq!(
            field(Some("model_syncs_target_connection_id_fkey"), Some("model_syncs"), None),
            "target.connection_id"
        );
        assert_eq!(field(None, Some("models"), Some("fields")), "fields", "not-null names its column");
        assert_eq!(field(None, None, None), "value");
    }

    #[test]
    fn objects_are_named_as_the_api_names_them() {
        assert_eq!(with_article(object("model_syncs")), "a sync");
        assert_eq!(with_article(object("organizations")), "an organization");
        assert_eq!(with_article(object("policies")), "a policy");
        assert_eq!(with_article(object("api_keys")), "an API key");
    }

    #[test]
    fn reads_the_duplicate_value_from_the_detail() {
        let scoped =
            "Key (organization_id, lower(name))=(0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f, ops, eu) already exists.";
        assert_eq!(duplicate_value(scoped), Some("ops, eu"), "the value keeps its commas");
        assert_eq!(duplicate_value("Key (name)=(acme) already exists."), Some("acme"));
        assert_eq!(duplicate_value("something else"), None);
    }

    #[test]
    fn reads_the_referenced_table_from_the_detail() {
        let detail =
            "Key (connection_id)=(0b3c59a4-3f1c-4f7e-9d7e-1a2b3c4d5e6f) is not present in table \"connections\".";
        assert_eq!(referenced_table(detail), Some("connections"));
        assert_eq!(referenced_table("Key (x)=(1) is still referenced from table \"y\"."), None);
    }
}
