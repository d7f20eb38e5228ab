//! Call recording: both parties of a call in one **stereo** file (the
//! caller on the left channel, the other party on the right), µ-law WAV at
//! 8 kHz, kept in an object store (a local folder by default, any
//! S3-compatible store by configuration), listed with the call records,
//! purged by age and by quota, and played or downloaded only by those
//! granted the recordings right (a copy only by auditors), every access
//! logged.
//!
//! The path of the audio, and who does what (ADR 0005, section 5):
//!
//! - [`tap::Tap`], held by the relay thread per recorded call: appends each
//!   audio packet's payload to a buffer and hands full buffers to the
//!   writer without ever waiting (a full queue drops the batch, counted).
//! - [`writer`], the `media-recorder` thread: places each channel's audio by
//!   RTP timestamp in a spool file `DATA/recordings/spool/ID.wav`.
//! - [`upload`] (tokio): sends each finished spool file to the object store
//!   under `recordings/YYYY/MM/DD/ID.wav` (the JST date), with its
//!   SHA-256, then deletes it; retries with backoff; sweeps the spool
//!   folder at start-up (files of calls a stopped server left are
//!   uploaded as `interrupted`).
//! - [`purge`]: hourly, recordings past `recording_retention_days` and the
//!   oldest beyond `recording_quota_mb` go, each in the audit log.
//!
//! A recording that fails (a full disk) is marked `failed` with the reason
//! and its partial file removed; the call itself never notices.

pub mod purge;
pub mod storage;
pub mod tap;
pub mod upload;
pub mod writer;

pub use tap::{Channel, Tap};

use crate::store::{unix_ms, SqliteStore, StoreError};
use object_store::ObjectStore;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Sender, SyncSender};
use std::sync::Arc;
use tap::{Batch, Control};

/// The stored format, as the `format` column says it.
pub const FORMAT: &str = "wav-ulaw-stereo";
/// Which party is on which channel, as the `channels` column says it.
pub const CHANNELS: &str = "left: caller, right: callee";
/// Batches waiting for the writer, over all calls, before taps drop theirs.
const QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("recording storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("the recording spool {0}: {1}")]
    Spool(String, std::io::Error),
    #[error("the recording writer is not running")]
    WriterGone,
    #[error("object store: {0}")]
    Objects(#[from] object_store::Error),
}

impl From<sqlx::Error> for RecordError {
    fn from(e: sqlx::Error) -> Self {
        RecordError::Store(e.into())
    }
}

/// `recordings/YYYY/MM/DD/ID.wav`, the date in Japan time.
pub fn object_key(id: &str, started_ms: i64) -> String {
    let days = (started_ms.div_euclid(1000) + crate::calendar::JST_OFFSET_SECS).div_euclid(86_400);
    let (y, m, d) = crate::calendar::civil_from_days(days);
    format!("recordings/{y:04}/{m:02}/{d:02}/{id}.wav")
}

/// A recording id: 16 hex digits, nothing else (it names files).
pub fn valid_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The spool folder of a data directory.
pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("recordings").join("spool")
}

/// Starts recordings. Made once with the server; clones share it.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<SqliteStore>,
    objects: Arc<dyn ObjectStore>,
    spool: PathBuf,
    data: SyncSender<Batch>,
    control: Sender<Control>,
    next_key: AtomicU64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("spool", &self.inner.spool).finish()
    }
}

impl Recorder {
    /// Start the writer thread, the uploader and the hourly purge, after
    /// sweeping the spool folder a previous run left. Needs a tokio runtime.
    pub async fn start(store: Arc<SqliteStore>, data_dir: &Path, objects: Arc<dyn ObjectStore>) -> Result<Recorder, RecordError> {
        let spool = spool_dir(data_dir);
        std::fs::create_dir_all(&spool).map_err(|e| RecordError::Spool(spool.display().to_string(), e))?;
        let (data_tx, data_rx) = sync_channel(QUEUE);
        let (control_tx, control_rx) = std::sync::mpsc::channel();
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        writer::spawn(data_rx, control_rx, events_tx).map_err(|e| RecordError::Spool("writer thread".into(), e))?;
        let uploads = upload::Uploads::new(store.clone(), objects.clone());
        let left = upload::sweep_spool(&store, &spool).await?;
        for (id, path, frames) in left {
            uploads.spawn(id, path, frames, "interrupted");
        }
        tokio::spawn(uploads.clone().run(events_rx));
        tokio::spawn(purge::run(store.clone(), objects.clone()));
        Ok(Recorder { inner: Arc::new(Inner { store, objects, spool, data: data_tx, control: control_tx, next_key: AtomicU64::new(1) }) })
    }

    /// Start recording a call: the row (state `recording`) is written, the
    /// writer opens the spool file, and the returned [`Tap`] goes to the
    /// relay thread. `call_record_id` is the call record's id (the `calls`
    /// row), `extension` the user the recording is filed under. An error
    /// means this call is not recorded; the call goes on.
    pub async fn begin(&self, call_record_id: &str, caller: &str, callee: &str, extension: &str) -> Result<Tap, RecordError> {
        let id = format!("{:016x}", rand::random::<u64>());
        let started = unix_ms();
        sqlx::query(
            "INSERT INTO recordings (id, call_id, extension, started_at, duration_ms, object_key, state, format, caller, callee, channels)
             VALUES (?, ?, ?, ?, 0, ?, 'recording', ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(call_record_id)
        .bind(extension)
        .bind(started)
        .bind(object_key(&id, started))
        .bind(FORMAT)
        .bind(caller)
        .bind(callee)
        .bind(CHANNELS)
        .execute(self.inner.store.pool())
        .await?;
        let key = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        let (free_tx, free_rx) = std::sync::mpsc::channel();
        let spool = self.inner.spool.join(format!("{id}.wav"));
        if self.inner.control.send(Control::Open { key, id: id.clone(), spool, free: free_tx.clone() }).is_err() {
            let _ = upload::mark_failed(&self.inner.store, &id, "the recording writer is not running").await;
            return Err(RecordError::WriterGone);
        }
        metrics::counter!("tsunagu_recordings_started_total").increment(1);
        Ok(Tap::new(key, id, self.inner.data.clone(), self.inner.control.clone(), &free_tx, free_rx))
    }

    /// The object store recordings are kept in.
    pub fn objects(&self) -> Arc<dyn ObjectStore> {
        self.inner.objects.clone()
    }
}

#[cfg(test)]
mod tests;
