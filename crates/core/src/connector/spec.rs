//! Connection types: the typed [`Connector`] trait each connector implements, and the
//! type-erased [`DynConnector`] the registry hands to the api and the worker.
//!
//! A connector declares its configuration as a Rust type. Its JSON Schema is derived from that
//! type (schemars) in the shape the official Polytomic SDK parses, secrets are [`Secret`]s
//! (`writeOnly` in the schema, sealed at rest at any depth, never printed by `Debug`), and a
//! configuration that does not deserialize is a [`ErrorClass::Config`] error naming the field.

use std::{borrow::Cow, sync::Arc};

use async_trait::async_trait;
use schemars::{
    JsonSchema, SchemaGenerator,
    generate::SchemaSettings,
    json_schema,
    transform::{AddNullable, ReplaceBoolSchemas},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value as Json;

use super::{BulkDestination, ConnectorError, Context, Destination, Endpoint, EventWarehouse, Source};

/// Which roles a connection type can play (the Polytomic `capabilities` object).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Capabilities {
    pub source: bool,
    pub destination: bool,
    pub enrichment: bool,
    pub logging: bool,
    pub orchestration: bool,
    /// Takes the events of event streams ([`Connector::event_warehouse`]); not a Polytomic
    /// capability, so not shown.
    #[serde(skip)]
    pub events: bool,
    /// Its reads honour [`super::ReadRequest::filter`] (model filters); not shown either.
    #[serde(skip)]
    pub filters: bool,
}

/// Static description of a connection type.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    /// Type id used in the API, e.g. `postgresql`.
    pub id: &'static str,
    pub name: &'static str,
    pub capabilities: Capabilities,
    /// JSON Schema of the configuration; secret properties carry `"writeOnly": true`.
    pub config_schema: Json,
}

impl ConnectorSpec {
    /// The dotted paths (`password`, `auth.token`) of the configuration properties that are
    /// secrets, at any depth: stored sealed, never returned.
    pub fn secret_fields(&self) -> Vec<String> {
        let mut found = Vec::new();
        collect_secrets(&self.config_schema, "", &mut found);
        found
    }
}

fn collect_secrets(schema: &Json, prefix: &str, found: &mut Vec<String>) {
    let Some(properties) = schema["properties"].as_object() else { return };
    for (name, property) in properties {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        if property["writeOnly"] == Json::Bool(true) {
            found.push(path);
        } else {
            collect_secrets(property, &path, found);
        }
    }
}

/// The JSON Schema of `T` as the Polytomic SDK parses it: subschemas inlined, boolean schemas
/// as objects (`additionalProperties: {"not": {}}`), optional values `nullable` rather than
/// a `["string", "null"]` type.
pub fn config_schema<T: JsonSchema>() -> Json {
    let mut settings = SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    settings.transforms.push(Box::new(AddNullable::default()));
    settings.transforms.push(Box::new(ReplaceBoolSchemas::default()));
    settings.into_generator().into_root_schema_for::<T>().to_value()
}

/// A secret configuration value: `writeOnly` in the schema, sealed at rest, `***` in `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
        json_schema!({"type": "string", "writeOnly": true, "format": "password"})
    }
}

/// A value a configuration field may take (a database on the server, a schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParameterValue {
    pub label: String,
    pub value: Json,
}

impl ParameterValue {
    /// A name shown as itself (a database, a schema).
    pub fn named(name: String) -> Self {
        Self { label: name.clone(), value: name.into() }
    }
}

/// A connection type, with its configuration as a Rust type.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The configuration; its JSON Schema is the one the API serves and validates with.
    type Config: DeserializeOwned + JsonSchema + Send + Sync;

    /// Type id used in the API (`postgresql`).
    const ID: &'static str;
    /// Name shown to people.
    const NAME: &'static str;

    /// Which roles the type can play.
    fn capabilities(&self) -> Capabilities;

    /// Where a configuration connects, and as whom.
    fn endpoint(&self, config: &Self::Config) -> Endpoint;

    /// Checks that a configuration reaches its system with working credentials.
    async fn check(&self, ctx: &Context, config: &Self::Config) -> Result<(), ConnectorError>;

    /// The values configuration field `field` may take with the rest of `config` as given
    /// (e.g. the databases of the server); `None` when the field takes free input.
    async fn parameter_values(
        &self,
        _ctx: &Context,
        _config: &Self::Config,
        _field: &str,
    ) -> Result<Option<Vec<ParameterValue>>, ConnectorError> {
        Ok(None)
    }

    /// Opens the connection as a source.
    fn source(&self, _ctx: &Context, _config: Self::Config) -> Result<Arc<dyn Source>, ConnectorError> {
        Err(ConnectorError::config(format!("a {} connection cannot be a source", Self::ID)))
    }

    /// Opens the connection as a destination.
    fn destination(&self, _ctx: &Context, _config: Self::Config) -> Result<Arc<dyn Destination>, ConnectorError> {
        Err(ConnectorError::config(format!("a {} connection cannot be a destination", Self::ID)))
    }

    /// Opens the connection as the destination of bulk syncs.
    fn bulk_destination(
        &self,
        _ctx: &Context,
        _config: Self::Config,
    ) -> Result<Arc<dyn BulkDestination>, ConnectorError> {
        Err(ConnectorError::config(format!("a {} connection cannot be a bulk sync destination", Self::ID)))
    }

    /// Opens the connection as the warehouse of event streams.
    fn event_warehouse(
        &self,
        _ctx: &Context,
        _config: Self::Config,
    ) -> Result<Arc<dyn EventWarehouse>, ConnectorError> {
        Err(ConnectorError::config(format!("a {} connection cannot take event streams", Self::ID)))
    }
}

/// A connection type behind the registry: the same operations on JSON configurations.
#[async_trait]
pub trait DynConnector: Send + Sync {
    fn spec(&self) -> &ConnectorSpec;
    fn endpoint(&self, config: &Json) -> Result<Endpoint, ConnectorError>;
    async fn check(&self, ctx: &Context, config: &Json) -> Result<(), ConnectorError>;
    async fn parameter_values(
        &self,
        ctx: &Context,
        config: &Json,
        field: &str,
    ) -> Result<Option<Vec<ParameterValue>>, ConnectorError>;
    fn source(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn Source>, ConnectorError>;
    fn destination(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn Destination>, ConnectorError>;
    fn bulk_destination(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn BulkDestination>, ConnectorError>;
    fn event_warehouse(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn EventWarehouse>, ConnectorError>;
}

/// A [`Connector`] with its spec worked out once.
struct Registered<C> {
    connector: C,
    spec: ConnectorSpec,
}

/// Erases `connector`'s configuration type for the registry.
pub fn register<C: Connector>(connector: C) -> Arc<dyn DynConnector> {
    let spec = ConnectorSpec {
        id: C::ID,
        name: C::NAME,
        capabilities: connector.capabilities(),
        config_schema: config_schema::<C::Config>(),
    };
    Arc::new(Registered { connector, spec })
}

impl<C: Connector> Registered<C> {
    fn parse(&self, config: &Json) -> Result<C::Config, ConnectorError> {
        serde_json::from_value(config.clone()).map_err(|e| ConnectorError::config(format!("configuration: {e}")))
    }
}

#[async_trait]
impl<C: Connector> DynConnector for Registered<C> {
    fn spec(&self) -> &ConnectorSpec {
        &self.spec
    }

    fn endpoint(&self, config: &Json) -> Result<Endpoint, ConnectorError> {
        Ok(self.connector.endpoint(&self.parse(config)?))
    }

    async fn check(&self, ctx: &Context, config: &Json) -> Result<(), ConnectorError> {
        self.connector.check(ctx, &self.parse(config)?).await
    }

    async fn parameter_values(
        &self,
        ctx: &Context,
        config: &Json,
        field: &str,
    ) -> Result<Option<Vec<ParameterValue>>, ConnectorError> {
        self.connector.parameter_values(ctx, &self.parse(config)?, field).await
    }

    fn source(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn Source>, ConnectorError> {
        self.connector.source(ctx, self.parse(config)?)
    }

    fn destination(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn Destination>, ConnectorError> {
        self.connector.destination(ctx, self.parse(config)?)
    }

    fn bulk_destination(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn BulkDestination>, ConnectorError> {
        self.connector.bulk_destination(ctx, self.parse(config)?)
    }

    fn event_warehouse(&self, ctx: &Context, config: &Json) -> Result<Arc<dyn EventWarehouse>, ConnectorError> {
        self.connector.event_warehouse(ctx, self.parse(config)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with a nested secret.
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Example {
        /// The host.
        host: String,
        port: Option<u16>,
        auth: Auth,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Auth {
        user: String,
        token: Secret,
    }

    #[test]
    fn schema_has_the_shape_the_sdk_parses() {
        let schema = config_schema::<Example>();
        assert_eq!(schema["additionalProperties"], serde_json::json!({"not": {}}));
        assert_eq!(schema["properties"]["port"]["type"], "integer");
        assert_eq!(schema["properties"]["port"]["nullable"], true);
        assert_eq!(schema["properties"]["auth"]["properties"]["token"]["writeOnly"], true);
        assert!(schema.get("$defs").is_none(), "subschemas are inlined");
        let spec = ConnectorSpec { id: "x", name: "X", capabilities: Capabilities::default(), config_schema: schema };
        assert_eq!(spec.secret_fields(), vec!["auth.token".to_owned()]);
    }

    #[test]
    fn secrets_do_not_print() {
        let auth = Auth { user: "u".into(), token: Secret::from("hunter2") };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}
