//! The payload store: blobs passed between execution stages, under `JOB_PAYLOAD_PATH`, a URL
//! of any spelling [`object_url`] opens (those of the on-premises seeds).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, memory::InMemory, path::Path};

use crate::object_url::{self, OpenError};

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

impl PayloadError {
    fn opening(raw: &str, error: OpenError) -> Self {
        match error {
            OpenError::Url(message) => Self::Url(message),
            OpenError::Store(source) => Self::Store { location: raw.to_owned(), source },
        }
    }
}

/// Checks that `raw` is a payload URL this build can open, without opening it.
pub fn validate_url(raw: &str) -> Result<(), PayloadError> {
    object_url::parse(raw).map(|_| ()).map_err(|e| PayloadError::opening(raw, e))
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
        let opening = |e| PayloadError::opening(raw, e);
        let (store, root) = object_url::open(&object_url::parse(raw).map_err(opening)?, &[]).map_err(opening)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_errors_name_the_url_or_option() {
        assert!(validate_url("ftp://x/y").is_err());
        let err = PayloadStore::open("s3://bucket?colour=blue").expect_err("unknown option");
        assert!(err.to_string().contains("\"colour\""), "{err}");
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
