//! From the spool folder to the object store: each finished file is sent
//! with `put_multipart` (5 MiB parts), its SHA-256 taken on the way, the
//! row marked `stored` (or `interrupted`) with size and hash, and only then
//! is the spool file deleted. A failure (the store unreachable, a full
//! disk behind a local store) is retried with backoff, up to five minutes
//! apart, for as long as it takes: the spool file stays until it is safe.

use super::writer::{fix_header, WriterEvent};
use super::{object_key, valid_id, RecordError};
use crate::store::SqliteStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

/// Uploads at once: enough to keep a link busy, few enough that the end
/// of a benchmark's 500 calls does not open 500 connections.
const CONCURRENT: usize = 4;
const PART: usize = 5 << 20;
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The uploader: spawns one task per finished file.
#[derive(Clone)]
pub struct Uploads {
    store: Arc<SqliteStore>,
    objects: Arc<dyn ObjectStore>,
    limit: Arc<Semaphore>,
}

enum Failure {
    /// Try again later.
    Retry(String),
    /// The file is gone: nothing to retry.
    Lost(String),
}

impl Uploads {
    pub fn new(store: Arc<SqliteStore>, objects: Arc<dyn ObjectStore>) -> Self {
        Self { store, objects, limit: Arc::new(Semaphore::new(CONCURRENT)) }
    }

    /// Follow the writer's reports until it stops.
    pub async fn run(self, mut events: tokio::sync::mpsc::UnboundedReceiver<WriterEvent>) {
        while let Some(ev) = events.recv().await {
            match ev {
                WriterEvent::Closed { id, path, frames } => self.spawn(id, path, frames, "stored"),
                WriterEvent::Failed { id, reason } => {
                    if let Err(e) = mark_failed(&self.store, &id, &reason).await {
                        tracing::error!(recording = %id, error = %e, "cannot mark a recording failed");
                    }
                }
            }
        }
    }

    /// Upload `path` in the background, retrying until it is stored.
    pub fn spawn(&self, id: String, path: PathBuf, frames: u64, state: &'static str) {
        let me = self.clone();
        tokio::spawn(async move { me.upload_until_done(&id, &path, frames, state).await });
    }

    /// Upload `path`, retrying with backoff; returns when it is stored
    /// (or lost).
    pub async fn upload_until_done(&self, id: &str, path: &Path, frames: u64, state: &str) {
        let mut delay = Duration::from_secs(1);
        loop {
            let result = {
                let _permit = self.limit.acquire().await;
                self.upload_once(id, path, frames, state).await
            };
            match result {
                Ok(bytes) => {
                    tracing::debug!(recording = %id, bytes, "recording stored");
                    metrics::counter!("tsunagu_recordings_stored_total").increment(1);
                    return;
                }
                Err(Failure::Lost(reason)) => {
                    tracing::error!(recording = %id, %reason, "recording lost before upload");
                    let _ = mark_failed(&self.store, id, &reason).await;
                    return;
                }
                Err(Failure::Retry(reason)) => {
                    tracing::warn!(recording = %id, %reason, retry_in = ?delay, "recording upload failed; the spool file is kept");
                    metrics::counter!("tsunagu_recording_upload_errors_total").increment(1);
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    async fn upload_once(&self, id: &str, path: &Path, frames: u64, state: &str) -> Result<u64, Failure> {
        let row = sqlx::query("SELECT object_key FROM recordings WHERE id = ?").bind(id).fetch_optional(self.store.pool()).await.map_err(|e| Failure::Retry(e.to_string()))?;
        let key = match row {
            Some(r) => r.try_get::<String, _>("object_key").map_err(|e| Failure::Retry(e.to_string()))?,
            None => object_key(id, crate::store::unix_ms()),
        };
        let mut file = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Failure::Lost(format!("the spool file {} is gone", path.display()))),
            Err(e) => return Err(Failure::Retry(format!("reading {}: {e}", path.display()))),
        };
        let upload = self.objects.put_multipart(&ObjectPath::from(key.as_str())).await.map_err(|e| Failure::Retry(e.to_string()))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(Failure::Retry(format!("reading {}: {e}", path.display())));
                }
            };
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
            if let Err(e) = w.wait_for_capacity(2).await {
                return Err(Failure::Retry(e.to_string()));
            }
            w.write(&buf[..n]);
            total += n as u64;
        }
        w.finish().await.map_err(|e| Failure::Retry(e.to_string()))?;
        let sha = hex::encode(sha.finalize());
        sqlx::query("UPDATE recordings SET state = ?, bytes = ?, sha256 = ?, duration_ms = ?, object_key = ? WHERE id = ?")
            .bind(state)
            .bind(total as i64)
            .bind(&sha)
            .bind((frames / 8) as i64)
            .bind(&key)
            .bind(id)
            .execute(self.store.pool())
            .await
            .map_err(|e| Failure::Retry(e.to_string()))?;
        if let Err(e) = tokio::fs::remove_file(path).await {
            tracing::warn!(recording = %id, error = %e, "stored, but the spool file could not be removed");
        }
        Ok(total)
    }
}

/// Mark a recording failed, with the reason (its audio is not kept).
pub async fn mark_failed(store: &SqliteStore, id: &str, reason: &str) -> Result<(), RecordError> {
    sqlx::query("UPDATE recordings SET state = 'failed', reason = ? WHERE id = ?").bind(reason).bind(id).execute(store.pool()).await?;
    Ok(())
}

/// At start-up: every spool file a previous run left (the server stopped
/// mid-call) gets its header sizes from its length and its row marked
/// `interrupted`; rows still `recording` with no file are marked `failed`.
/// Returns the files to upload: (id, path, frames).
pub async fn sweep_spool(store: &SqliteStore, spool: &Path) -> Result<Vec<(String, PathBuf, u64)>, RecordError> {
    let mut left = Vec::new();
    let entries = std::fs::read_dir(spool).map_err(|e| RecordError::Spool(spool.display().to_string(), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".wav")).map(str::to_string) else { continue };
        if !valid_id(&id) {
            continue;
        }
        match fix_header(&path) {
            Ok(frames) => {
                sqlx::query("UPDATE recordings SET state = 'interrupted', reason = 'the server stopped during the call' WHERE id = ?").bind(&id).execute(store.pool()).await?;
                tracing::warn!(recording = %id, secs = frames / 8000, "a recording the last run left is being stored as interrupted");
                left.push((id, path, frames));
            }
            Err(e) => {
                let reason = format!("the server stopped during the call and the file was unusable ({e})");
                let _ = std::fs::remove_file(&path);
                mark_failed(store, &id, &reason).await?;
            }
        }
    }
    // Rows of recordings whose file never got written (or was lost).
    let rows = sqlx::query("SELECT id FROM recordings WHERE state = 'recording'").fetch_all(store.pool()).await?;
    for r in rows {
        let id: String = r.try_get("id")?;
        if !left.iter().any(|(l, _, _)| *l == id) {
            mark_failed(store, &id, "the server stopped before the recording was written").await?;
        }
    }
    Ok(left)
}
