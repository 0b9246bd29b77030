//! One schema's configuration from a request body (an item of a bulk sync's `schemas`, or the
//! body of `bulk_sync.schemas.update`/`patch`), checked against the source's catalog: the
//! schema, its fields and tracking field must exist, and what the engine does not honour yet is
//! refused naming the field.

use serde_json::{Map, Value as Json, json};
use syncline_core::{
    bulk::{AutoAdd, BulkMode, FieldSelection, SchemaConfig, destination_name},
    connector::Stream,
};

use super::{invalid, value};
use crate::{error::ApiError, routes::schemas::catalog::View, store::bulk_schemas::BulkSchema};

/// `name` inside the item at `prefix` (`schemas[2].fields`, or `fields` for a whole body).
pub(super) fn at(prefix: &str, name: &str) -> String {
    match prefix.is_empty() {
        true => name.to_owned(),
        false => format!("{prefix}.{name}"),
    }
}

/// The item's text `key` (empty counting as absent); 422 when it is not text.
fn text<'a>(object: &'a Map<String, Json>, key: &str, prefix: &str) -> Result<Option<&'a str>, ApiError> {
    match value(object, key) {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
        Some(_) => Err(invalid(&at(prefix, key), format!("{} must be a string", at(prefix, key)))),
    }
}

/// The item's boolean `key`; 422 when it is not a boolean.
fn flag(object: &Map<String, Json>, key: &str, prefix: &str) -> Result<Option<bool>, ApiError> {
    match value(object, key) {
        None => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(&at(prefix, key), format!("{} must be true or false", at(prefix, key)))),
    }
}

/// Refuses what the engine does not honour yet: row filters, data cutoffs, history tables,
/// partition keys.
fn refuse_unsupported(object: &Map<String, Json>, prefix: &str) -> Result<(), ApiError> {
    let refused =
        |key: &str, why: &str| Err(invalid(&at(prefix, key), format!("{} is not supported: {why}", at(prefix, key))));
    if value(object, "filters").is_some_and(|f| f.as_array().is_none_or(|f| !f.is_empty())) {
        return refused("filters", "every row of a schema is replicated");
    }
    if value(object, "data_cutoff_timestamp").is_some() {
        return refused("data_cutoff_timestamp", "every row of a schema is replicated, however old");
    }
    if flag(object, "disable_data_cutoff", prefix)? == Some(true) {
        return refused("disable_data_cutoff", "there is no data cutoff to disable");
    }
    if flag(object, "history_enabled", prefix)? == Some(true) {
        return refused("history_enabled", "the destination keeps no history tables");
    }
    if text(object, "partition_key", prefix)?.is_some() {
        return refused("partition_key", "the source cuts tables into partitions itself (PostgreSQL: by table pages)");
    }
    Ok(())
}

/// One item of `fields`: an id alone or `{id, enabled, user_output_name, obfuscate}`.
fn field(item: &Json, stream: &Stream, prefix: &str) -> Result<FieldSelection, ApiError> {
    let selection = match item {
        Json::String(id) => FieldSelection::Id(id.clone()),
        Json::Object(object) => {
            for key in ["obfuscate", "obfuscated"] {
                if flag(object, key, prefix)? == Some(true) {
                    let field = at(prefix, key);
                    return Err(invalid(
                        &field,
                        format!("{field} is not supported: values are replicated as they are"),
                    ));
                }
            }
            let id = text(object, "id", prefix)?
                .ok_or_else(|| invalid(prefix, format!("{} is required", at(prefix, "id"))))?;
            FieldSelection::Config {
                id: id.to_owned(),
                enabled: flag(object, "enabled", prefix)?,
                user_output_name: text(object, "user_output_name", prefix)?.map(str::to_owned),
            }
        }
        _ => return Err(invalid(prefix, format!("{prefix} must be a field id or a field configuration"))),
    };
    if !stream.fields.iter().any(|f| f.name == selection.id()) {
        return Err(invalid(prefix, format!("{:?} is not a field of {}", selection.id(), stream.name)));
    }
    Ok(selection)
}

/// How a bulk sync writes its schemas: its mode, whether names are normalized
/// (`normalize_names`), and which new fields it adds (`automatically_add_new_fields`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Writing {
    pub mode: BulkMode,
    pub normalize: bool,
    pub new_fields: AutoAdd,
}

impl Writing {
    /// The destination column of field `id` with the user's `name` for it, if any.
    pub fn column(&self, id: &str, name: Option<&str>) -> String {
        name.map_or_else(|| destination_name(id, self.normalize), str::to_owned)
    }
}

/// The fields of `stream` a configuration replicates, each with its destination column name.
fn output_columns<'a>(config: &'a SchemaConfig, stream: &'a Stream, writing: Writing) -> Vec<(&'a str, String)> {
    if config.fields.is_empty() {
        return stream.fields.iter().map(|f| (f.name.as_str(), writing.column(&f.name, None))).collect();
    }
    let enabled = config.fields.iter().filter(|f| f.enabled());
    enabled.map(|f| (f.id(), writing.column(f.id(), f.output_name()))).collect()
}

/// Checks an enabled schema's selected fields: each once, distinct destination columns, and in
/// `replicate` mode a primary key, all of it selected.
fn check_fields(
    config: &SchemaConfig,
    (stream, key): (&Stream, &[String]),
    writing: Writing,
    prefix: &str,
) -> Result<(), ApiError> {
    let fields = at(prefix, "fields");
    for (j, selection) in config.fields.iter().enumerate() {
        if config.fields[..j].iter().any(|other| other.id() == selection.id()) {
            return Err(invalid(&format!("{fields}[{j}]"), format!("field {:?} is listed twice", selection.id())));
        }
    }
    let columns = output_columns(config, stream, writing);
    for (n, (id, column)) in columns.iter().enumerate() {
        if let Some((other, _)) = columns[..n].iter().find(|(_, c)| c.eq_ignore_ascii_case(column)) {
            return Err(invalid(
                &fields,
                format!("fields {other:?} and {id:?} would both be written to column {column:?}"),
            ));
        }
    }
    if writing.mode != BulkMode::Replicate {
        return Ok(());
    }
    if key.is_empty() {
        let schema = if prefix.is_empty() { "id" } else { prefix };
        return Err(invalid(
            schema,
            format!(
                "replicate mode needs a primary key and {} has none: set one with schemas.set_primary_keys, or disable it",
                stream.name
            ),
        ));
    }
    if let Some(missing) = key.iter().find(|k| !columns.iter().any(|(id, _)| id == k)) {
        return Err(invalid(
            &fields,
            format!("primary key field {missing:?} of {} must be replicated in replicate mode", stream.name),
        ));
    }
    Ok(())
}

/// A schema item of a body: a schema id, or a configuration object with `id`. `prefix` names
/// the item in errors (empty: the whole body).
pub(super) fn parse(item: &Json, prefix: &str, view: &View, writing: Writing) -> Result<BulkSchema, ApiError> {
    let object = match item {
        Json::String(id) => Map::from_iter([("id".to_owned(), json!(id))]),
        Json::Object(object) => object.clone(),
        _ => return Err(invalid(prefix, format!("{prefix} must be a schema id or a schema configuration"))),
    };
    let id = text(&object, "id", prefix)?
        .ok_or_else(|| invalid(&at(prefix, "id"), format!("{} is required", at(prefix, "id"))))?;
    let stream = view.catalog.stream(id).ok_or_else(|| {
        let field = if prefix.is_empty() { "id" } else { prefix };
        invalid(field, format!("{id:?} is not a schema of the source connection (refresh its schemas if it is new)"))
    })?;
    refuse_unsupported(&object, prefix)?;
    let mut fields: Vec<FieldSelection> = match value(&object, "fields") {
        None => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, item)| field(item, stream, &format!("{}[{j}]", at(prefix, "fields"))))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(&at(prefix, "fields"), format!("{} must be a list", at(prefix, "fields")))),
    };
    // A list selects: the fields the source has now and the list leaves out are disabled, so
    // that only fields new at the source follow `automatically_add_new_fields`.
    if !fields.is_empty() {
        let left_out: Vec<FieldSelection> = stream
            .fields
            .iter()
            .filter(|f| !fields.iter().any(|s| s.id() == f.name))
            .map(|f| FieldSelection::Config { id: f.name.clone(), enabled: Some(false), user_output_name: None })
            .collect();
        fields.extend(left_out);
    }
    let tracking_field = text(&object, "tracking_field", prefix)?;
    if let Some(tracking) = tracking_field
        && !stream.capabilities.cursor_fields.iter().any(|f| f == tracking)
    {
        return Err(invalid(
            &at(prefix, "tracking_field"),
            format!(
                "{tracking:?} cannot be the tracking field of {}: it must be a number, date or timestamp field of it",
                stream.name
            ),
        ));
    }
    let config = SchemaConfig {
        fields,
        tracking_field: tracking_field.map(str::to_owned),
        user_output_name: text(&object, "user_output_name", prefix)?.map(str::to_owned),
        partition_key: None,
    };
    let enabled = flag(&object, "enabled", prefix)?.unwrap_or(true);
    if enabled {
        check_fields(&config, (stream, view.primary_key(stream)), writing, prefix)?;
    }
    Ok(BulkSchema { schema_id: stream.name.clone(), enabled, config })
}

/// The configuration of `schema` as an item [`parse`] reads back (to lay a patch over it).
pub(super) fn item(schema: &BulkSchema) -> Map<String, Json> {
    let config = &schema.config;
    Map::from_iter([
        ("id".to_owned(), json!(schema.schema_id)),
        ("enabled".to_owned(), json!(schema.enabled)),
        ("fields".to_owned(), json!(config.fields)),
        ("tracking_field".to_owned(), json!(config.tracking_field)),
        ("user_output_name".to_owned(), json!(config.user_output_name)),
    ])
}

/// 422 naming `field(i)` unless every schema of `schemas` is listed once and writes its own
/// destination table.
pub(super) fn check_distinct(
    schemas: &[BulkSchema],
    normalize: bool,
    field: impl Fn(usize) -> String,
) -> Result<(), ApiError> {
    for (i, schema) in schemas.iter().enumerate() {
        let output = schema.config.output_name(&schema.schema_id, normalize);
        for other in &schemas[..i] {
            if other.schema_id == schema.schema_id {
                return Err(invalid(&field(i), format!("schema {:?} is listed twice", schema.schema_id)));
            }
            if other.config.output_name(&other.schema_id, normalize).eq_ignore_ascii_case(&output) {
                return Err(invalid(
                    &field(i),
                    format!(
                        "schemas {:?} and {:?} would both be written to table {output:?}: give one a user_output_name",
                        other.schema_id, schema.schema_id
                    ),
                ));
            }
        }
    }
    Ok(())
}
