//! Bulk sync configuration: the parts of the Polytomic bulk sync body the engine acts on, as
//! stored in `bulk_syncs.spec`, `bulk_sync_schemas.config` and a start's `executions.options`.
//! The API validates against these types and refuses (422, naming the field) what the engine
//! does not honour; the engine reads nothing else.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a bulk sync writes each schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkMode {
    /// The destination equals the source: upserts by primary key, deletes propagated.
    Replicate,
    /// A full copy every run, swapped in at once so readers never see a half-loaded table.
    Snapshot,
    /// Every run's rows added to what is there.
    Append,
}

impl BulkMode {
    pub const ALL: [BulkMode; 3] = [Self::Replicate, Self::Snapshot, Self::Append];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replicate => "replicate",
            Self::Snapshot => "snapshot",
            Self::Append => "append",
        }
    }
}

/// Which new source fields or objects are enabled on their own (Polytomic
/// `automatically_add_new_fields`/`_objects`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AutoAdd {
    #[default]
    All,
    OnlyIncremental,
    OnlyNonIncremental,
    None,
}

/// The destination's configuration for a bulk sync (PostgreSQL and MariaDB: where the tables
/// go and how deletes show). Its JSON Schema is what `bulk_sync.get_destination` serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// The schema (PostgreSQL) or database (MariaDB) the tables are written to.
    #[serde(default)]
    pub schema: Option<String>,
    /// `replicate` mode: mark deleted rows by setting this timestamp column instead of deleting
    /// them.
    #[serde(default)]
    pub soft_delete_column: Option<String>,
}

/// One field of a schema selection: an id alone, or with settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldSelection {
    Id(String),
    Config {
        id: String,
        #[serde(default)]
        enabled: Option<bool>,
        #[serde(default)]
        user_output_name: Option<String>,
    },
}

impl FieldSelection {
    pub fn id(&self) -> &str {
        match self {
            Self::Id(id) | Self::Config { id, .. } => id,
        }
    }

    pub fn enabled(&self) -> bool {
        match self {
            Self::Id(_) => true,
            Self::Config { enabled, .. } => enabled.unwrap_or(true),
        }
    }

    /// The destination column name the user chose, if any.
    pub fn output_name(&self) -> Option<&str> {
        match self {
            Self::Id(_) => None,
            Self::Config { user_output_name, .. } => user_output_name.as_deref().filter(|n| !n.is_empty()),
        }
    }
}

/// A source name (a table, a field) as bulk syncs write it to the destination: with
/// `normalize_names` (the default) lowercase ASCII letters, digits and underscores, else as it is.
pub fn destination_name(name: &str, normalize: bool) -> String {
    match normalize {
        true => name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect(),
        false => name.to_owned(),
    }
}

/// How one schema of a bulk sync is replicated (`bulk_sync_schemas.config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaConfig {
    /// The fields to replicate; empty: every field (and new ones as `automatically_add_new_fields`
    /// says).
    #[serde(default)]
    pub fields: Vec<FieldSelection>,
    /// The field incremental runs resume after (an `updated_at`); none: every run reads all.
    #[serde(default)]
    pub tracking_field: Option<String>,
    /// The field partitions are cut by (default: the primary key).
    #[serde(default)]
    pub partition_key: Option<String>,
    /// The destination table name the user chose.
    #[serde(default)]
    pub user_output_name: Option<String>,
}

impl SchemaConfig {
    /// The destination table of schema `schema_id`: the user's name as given, else the table
    /// part of the id (`public.users` → `users`) as [`destination_name`] writes it.
    pub fn output_name(&self, schema_id: &str, normalize: bool) -> String {
        match self.user_output_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => name.to_owned(),
            None => destination_name(schema_id.rsplit('.').next().unwrap_or(schema_id), normalize),
        }
    }

    /// Whether source fields the configuration does not list (new ones) are replicated: always
    /// when it lists none, else as `auto` (`automatically_add_new_fields`) says for a schema
    /// with (incremental) or without a tracking field.
    pub fn adds_new_fields(&self, auto: AutoAdd) -> bool {
        self.fields.is_empty()
            || match auto {
                AutoAdd::All => true,
                AutoAdd::OnlyIncremental => self.tracking_field.is_some(),
                AutoAdd::OnlyNonIncremental => self.tracking_field.is_none(),
                AutoAdd::None => false,
            }
    }
}

/// What a re-run of already delivered schemas does (Polytomic `resync_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResyncMode {
    /// Read everything again and merge it in.
    Refetch,
    /// Read everything again and replace the destination's rows.
    Resync,
    /// Drop and create the destination tables again, then load them.
    Rebuild,
}

/// Whether a run reads everything or what moved past the cursor (Polytomic `fetch_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchMode {
    None,
    Incremental,
    Full,
}

/// What a start (or an additional schedule) asks of one execution (`executions.options`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_mode: Option<FetchMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync_mode: Option<ResyncMode>,
    /// The schemas to run; empty: every enabled schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    /// A test run: at most [`TEST_ROWS`] rows per schema.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

/// Rows per schema a test run reads.
pub const TEST_ROWS: u64 = 5;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_are_ids_or_objects() {
        let config: SchemaConfig = serde_json::from_value(json!({
            "fields": ["id", {"id": "email", "enabled": false}, {"id": "name", "user_output_name": "full_name"}],
            "tracking_field": "updated_at"
        }))
        .expect("parses");
        let enabled: Vec<&str> = config.fields.iter().filter(|f| f.enabled()).map(FieldSelection::id).collect();
        assert_eq!(enabled, ["id", "name"]);
        assert_eq!(config.fields[2].output_name(), Some("full_name"));
        assert_eq!(config.tracking_field.as_deref(), Some("updated_at"));
    }

    #[test]
    fn output_names_default_to_the_table() {
        assert_eq!(SchemaConfig::default().output_name("public.users", true), "users");
        assert_eq!(SchemaConfig::default().output_name("Sales.Order Items", true), "order_items");
        assert_eq!(SchemaConfig::default().output_name("Sales.Order Items", false), "Order Items");
        let named = SchemaConfig { user_output_name: Some("People".into()), ..SchemaConfig::default() };
        assert_eq!(named.output_name("public.users", true), "People", "the user's name is taken as given");
    }

    #[test]
    fn new_fields_follow_the_policy() {
        let listed = SchemaConfig { fields: vec![FieldSelection::Id("id".into())], ..SchemaConfig::default() };
        assert!(SchemaConfig::default().adds_new_fields(AutoAdd::None), "no list: every field");
        assert!(listed.adds_new_fields(AutoAdd::All) && !listed.adds_new_fields(AutoAdd::None));
        assert!(
            listed.adds_new_fields(AutoAdd::OnlyNonIncremental) && !listed.adds_new_fields(AutoAdd::OnlyIncremental)
        );
    }

    #[test]
    fn start_options_round_trip() {
        let options: StartOptions =
            serde_json::from_value(json!({"resync_mode": "rebuild", "schemas": ["public.users"]})).expect("parses");
        assert_eq!(options.resync_mode, Some(ResyncMode::Rebuild));
        assert_eq!(
            serde_json::to_value(&options).expect("serializes"),
            json!({"resync_mode": "rebuild", "schemas": ["public.users"]})
        );
        assert!(serde_json::from_value::<StartOptions>(json!({"fetch_mode": "sometimes"})).is_err());
    }
}
