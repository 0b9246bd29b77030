//! The store a files connection writes to: its URL checked and opened, and the object
//! operations the destination uses, their failures classed for the worker.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde::{Serialize, de::DeserializeOwned};
use syncline_core::{
    connector::{ConnectorError, Context, Endpoint},
    object_url,
};
use url::Url;
use uuid::Uuid;

use super::FilesConfig;

/// The query options a files URL may carry (`s3://` only). Others, credentials among them,
/// are refused: the URL is stored in the clear, and options such as `metadata_endpoint` would
/// send requests wherever a user says.
const OPTIONS: &[&str] = &["region", "endpoint", "allow_http"];

/// Checks the configuration without the network: the URL's scheme and options, and the
/// credentials; returns the URL.
pub(super) fn validate(config: &FilesConfig) -> Result<Url, ConnectorError> {
    let url = object_url::parse(&config.url).map_err(|e| ConnectorError::config(format!("url: {e}")))?;
    let scheme = url.scheme();
    if !matches!(scheme, "s3" | "gs" | "file") {
        return Err(ConnectorError::config(format!(
            "url: scheme {scheme:?} is not supported for files (use s3://, gs:// or file://)"
        )));
    }
    if let Some((key, _)) = url.query_pairs().find(|(key, _)| scheme != "s3" || !OPTIONS.contains(&key.as_ref())) {
        return Err(ConnectorError::config(format!(
            "url: option {key:?} is not accepted (s3:// URLs take region, endpoint and allow_http; \
             credentials go in aws_access_key_id and aws_secret_access_key)"
        )));
    }
    match (&config.aws_access_key_id, &config.aws_secret_access_key) {
        (Some(_), None) | (None, Some(_)) => {
            Err(ConnectorError::config("aws_access_key_id and aws_secret_access_key are given together"))
        }
        (Some(_), Some(_)) if scheme != "s3" => {
            Err(ConnectorError::config("aws_access_key_id and aws_secret_access_key are for s3:// URLs"))
        }
        _ => Ok(url),
    }
}

/// Where the files go, and with which access key: the `endpoint` option's host, else the
/// cloud's; for a `file://` URL, its directory on the worker (`localhost`), which only
/// `LOCAL_FILES_ROOT` opens.
pub(super) fn endpoint(config: &FilesConfig) -> Endpoint {
    let url = Url::parse(&config.url).ok();
    let scheme = url.as_ref().map_or("", Url::scheme);
    let option = url.as_ref().and_then(|u| u.query_pairs().find(|(k, _)| k == "endpoint").map(|(_, v)| v.into_owned()));
    let given = option.and_then(|e| Url::parse(&e).ok());
    let (host, port) = match (scheme, &given) {
        (_, Some(given)) => (given.host_str().unwrap_or_default(), given.port_or_known_default().unwrap_or(443)),
        ("s3", None) => ("s3.amazonaws.com", 443),
        ("gs", None) => ("storage.googleapis.com", 443),
        _ => ("localhost", 0),
    };
    let directory = url.filter(|u| u.scheme() == "file").map(|u| u.to_file_path().unwrap_or_else(|()| u.path().into()));
    Endpoint { host: host.to_owned(), port, database: None, user: config.aws_access_key_id.clone(), directory }
}

/// A files connection's store and the path of its URL in it.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The URL without its query, for messages.
    shown: String,
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Bucket {
    /// Opens the store of `config` once the egress policy allows its endpoint; requests give up
    /// connecting after the connect deadline and waiting after the idle one.
    pub async fn open(ctx: &Context, config: &FilesConfig) -> Result<Self, ConnectorError> {
        let url = validate(config)?;
        endpoint(config).check(ctx).await?;
        let connect = format!("{}ms", ctx.deadlines.connect.as_millis());
        let timeout = format!("{}ms", ctx.deadlines.idle.as_millis());
        let mut options = vec![("connect_timeout", connect.as_str()), ("timeout", timeout.as_str())];
        if let (Some(id), Some(secret)) = (&config.aws_access_key_id, &config.aws_secret_access_key) {
            options.extend([("aws_access_key_id", id.as_str()), ("aws_secret_access_key", secret.expose())]);
        }
        let (store, root) =
            object_url::open(&url, &options).map_err(|e| ConnectorError::config(format!("url: {e}")))?;
        let mut shown = url;
        shown.set_query(None);
        Ok(Self { store, root, shown: shown.to_string() })
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The path of the URL in the store, which every place is under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` relative to the URL, as manifests name files.
    pub fn relative(&self, path: &Path) -> String {
        let parts = path.prefix_match(&self.root).map(|parts| parts.map(|p| p.as_ref().to_owned()).collect());
        parts.unwrap_or_else(|| vec![path.to_string()]).join("/")
    }

    /// The path of `relative`, a path relative to the URL.
    pub fn at(&self, relative: &str) -> Path {
        self.root.parts().chain(Path::from(relative).parts()).collect()
    }

    /// A failure at `path`, classed: a missing object is not found, refused credentials are an
    /// auth failure, other answers of the service may clear by themselves.
    pub fn error(&self, path: &Path, e: object_store::Error) -> ConnectorError {
        let message = format!("{}: {e}", self.relative(path));
        let error = match &e {
            object_store::Error::NotFound { .. } => ConnectorError::not_found(message),
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                ConnectorError::auth(message)
            }
            object_store::Error::Generic { .. } | object_store::Error::JoinError { .. } => {
                ConnectorError::transient(message)
            }
            _ => ConnectorError::permanent(message),
        };
        error.caused_by(e)
    }

    /// Writes and deletes a probe object.
    pub async fn probe(&self) -> Result<(), ConnectorError> {
        let path = self.root.clone().join(format!("_syncline_probe_{}", Uuid::new_v4()).as_str());
        self.store.put(&path, PutPayload::from_static(b"syncline")).await.map_err(|e| self.error(&path, e))?;
        self.store.delete(&path).await.map_err(|e| self.error(&path, e))
    }

    /// The object at `path`, or `None` when there is none.
    pub async fn head(&self, path: &Path) -> Result<Option<ObjectMeta>, ConnectorError> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(path, e)),
        }
    }

    /// The object at `path`, or `None` when there is none.
    pub async fn get(&self, path: &Path) -> Result<Option<Bytes>, ConnectorError> {
        match self.store.get(path).await {
            Ok(result) => result.bytes().await.map(Some).map_err(|e| self.error(path, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(path, e)),
        }
    }

    /// The JSON document at `path`, or `None` when there is none.
    pub async fn read<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, ConnectorError> {
        let Some(bytes) = self.get(path).await? else { return Ok(None) };
        let document = serde_json::from_slice(&bytes)
            .map_err(|e| ConnectorError::permanent(format!("{}: {e}", self.relative(path))))?;
        Ok(Some(document))
    }

    /// Writes `document` as JSON at `path`, at once.
    pub async fn write<T: Serialize>(&self, path: &Path, document: &T) -> Result<(), ConnectorError> {
        let bytes = serde_json::to_vec_pretty(document).map_err(|e| ConnectorError::permanent(e.to_string()))?;
        self.store.put(path, PutPayload::from_bytes(Bytes::from(bytes))).await.map_err(|e| self.error(path, e))?;
        Ok(())
    }

    /// The objects under `dir`, sorted by path.
    pub async fn list(&self, dir: &Path) -> Result<Vec<ObjectMeta>, ConnectorError> {
        let mut listed: Vec<ObjectMeta> =
            self.store.list(Some(dir)).try_collect().await.map_err(|e| self.error(dir, e))?;
        listed.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(listed)
    }

    /// The directories right under `dir`.
    pub async fn directories(&self, dir: &Path) -> Result<Vec<Path>, ConnectorError> {
        let listed = self.store.list_with_delimiter(Some(dir)).await.map_err(|e| self.error(dir, e))?;
        Ok(listed.common_prefixes)
    }

    /// Deletes every object under `dir`.
    pub async fn delete_all(&self, dir: &Path) -> Result<(), ConnectorError> {
        for meta in self.list(dir).await? {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(&meta.location, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> FilesConfig {
        FilesConfig {
            url: url.into(),
            format: Default::default(),
            aws_access_key_id: None,
            aws_secret_access_key: None,
        }
    }

    #[test]
    fn only_safe_options_and_schemes_pass() {
        assert!(validate(&config("s3://b/p?region=eu-west-1&endpoint=http://127.0.0.1:9000&allow_http=true")).is_ok());
        assert!(validate(&config("file:///tmp/x")).is_ok());
        for (url, refusal) in [
            ("s3://b/p?metadata_endpoint=http://169.254.169.254", "\"metadata_endpoint\""),
            ("s3://b/p?secret_access_key=x", "aws_secret_access_key"),
            ("gs://b/p?endpoint=http://x", "\"endpoint\""),
            ("azblob://c/p", "not supported"),
            ("memory:///", "not supported"),
        ] {
            let error = validate(&config(url)).expect_err(url);
            assert!(error.message.contains(refusal), "{url}: {}", error.message);
        }
        let half = FilesConfig { aws_access_key_id: Some("id".into()), ..config("s3://b/p") };
        assert!(validate(&half).is_err(), "a key id without its secret");
    }

    #[test]
    fn endpoints_name_where_files_go() {
        let given = endpoint(&FilesConfig {
            aws_access_key_id: Some("AKIA".into()),
            ..config("s3://b/p?endpoint=http://127.0.0.1:9000")
        });
        assert_eq!((given.host.as_str(), given.port, given.user.as_deref()), ("127.0.0.1", 9000, Some("AKIA")));
        assert_eq!(endpoint(&config("s3://b/p")).host, "s3.amazonaws.com");
        assert_eq!(endpoint(&config("gs://b/p")).host, "storage.googleapis.com");
        assert_eq!(endpoint(&config("file:///tmp/x")).host, "localhost");
    }
}
