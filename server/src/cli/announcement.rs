//! `tsunagu announcement`: recorded prompts and hold music from the command
//! line (the same as the API's): add from text (espeak-ng) or a recording,
//! list, remove, export, and make the built-in Japanese defaults.

use super::open_store;
use super::pbx::DataArgs;
use crate::announce::{self, DEFAULT_VOICE};
use crate::server::BoxError;
use crate::store::{Announcement, AnnouncementSource};
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AnnouncementCommand {
    /// Add or replace an announcement (a destination `announcement:NAME`),
    /// spoken from --text or taken from a recording (--file: WAV, MP3 or
    /// Ogg Opus; stored as 8 kHz WAV).
    Add {
        #[command(flatten)]
        d: DataArgs,
        name: String,
        /// What espeak-ng says (at most 2,000 characters).
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        text: Option<String>,
        /// The espeak-ng voice.
        #[arg(long, default_value = DEFAULT_VOICE)]
        voice: String,
        /// A recording: WAV, MP3 or Ogg Opus.
        #[arg(long)]
        file: Option<PathBuf>,
        /// What admins read in lists (default: kept, or empty).
        #[arg(long)]
        label: Option<String>,
    },
    /// List announcements with their length and who uses them.
    List {
        #[command(flatten)]
        d: DataArgs,
    },
    /// Remove an unused announcement (a built-in one goes back to its default).
    Remove {
        #[command(flatten)]
        d: DataArgs,
        name: String,
    },
    /// Write an announcement's audio (8 kHz mono WAV) to a file.
    Export {
        #[command(flatten)]
        d: DataArgs,
        name: String,
        path: PathBuf,
    },
    /// Make the built-in Japanese prompts and hold music that are missing
    /// (the city's own versions are never replaced).
    Defaults {
        #[command(flatten)]
        d: DataArgs,
        /// Make the built-in ones again even when present.
        #[arg(long)]
        force: bool,
    },
}

fn row_json(a: &Announcement) -> serde_json::Value {
    json!({ "name": a.name, "label": a.label, "source": a.source.as_str(), "text": a.text, "voice": a.voice, "samples": a.samples, "version": a.version })
}

const ACTOR: &str = "(command line)";

pub async fn announcement(cmd: AnnouncementCommand) -> Result<(), BoxError> {
    match cmd {
        AnnouncementCommand::Add { d, name, text, voice, file, label } => {
            crate::store::check_media_name("announcement", &name)?;
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let before = store.announcement(&name).await?;
            let label = label.or_else(|| before.as_ref().map(|a| a.label.clone())).unwrap_or_default();
            let (audio, a) = match (text, file) {
                (Some(text), _) => {
                    let audio = announce::speak(&text, &voice).await?;
                    (audio, Announcement::new(&name, &label, AnnouncementSource::Tts, Some(text), Some(voice)))
                }
                (None, Some(file)) => {
                    let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                    let audio = announce::normalise(&bytes).map_err(|e| format!("{}: {e}; nothing was changed", file.display()))?;
                    (audio, Announcement::new(&name, &label, AnnouncementSource::Upload, None, None))
                }
                (None, None) => return Err("give --text or --file".into()),
            };
            let stored = announce::save(&store, &d.data, a, &audio).await?;
            let action = if before.is_some() { "announcement_changed" } else { "announcement_added" };
            crate::api::audit::record(store.pool(), ACTOR, action, &name, before.as_ref().map(row_json), Some(row_json(&stored)), "").await;
            println!("announcement {name} saved ({:.1} s)", stored.samples as f64 / f64::from(announce::RATE));
        }
        AnnouncementCommand::List { d } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            for a in store.list_announcements().await? {
                let users = store.announcement_users(&a.name).await?;
                println!(
                    "{}\t{}\t{:.1}s\t{}\tused_by={}",
                    a.name,
                    a.source.as_str(),
                    a.samples as f64 / f64::from(announce::RATE),
                    a.label,
                    if users.is_empty() { "-".to_string() } else { users.join("; ") }
                );
            }
        }
        AnnouncementCommand::Remove { d, name } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let before = store.announcement(&name).await?;
            match announce::remove(&store, &d.data, &name).await? {
                Some(restored) => {
                    crate::api::audit::record(store.pool(), ACTOR, "announcement_restored", &name, before.as_ref().map(row_json), Some(row_json(&restored)), "").await;
                    println!("announcement {name} is built in: its default is back");
                }
                None => {
                    crate::api::audit::record(store.pool(), ACTOR, "announcement_removed", &name, before.as_ref().map(row_json), None, "").await;
                    println!("announcement {name} removed");
                }
            }
        }
        AnnouncementCommand::Export { d, name, path } => {
            let bytes = announce::read_audio(&d.data, &name).await?;
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("announcement {name} written to {}", path.display());
        }
        AnnouncementCommand::Defaults { d, force } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let s = announce::ensure_builtins(&store, &d.data, force).await;
            if !s.created.is_empty() {
                crate::api::audit::record(store.pool(), ACTOR, "announcement_defaults", "", None, Some(json!({ "created": s.created })), "").await;
            }
            for n in &s.created {
                println!("{n}\tmade");
            }
            for n in &s.kept {
                println!("{n}\tkept");
            }
            for (n, why) in &s.skipped {
                println!("{n}\tskipped: {why}");
            }
            if !s.skipped.is_empty() {
                return Err(format!("{} built-in announcements could not be made", s.skipped.len()).into());
            }
        }
    }
    Ok(())
}
