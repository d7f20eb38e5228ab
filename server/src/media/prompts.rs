//! The prompt cache: announcements as immutable 8 kHz samples for the
//! endpoints of the relay threads (ADR 0005, section 3). Files are read on
//! the tokio side on first use; relay threads only ever get `Arc`s, so they
//! never touch a file or wait on a lock.
//!
//! A change is noticed by the file itself: announcements are replaced by
//! an atomic rename (`crate::announce::save`), so a new inode, size or time
//! means new audio. That holds whoever wrote it, this process's API or the
//! command line in another, at the cost of one `stat` per use.

use crate::announce::{self, HOLD_MUSIC, RATE};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("no announcement named {0}")]
    NotFound(String),
    #[error("announcement {name}: {why}")]
    Unreadable { name: String, why: String },
}

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Stamp { ino: m.ino(), len: m.len(), modified: m.modified().ok() }
    }
}

/// Announcement name to the file version read and its samples.
type Cache = HashMap<String, (Stamp, Arc<[i16]>)>;

struct Inner {
    dir: PathBuf,
    cache: Mutex<Cache>,
}

/// Cheap to clone: every clone shares one cache.
#[derive(Clone)]
pub struct Prompts {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Prompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompts").field("dir", &self.inner.dir).finish()
    }
}

/// The built-in melody, made once per process.
pub fn builtin_hold_music() -> Arc<[i16]> {
    static MUSIC: OnceLock<Arc<[i16]>> = OnceLock::new();
    MUSIC.get_or_init(|| announce::builtin_hold_music().into()).clone()
}

impl Prompts {
    /// Announcements of the data directory `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Prompts { inner: Arc::new(Inner { dir: announce::announcements_dir(data_dir), cache: Mutex::new(HashMap::new()) }) }
    }

    /// The samples (8 kHz mono) of announcement `name`, loaded on first
    /// use and again when its file changed. `hold-music` without a file is
    /// the built-in melody.
    pub async fn get(&self, name: &str) -> Result<Arc<[i16]>, PromptError> {
        if crate::store::check_media_name("announcement", name).is_err() {
            return Err(PromptError::NotFound(name.to_string()));
        }
        let path = self.inner.dir.join(format!("{name}.wav"));
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.invalidate(name);
                return if name == HOLD_MUSIC { Ok(builtin_hold_music()) } else { Err(PromptError::NotFound(name.to_string())) };
            }
            Err(e) => return Err(PromptError::Unreadable { name: name.into(), why: e.to_string() }),
        };
        let stamp = Stamp::of(&meta);
        if let Some((s, audio)) = self.lock().get(name) {
            if *s == stamp {
                return Ok(audio.clone());
            }
        }
        let bytes = tokio::fs::read(&path).await.map_err(|e| PromptError::Unreadable { name: name.into(), why: e.to_string() })?;
        let (rate, samples) = tsunagu_media::codec::read_wav_pcm16(&bytes).map_err(|e| PromptError::Unreadable { name: name.into(), why: e.to_string() })?;
        if rate != RATE {
            return Err(PromptError::Unreadable { name: name.into(), why: format!("{rate} Hz, not {RATE} Hz") });
        }
        let audio: Arc<[i16]> = samples.into();
        self.lock().insert(name.to_string(), (stamp, audio.clone()));
        Ok(audio)
    }

    /// Hold music by name, never failing: anything unplayable falls back
    /// to the built-in melody (a held caller must hear something).
    pub async fn hold_music(&self, name: &str) -> Arc<[i16]> {
        match self.get(name).await {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => builtin_hold_music(),
            Err(e) => {
                tracing::warn!(error = %e, "hold music not playable; the built-in melody plays instead");
                builtin_hold_music()
            }
        }
    }

    /// Forget a cached announcement (the next `get` reads the file).
    pub fn invalidate(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic elsewhere while holding it leaves a usable map.
        self.inner.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loads_caches_reloads_and_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = Prompts::new(dir.path());
        assert!(matches!(p.get("closed").await, Err(PromptError::NotFound(_))));
        assert!(matches!(p.get("../etc").await, Err(PromptError::NotFound(_))));
        assert_eq!(p.get(HOLD_MUSIC).await.unwrap().len(), 20 * 8000);
        let adir = announce::announcements_dir(dir.path());
        std::fs::create_dir_all(&adir).unwrap();
        let write = |n: usize| {
            let tmp = adir.join(".tmp");
            std::fs::write(&tmp, tsunagu_media::codec::write_wav_pcm16(8000, &vec![100; n])).unwrap();
            std::fs::rename(&tmp, adir.join("closed.wav")).unwrap();
        };
        write(800);
        let a = p.get("closed").await.unwrap();
        assert_eq!(a.len(), 800);
        assert!(Arc::ptr_eq(&a, &p.get("closed").await.unwrap()), "cached");
        write(1600);
        assert_eq!(p.get("closed").await.unwrap().len(), 1600, "reloaded after a replacement");
        std::fs::write(adir.join("bad.wav"), b"garbage").unwrap();
        assert!(matches!(p.get("bad").await, Err(PromptError::Unreadable { .. })));
        assert_eq!(p.hold_music("bad").await.len(), 20 * 8000);
    }
}
