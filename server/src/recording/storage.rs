//! Where finished recordings go: an `object_store` built from the setting
//! `storage.url` (`[storage] url` in the configuration file, or
//! `TSUNAGU_STORAGE_URL`). Unset, a folder in the data directory
//! (`DATA/objects`); `s3://bucket/prefix`, any S3-compatible store, its
//! credentials and endpoint read from the usual `AWS_*` variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT` for a store that is not Amazon's, `AWS_ALLOW_HTTP=true`
//! for one without TLS).

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage.url {0:?}: {1}")]
    BadUrl(String, String),
    #[error("recording storage {0}: {1}")]
    Open(String, String),
}

/// The object store recordings are kept in.
pub fn open(url: Option<&str>, data_dir: &Path) -> Result<Arc<dyn ObjectStore>, StorageError> {
    open_with_env(url, data_dir, std::env::vars())
}

/// [`open`] with the `AWS_*` settings taken from `env` instead of the
/// process environment (tests, tools).
pub fn open_with_env(url: Option<&str>, data_dir: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let url = url.map(str::trim).filter(|u| !u.is_empty());
    let Some(url) = url else {
        let dir = data_dir.join("objects");
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::Open(dir.display().to_string(), e.to_string()))?;
        let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|e| StorageError::Open(dir.display().to_string(), e.to_string()))?;
        return Ok(Arc::new(fs));
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::BadUrl(url.into(), "no bucket named (s3://bucket/prefix)".into()));
        }
        // reqwest is built without a TLS provider of its own: give it the
        // ring provider the rest of the server uses. An error only means
        // one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // What AmazonS3Builder::from_env does, from the given variables.
        let mut builder = AmazonS3Builder::new();
        for (k, v) in env {
            if let Some(key) = k.starts_with("AWS_").then(|| k.to_ascii_lowercase().parse().ok()).flatten() {
                builder = builder.with_config(key, v);
            }
        }
        let s3 = builder.with_bucket_name(bucket).build().map_err(|e| StorageError::Open(url.into(), e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            return Ok(Arc::new(s3));
        }
        return Ok(Arc::new(PrefixStore::new(s3, prefix)));
    }
    if let Some(dir) = url.strip_prefix("file://") {
        let dir = Path::new(dir);
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Open(url.into(), e.to_string()))?;
        return Ok(Arc::new(LocalFileSystem::new_with_prefix(dir).map_err(|e| StorageError::Open(url.into(), e.to_string()))?));
    }
    Err(StorageError::BadUrl(url.into(), "use s3://bucket/prefix or file:///path (unset: DATA/objects)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutPayload};

    #[tokio::test]
    async fn local_by_default_and_bad_urls_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(None, dir.path()).unwrap();
        let key = object_store::path::Path::from("recordings/2026/12/07/x.wav");
        s.put(&key, PutPayload::from_static(b"abc")).await.unwrap();
        assert!(dir.path().join("objects/recordings/2026/12/07/x.wav").is_file());
        assert!(open(Some("ftp://x"), dir.path()).unwrap_err().to_string().contains("s3://"));
        assert!(open(Some("s3:///p"), dir.path()).is_err());
    }
}
