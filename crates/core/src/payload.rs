//! The payload store: blobs passed between execution stages, under `JOB_PAYLOAD_PATH`.
//!
//! Accepts the URL spellings of the on-premises seeds: `file:///dir`, `s3://bucket/prefix?region=…`
//! (query options such as `region`, `endpoint` and `allow_http` are honoured), `gs://` or
//! `gcs://bucket`, `azblob://container` (gocloud spelling; `az://` too) and `memory://` for tests.
//! Cloud credentials come from the usual `AWS_*`, `GOOGLE_*` and `AZURE_*` variables.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    azure::{AzureConfigKey, MicrosoftAzureBuilder},
    gcp::{GoogleCloudStorageBuilder, GoogleConfigKey},
    local::LocalFileSystem,
    memory::InMemory,
    path::Path,
};
use url::Url;

/// A payload store failure, naming the location involved.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("invalid payload URL: {0}")]
    Url(String),
    #[error("payload store {location}: {source}")]
    Store {
        location: String,
        #[source]
        source: object_store::Error,
    },
}

/// Checks that `raw` is a payload URL this build can open, without opening it.
pub fn validate_url(raw: &str) -> Result<(), PayloadError> {
    let url = Url::parse(raw).map_err(|e| PayloadError::Url(format!("{raw:?} is not a URL ({e})")))?;
    match url.scheme() {
        "file" | "memory" | "s3" | "s3a" | "gs" | "gcs" | "azblob" | "az" => Ok(()),
        other => Err(PayloadError::Url(format!(
            "scheme {other:?} is not supported (use file://, s3://, gs://, azblob:// or memory://)"
        ))),
    }
}

/// Blob storage for execution payloads, rooted at the `JOB_PAYLOAD_PATH` prefix.
#[derive(Clone, Debug)]
pub struct PayloadStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
}

impl PayloadStore {
    /// Opens the store a payload URL names.
    pub fn open(raw: &str) -> Result<Self, PayloadError> {
        validate_url(raw)?;
        let url = Url::parse(raw).map_err(|e| PayloadError::Url(e.to_string()))?;
        let bucket = url.host_str().unwrap_or_default().to_owned();
        let build_error = |e: object_store::Error| PayloadError::Store { location: raw.to_owned(), source: e };
        let (store, root): (Arc<dyn ObjectStore>, Path) = match url.scheme() {
            "memory" => (Arc::new(InMemory::new()), Path::from(url.path())),
            "file" => {
                let dir = url.to_file_path().map_err(|()| PayloadError::Url(format!("{raw:?} is not a local path")))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| PayloadError::Url(format!("cannot create {}: {e}", dir.display())))?;
                (Arc::new(LocalFileSystem::new_with_prefix(&dir).map_err(build_error)?), Path::default())
            }
            "s3" | "s3a" => (Arc::new(s3_builder(&url)?.build().map_err(build_error)?), Path::from(url.path())),
            "gs" | "gcs" => {
                let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
                for (key, value) in query_options::<GoogleConfigKey>(&url, "google_")? {
                    builder = builder.with_config(key, value);
                }
                (Arc::new(builder.build().map_err(build_error)?), Path::from(url.path()))
            }
            _ => {
                let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(bucket);
                for (key, value) in query_options::<AzureConfigKey>(&url, "azure_")? {
                    builder = builder.with_config(key, value);
                }
                (Arc::new(builder.build().map_err(build_error)?), Path::from(url.path()))
            }
        };
        Ok(Self { store, root, url: raw.to_owned() })
    }

    /// A fresh in-memory store, for unit tests.
    pub fn in_memory() -> Self {
        Self { store: Arc::new(InMemory::new()), root: Path::default(), url: "memory:///".into() }
    }

    fn path(&self, key: &str) -> Path {
        key.split('/').filter(|p| !p.is_empty()).fold(self.root.clone(), |path, part| path.join(part))
    }

    fn error(&self, key: &str, source: object_store::Error) -> PayloadError {
        PayloadError::Store { location: format!("{}/{key}", self.url.trim_end_matches('/')), source }
    }

    /// Writes one payload at `key` (a `/`-separated name under the root).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), PayloadError> {
        self.store.put(&self.path(key), PutPayload::from_bytes(bytes)).await.map_err(|e| self.error(key, e))?;
        Ok(())
    }

    /// Reads the payload at `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, PayloadError> {
        let result = self.store.get(&self.path(key)).await.map_err(|e| self.error(key, e))?;
        result.bytes().await.map_err(|e| self.error(key, e))
    }

    /// Reads the payload at `key`, or `None` if there is none.
    pub async fn get_optional(&self, key: &str) -> Result<Option<Bytes>, PayloadError> {
        match self.store.get(&self.path(key)).await {
            Ok(result) => result.bytes().await.map(Some).map_err(|e| self.error(key, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Deletes every payload whose key starts with `prefix/`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), PayloadError> {
        let listed: Vec<_> =
            self.store.list(Some(&self.path(prefix))).try_collect().await.map_err(|e| self.error(prefix, e))?;
        for meta in listed {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(prefix, e)),
            }
        }
        Ok(())
    }
}

fn s3_builder(url: &Url) -> Result<AmazonS3Builder, PayloadError> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(url.host_str().unwrap_or_default());
    for (key, value) in query_options::<AmazonS3ConfigKey>(url, "aws_")? {
        builder = builder.with_config(key, value);
    }
    Ok(builder)
}

/// The URL's query pairs as builder options: each name as given (`region`, `account_name`),
/// or else with the store's prefix (`allow_http` → `aws_allow_http`).
fn query_options<K: std::str::FromStr<Err = object_store::Error>>(
    url: &Url,
    prefix: &str,
) -> Result<Vec<(K, String)>, PayloadError> {
    url.query_pairs()
        .map(|(k, v)| {
            let key = k.to_ascii_lowercase();
            let parsed = key.parse::<K>().or_else(|_| format!("{prefix}{key}").parse::<K>());
            parsed.map(|k| (k, v.into_owned())).map_err(|e| PayloadError::Url(format!("unknown option {key:?} ({e})")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_region_and_endpoint_come_from_the_query() {
        let url = Url::parse("s3://bucket/prefix?region=eu-west-2&endpoint=http://127.0.0.1:9000&allow_http=true")
            .expect("url");
        let builder = s3_builder(&url).expect("builder");
        assert_eq!(builder.get_config_value(&AmazonS3ConfigKey::Region).as_deref(), Some("eu-west-2"));
        assert_eq!(builder.get_config_value(&AmazonS3ConfigKey::Endpoint).as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(builder.get_config_value(&AmazonS3ConfigKey::Bucket).as_deref(), Some("bucket"));
    }

    #[test]
    fn rejects_unknown_schemes_and_options() {
        assert!(validate_url("ftp://x/y").is_err());
        assert!(validate_url("not a url").is_err());
        let err = PayloadStore::open("s3://bucket?colour=blue").expect_err("unknown option");
        assert!(err.to_string().contains("\"colour\""), "{err}");
    }

    #[test]
    fn opens_every_supported_scheme() {
        for url in
            ["memory:///", "s3://b/p?region=us-west-2", "gs://b/p", "gcs://b/p", "azblob://c/p?account_name=acct"]
        {
            PayloadStore::open(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[tokio::test]
    async fn round_trips_and_deletes_by_prefix() {
        let dir = std::env::temp_dir().join(format!("syncline-payload-{}", uuid::Uuid::new_v4()));
        let store = PayloadStore::open(&format!("file://{}", dir.display())).expect("file store");
        store.put("a/1.bin", Bytes::from_static(b"one")).await.expect("put");
        store.put("a/2.bin", Bytes::from_static(b"two")).await.expect("put");
        store.put("b/1.bin", Bytes::from_static(b"other")).await.expect("put");
        assert_eq!(store.get("a/2.bin").await.expect("get"), Bytes::from_static(b"two"));
        store.delete_prefix("a").await.expect("delete");
        assert!(store.get("a/1.bin").await.is_err());
        assert_eq!(store.get_optional("a/1.bin").await.expect("absent is not an error"), None);
        assert_eq!(store.get("b/1.bin").await.expect("kept"), Bytes::from_static(b"other"));
        std::fs::remove_dir_all(dir).ok();
    }
}
