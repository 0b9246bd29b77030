//! Files in a bucket or directory as a bulk sync destination: each run writes a whole new copy
//! of every table as Parquet files, one per partition, and a manifest that readers find
//! through the table's `_latest.json` (see [`store`] for the layout and `docs/ARCHITECTURE.md`
//! for the type mapping).

mod bulk;
mod layout;
mod manifest;
mod part;
#[cfg(feature = "conformance")]
pub mod read;
mod store;

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use syncline_core::connector::{BulkDestination, Capabilities, Connector, ConnectorError, Context, Endpoint, Secret};

/// Files
///
/// Settings of a files connection: where the files go and in which format.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Files")]
pub struct FilesConfig {
    /// Where the files go: `s3://bucket/prefix` (query options `region`, `endpoint` and
    /// `allow_http`), `gs://bucket/prefix` or `file:///directory`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// The format of the files.
    #[serde(default)]
    pub format: Format,
    /// Access key id for `s3://`; without it the worker's `AWS_*` variables are used.
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    /// Secret access key for `s3://`, with the access key id.
    #[serde(default)]
    pub aws_secret_access_key: Option<Secret>,
}

/// A file format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Parquet,
}

/// The `files` connection type.
#[derive(Debug, Default)]
pub struct Files;

#[async_trait]
impl Connector for Files {
    type Config = FilesConfig;
    const ID: &'static str = "files";
    const NAME: &'static str = "Files";

    fn capabilities(&self) -> Capabilities {
        Capabilities { destination: true, ..Capabilities::default() }
    }

    fn endpoint(&self, config: &FilesConfig) -> Endpoint {
        store::endpoint(config)
    }

    /// Writes and deletes a small probe object.
    async fn check(&self, ctx: &Context, config: &FilesConfig) -> Result<(), ConnectorError> {
        let bucket = store::Bucket::open(ctx, config).await?;
        syncline_core::connector::within(ctx.deadlines.query, &bucket.to_string(), bucket.probe()).await
    }

    fn bulk_destination(&self, ctx: &Context, config: FilesConfig) -> Result<Arc<dyn BulkDestination>, ConnectorError> {
        store::validate(&config)?;
        Ok(Arc::new(bulk::FilesBulk::new(ctx.clone(), config)))
    }
}
