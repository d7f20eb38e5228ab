//! `tsunagu recording`: list recordings, purge them now by retention and
//! quota, and mark users, ring groups and public numbers to be recorded
//! (with `tsunagu setting set recording_mode selected`).

use super::open_store;
use super::pbx::DataArgs;
use crate::config::Config;
use crate::server::BoxError;
use crate::store::PolicyTarget;
use clap::{Subcommand, ValueEnum};
use sqlx::Row;

#[derive(Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand)]
pub enum RecordingCommand {
    /// Recordings, newest first: id, start (JST), seconds, state, bytes,
    /// caller, callee, call record id.
    List {
        #[command(flatten)]
        d: DataArgs,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Delete now what recording_retention_days and recording_quota_mb
    /// say must go (the server also does this hourly).
    Purge {
        #[command(flatten)]
        d: DataArgs,
    },
    /// Record the calls of a user, a ring group or a public number (with
    /// recording_mode = selected); without a target, list what is marked.
    Policy {
        #[command(flatten)]
        d: DataArgs,
        #[arg(long, group = "target")]
        user: Option<String>,
        #[arg(long, group = "target")]
        group: Option<String>,
        #[arg(long, group = "target")]
        did: Option<String>,
        #[arg(value_enum)]
        state: Option<OnOff>,
    },
}

pub async fn recording(cmd: RecordingCommand) -> Result<(), BoxError> {
    match cmd {
        RecordingCommand::List { d, limit } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let rows = sqlx::query("SELECT * FROM recordings ORDER BY started_at DESC LIMIT ?").bind(limit.clamp(1, 1_000_000)).fetch_all(store.pool()).await?;
            for r in rows {
                let s = |k: &str| r.try_get::<String, _>(k).unwrap_or_default();
                let n = |k: &str| r.try_get::<i64, _>(k).unwrap_or_default();
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    s("id"),
                    crate::api::logs::iso_time(n("started_at")),
                    n("duration_ms") / 1000,
                    s("state"),
                    n("bytes"),
                    s("caller"),
                    s("callee"),
                    s("call_id")
                );
            }
        }
        RecordingCommand::Purge { d } => {
            let cfg = Config::load(d.config.as_deref())?;
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let objects = crate::recording::storage::open(cfg.storage.url.as_deref(), &d.data)?;
            let r = crate::recording::purge::purge(&store, objects.as_ref(), crate::store::unix_ms(), "cli").await?;
            println!("purged {} by age and {} by quota ({} bytes); {} could not be deleted", r.by_age, r.by_quota, r.bytes, r.errors);
        }
        RecordingCommand::Policy { d, user, group, did, state } => {
            let store = open_store(&d.data, d.config.as_deref()).await?;
            let target = match (user, group, did) {
                (Some(u), _, _) => Some((PolicyTarget::User, u)),
                (_, Some(g), _) => Some((PolicyTarget::Group, g)),
                (_, _, Some(n)) => Some((PolicyTarget::Did, n)),
                _ => None,
            };
            match (target, state) {
                (Some((t, key)), Some(on)) => {
                    store.set_recording_policy(t, &key, matches!(on, OnOff::On)).await?;
                    println!("{key}: recording {}", if matches!(on, OnOff::On) { "on" } else { "off" });
                }
                (None, None) => {
                    println!("recording_mode = {}", store.setting(crate::store::SETTING_RECORDING_MODE).await?);
                    for (kind, key) in store.recording_policy().await? {
                        println!("{kind}\t{key}");
                    }
                }
                _ => return Err("give --user, --group or --did and on or off (or neither to list)".into()),
            }
        }
    }
    Ok(())
}
