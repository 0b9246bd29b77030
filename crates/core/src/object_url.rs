//! Object stores named by URL, for the payload store and file destinations.
//!
//! Accepts `file:///dir`, `s3://bucket/prefix?region=…`, `gs://` or `gcs://bucket`,
//! `azblob://container` (gocloud spelling; `az://` too) and `memory://` for tests. The URL's
//! query options (`region`, `endpoint`, `allow_http`, …) configure the store, which
//! `object_store` alone would ignore. Cloud credentials come from the usual `AWS_*`,
//! `GOOGLE_*` and `AZURE_*` variables, or from options passed beside the URL.

use std::sync::Arc;

use object_store::{
    ObjectStore,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    azure::{AzureConfigKey, MicrosoftAzureBuilder},
    gcp::{GoogleCloudStorageBuilder, GoogleConfigKey},
    local::LocalFileSystem,
    memory::InMemory,
    path::Path,
};
use url::Url;

/// Why a URL does not name a store that opens.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL itself: not a URL, an unknown scheme or option, a directory that cannot be made.
    #[error("{0}")]
    Url(String),
    /// The store refused its configuration.
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

/// Parses `raw`, a URL of a scheme [`open`] knows, without opening it.
pub fn parse(raw: &str) -> Result<Url, OpenError> {
    let url = Url::parse(raw).map_err(|e| OpenError::Url(format!("{raw:?} is not a URL ({e})")))?;
    match url.scheme() {
        "file" | "memory" | "s3" | "s3a" | "gs" | "gcs" | "azblob" | "az" => Ok(url),
        other => Err(OpenError::Url(format!(
            "scheme {other:?} is not supported (use file://, s3://, gs://, azblob:// or memory://)"
        ))),
    }
}

/// Opens the store `url` names, and the path of the URL's root in it. The URL's query options,
/// then `options`, configure the store (see [`query_options`] for their names); `file://`
/// creates its directory.
pub fn open(url: &Url, options: &[(&str, &str)]) -> Result<(Arc<dyn ObjectStore>, Path), OpenError> {
    let bucket = url.host_str().unwrap_or_default().to_owned();
    let root = Path::from(url.path());
    Ok(match url.scheme() {
        "memory" => (Arc::new(InMemory::new()), root),
        "file" => {
            let dir = url.to_file_path().map_err(|()| OpenError::Url(format!("{url} is not a local path")))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| OpenError::Url(format!("cannot create {}: {e}", dir.display())))?;
            (Arc::new(LocalFileSystem::new_with_prefix(&dir)?), Path::default())
        }
        "s3" | "s3a" => (Arc::new(s3_builder(url, options)?.build()?), root),
        "gs" | "gcs" => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
            for (key, value) in query_options::<GoogleConfigKey>(url, options, "google_")? {
                builder = builder.with_config(key, value);
            }
            (Arc::new(builder.build()?), root)
        }
        "azblob" | "az" => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(bucket);
            for (key, value) in query_options::<AzureConfigKey>(url, options, "azure_")? {
                builder = builder.with_config(key, value);
            }
            (Arc::new(builder.build()?), root)
        }
        other => return Err(OpenError::Url(format!("scheme {other:?} is not supported"))),
    })
}

fn s3_builder(url: &Url, options: &[(&str, &str)]) -> Result<AmazonS3Builder, OpenError> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(url.host_str().unwrap_or_default());
    for (key, value) in query_options::<AmazonS3ConfigKey>(url, options, "aws_")? {
        builder = builder.with_config(key, value);
    }
    Ok(builder)
}

/// The URL's query pairs, then `options`, as builder options: each name as given (`region`,
/// `account_name`), or else with the store's prefix (`allow_http` → `aws_allow_http`).
fn query_options<K: std::str::FromStr<Err = object_store::Error>>(
    url: &Url,
    options: &[(&str, &str)],
    prefix: &str,
) -> Result<Vec<(K, String)>, OpenError> {
    let given = options.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .chain(given)
        .map(|(k, v)| {
            let key = k.to_ascii_lowercase();
            let parsed = key.parse::<K>().or_else(|_| format!("{prefix}{key}").parse::<K>());
            parsed.map(|k| (k, v)).map_err(|e| OpenError::Url(format!("unknown option {key:?} ({e})")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_options_come_from_the_query_and_beside_it() {
        let url = Url::parse("s3://bucket/prefix?region=eu-west-2&endpoint=http://127.0.0.1:9000&allow_http=true")
            .expect("url");
        let builder = s3_builder(&url, &[("aws_access_key_id", "key")]).expect("builder");
        assert_eq!(builder.get_config_value(&AmazonS3ConfigKey::Region).as_deref(), Some("eu-west-2"));
        assert_eq!(builder.get_config_value(&AmazonS3ConfigKey::Endpoint).as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(builder.get_config_value(&AmazonS3ConfigKey::Bucket).as_deref(), Some("bucket"));
        assert_eq!(builder.get_config_value(&AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("key"));
    }

    #[test]
    fn rejects_unknown_schemes_and_options() {
        assert!(parse("ftp://x/y").is_err());
        assert!(parse("not a url").is_err());
        let url = parse("s3://bucket?colour=blue").expect("url");
        let err = open(&url, &[]).expect_err("unknown option");
        assert!(err.to_string().contains("\"colour\""), "{err}");
    }

    #[test]
    fn opens_every_supported_scheme() {
        for raw in
            ["memory:///", "s3://b/p?region=us-west-2", "gs://b/p", "gcs://b/p", "azblob://c/p?account_name=acct"]
        {
            let url = parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            open(&url, &[]).unwrap_or_else(|e| panic!("{raw}: {e}"));
        }
    }
}
