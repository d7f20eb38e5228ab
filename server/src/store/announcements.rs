//! Announcement rows (the audio itself is `DATA/announcements/NAME.wav`,
//! written by `crate::announce`), hold music and greetings per public
//! number and ring group, and who still refers to an announcement.

use super::{check_media_name, SqliteStore, StoreError, SETTING_MUSIC_ON_HOLD};
use sqlx::Row;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnouncementSource {
    /// Spoken by espeak-ng from an admin's text.
    Tts,
    /// An uploaded recording.
    Upload,
    /// One of the built-in defaults (replaced by the city's own at will).
    Builtin,
}

impl AnnouncementSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnouncementSource::Tts => "tts",
            AnnouncementSource::Upload => "upload",
            AnnouncementSource::Builtin => "builtin",
        }
    }
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "tts" => AnnouncementSource::Tts,
            "upload" => AnnouncementSource::Upload,
            "builtin" => AnnouncementSource::Builtin,
            _ => return Err(StoreError::Invalid(format!("announcement source {s:?}"))),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Announcement {
    pub name: String,
    pub label: String,
    pub source: AnnouncementSource,
    /// What espeak-ng said (tts and built-in prompts).
    pub text: Option<String>,
    pub voice: Option<String>,
    /// Length at 8 kHz.
    pub samples: i64,
    /// Rises at every change (caches compare it).
    pub version: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl Announcement {
    /// A new row to save (samples, version and time are filled in on save).
    pub fn new(name: &str, label: &str, source: AnnouncementSource, text: Option<String>, voice: Option<String>) -> Self {
        Self { name: name.into(), label: label.into(), source, text, voice, samples: 0, version: 0, updated_at: 0 }
    }
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Announcement, StoreError> {
    Ok(Announcement {
        name: r.try_get("name")?,
        label: r.try_get("label")?,
        source: AnnouncementSource::parse(&r.try_get::<String, _>("source")?)?,
        text: r.try_get("text")?,
        voice: r.try_get("voice")?,
        samples: r.try_get("samples")?,
        version: r.try_get("version")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Hold music and greeting of a public number (None: not set here).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DidMedia {
    /// Hold music for calls that came in on this number.
    pub moh: Option<String>,
    /// Played to the caller before anything rings.
    pub greeting: Option<String>,
}

/// Hold music, greeting and waiting announcement of a ring group.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupMedia {
    pub moh: Option<String>,
    /// Played to the caller before the group rings.
    pub greeting: Option<String>,
    /// Played again and again while a caller waits for the group.
    pub queue_announcement: Option<String>,
    /// Seconds between two plays of the waiting announcement.
    pub queue_announcement_secs: Option<u32>,
}

/// Seconds between waiting announcements when none are set.
pub const DEFAULT_QUEUE_ANNOUNCEMENT_SECS: u32 = 30;

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl SqliteStore {
    pub async fn announcement(&self, name: &str) -> Result<Option<Announcement>, StoreError> {
        let row = sqlx::query("SELECT * FROM announcements WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn list_announcements(&self) -> Result<Vec<Announcement>, StoreError> {
        let rows = sqlx::query("SELECT * FROM announcements ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Add or replace a row, with `commit_file` (which puts the audio file
    /// in place) run inside the transaction: if it fails, the row is not
    /// changed either. Answers the row as stored, with its new version.
    pub async fn put_announcement_with(&self, a: &Announcement, commit_file: impl FnOnce() -> Result<(), StoreError>) -> Result<Announcement, StoreError> {
        check_media_name("announcement", &a.name)?;
        let mut tx = self.pool.begin().await?;
        let now = super::unix_ms() / 1000;
        let row = sqlx::query(
            "INSERT INTO announcements (name, label, source, text, voice, samples, version, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?)
             ON CONFLICT(name) DO UPDATE SET label = excluded.label, source = excluded.source, text = excluded.text, voice = excluded.voice,
               samples = excluded.samples, version = announcements.version + 1, updated_at = excluded.updated_at
             RETURNING *",
        )
        .bind(&a.name)
        .bind(&a.label)
        .bind(a.source.as_str())
        .bind(&a.text)
        .bind(&a.voice)
        .bind(a.samples)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let stored = from_row(&row)?;
        commit_file()?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Change only the label.
    pub async fn set_announcement_label(&self, name: &str, label: &str) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE announcements SET label = ?, version = version + 1, updated_at = ? WHERE name = ?")
            .bind(label)
            .bind(super::unix_ms() / 1000)
            .bind(name)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("announcement {name}")));
        }
        Ok(())
    }

    pub async fn remove_announcement(&self, name: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM announcements WHERE name = ?").bind(name).execute(&self.pool).await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("announcement {name}")));
        }
        Ok(())
    }

    /// Everything that still names announcement `name`, in words an admin
    /// reads ("DID 0312345678 (destination)", "ring group 3000 (hold music)").
    pub async fn announcement_users(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let dest = format!("announcement:{name}");
        let mut out = Vec::new();
        let rows = sqlx::query("SELECT number, dest, moh, greeting FROM dids WHERE dest = ?1 OR moh = ?2 OR greeting = ?2 ORDER BY number")
            .bind(&dest)
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        for r in rows {
            let n: String = r.try_get("number")?;
            for (col, what, v) in [("dest", "destination", &dest), ("moh", "hold music", &name.to_string()), ("greeting", "greeting", &name.to_string())] {
                if r.try_get::<Option<String>, _>(col)?.as_ref() == Some(v) {
                    out.push(format!("DID {n} ({what})"));
                }
            }
        }
        let rows = sqlx::query(
            "SELECT number, overflow, moh, greeting, queue_announcement FROM ring_groups
             WHERE overflow = ?1 OR moh = ?2 OR greeting = ?2 OR queue_announcement = ?2 ORDER BY number",
        )
        .bind(&dest)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let n: String = r.try_get("number")?;
            for (col, what, v) in [("overflow", "overflow", &dest), ("moh", "hold music", &name.to_string()), ("greeting", "greeting", &name.to_string()), ("queue_announcement", "waiting announcement", &name.to_string())] {
                if r.try_get::<Option<String>, _>(col)?.as_ref() == Some(v) {
                    out.push(format!("ring group {n} ({what})"));
                }
            }
        }
        let rows = sqlx::query("SELECT name, open_dest, closed_dest, holiday_dest, disaster_dest FROM schedules ORDER BY name").fetch_all(&self.pool).await?;
        for r in rows {
            let n: String = r.try_get("name")?;
            for (col, what) in [("open_dest", "open"), ("closed_dest", "closed"), ("holiday_dest", "holiday"), ("disaster_dest", "disaster")] {
                if r.try_get::<Option<String>, _>(col)?.as_deref() == Some(dest.as_str()) {
                    out.push(format!("schedule {n} ({what})"));
                }
            }
        }
        let rows = sqlx::query("SELECT extension, fwd_always, fwd_busy, fwd_no_answer, fwd_unregistered FROM user_settings ORDER BY extension").fetch_all(&self.pool).await?;
        for r in rows {
            let n: String = r.try_get("extension")?;
            for col in ["fwd_always", "fwd_busy", "fwd_no_answer", "fwd_unregistered"] {
                if r.try_get::<Option<String>, _>(col)?.as_deref() == Some(dest.as_str()) {
                    out.push(format!("extension {n} (forwarding)"));
                }
            }
        }
        if self.setting(SETTING_MUSIC_ON_HOLD).await? == name {
            out.push(format!("setting {SETTING_MUSIC_ON_HOLD}"));
        }
        // IVR menus (their own module and migration): any column naming the
        // announcement or routing to it, whatever the columns are called.
        for table in ["ivr_menus", "ivr_options"] {
            let exists = sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").bind(table).fetch_optional(&self.pool).await?.is_some();
            if !exists {
                continue;
            }
            let rows = sqlx::query(&format!("SELECT * FROM {table}")).fetch_all(&self.pool).await?;
            for r in rows {
                use sqlx::Column;
                let menu: String = r.try_get::<String, _>(if table == "ivr_menus" { "name" } else { "menu" }).unwrap_or_default();
                let hit = r.columns().iter().any(|c| matches!(r.try_get::<Option<String>, _>(c.ordinal()), Ok(Some(v)) if v == name || v == dest));
                if hit {
                    out.push(format!("IVR menu {menu}"));
                }
            }
        }
        out.dedup();
        Ok(out)
    }

    pub async fn did_media(&self, number: &str) -> Result<DidMedia, StoreError> {
        let row = sqlx::query("SELECT moh, greeting FROM dids WHERE number = ?").bind(number).fetch_optional(&self.pool).await?;
        let Some(r) = row else { return Ok(DidMedia::default()) };
        Ok(DidMedia { moh: nonempty(r.try_get("moh")?), greeting: nonempty(r.try_get("greeting")?) })
    }

    pub async fn list_did_media(&self) -> Result<HashMap<String, DidMedia>, StoreError> {
        let rows = sqlx::query("SELECT number, moh, greeting FROM dids").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("number")?, DidMedia { moh: nonempty(r.try_get("moh")?), greeting: nonempty(r.try_get("greeting")?) }))).collect()
    }

    /// Set a public number's hold music and greeting (each must name an
    /// existing announcement, or be None).
    pub async fn set_did_media(&self, number: &str, m: &DidMedia) -> Result<(), StoreError> {
        self.check_announcements(&[("moh", &m.moh), ("greeting", &m.greeting)]).await?;
        let r = sqlx::query("UPDATE dids SET moh = ?, greeting = ? WHERE number = ?").bind(&m.moh).bind(&m.greeting).bind(number).execute(&self.pool).await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("number {number}")));
        }
        Ok(())
    }

    pub async fn group_media(&self, number: &str) -> Result<GroupMedia, StoreError> {
        let row = sqlx::query("SELECT moh, greeting, queue_announcement, queue_announcement_secs FROM ring_groups WHERE number = ?").bind(number).fetch_optional(&self.pool).await?;
        row.as_ref().map(group_media_from_row).transpose().map(Option::unwrap_or_default)
    }

    pub async fn list_group_media(&self) -> Result<HashMap<String, GroupMedia>, StoreError> {
        let rows = sqlx::query("SELECT number, moh, greeting, queue_announcement, queue_announcement_secs FROM ring_groups").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("number")?, group_media_from_row(r)?))).collect()
    }

    /// Set a ring group's hold music, greeting and waiting announcement.
    pub async fn set_group_media(&self, number: &str, m: &GroupMedia) -> Result<(), StoreError> {
        self.check_media(m).await?;
        let r = sqlx::query("UPDATE ring_groups SET moh = ?, greeting = ?, queue_announcement = ?, queue_announcement_secs = ? WHERE number = ?")
            .bind(&m.moh)
            .bind(&m.greeting)
            .bind(&m.queue_announcement)
            .bind(m.queue_announcement_secs.map(i64::from))
            .bind(number)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("ring group {number}")));
        }
        Ok(())
    }

    /// The hold music for a call: its DID's, else its ring group's, else
    /// the setting `music_on_hold` (by default the built-in `hold-music`).
    pub async fn hold_music_for(&self, did: Option<&str>, group: Option<&str>) -> Result<String, StoreError> {
        if let Some(d) = did {
            if let Some(m) = self.did_media(d).await?.moh {
                return Ok(m);
            }
        }
        if let Some(g) = group {
            if let Some(m) = self.group_media(g).await?.moh {
                return Ok(m);
            }
        }
        self.setting(SETTING_MUSIC_ON_HOLD).await
    }

    /// The greeting played before a public number's call rings anything.
    pub async fn did_greeting(&self, did: &str) -> Result<Option<String>, StoreError> {
        Ok(self.did_media(did).await?.greeting)
    }

    /// The greeting played before a ring group rings.
    pub async fn group_greeting(&self, group: &str) -> Result<Option<String>, StoreError> {
        Ok(self.group_media(group).await?.greeting)
    }

    /// What a caller waiting for a group hears again and again, and every
    /// how many seconds (30 unless set).
    pub async fn queue_announcement_for(&self, group: &str) -> Result<Option<(String, u32)>, StoreError> {
        let m = self.group_media(group).await?;
        Ok(m.queue_announcement.map(|a| (a, m.queue_announcement_secs.unwrap_or(DEFAULT_QUEUE_ANNOUNCEMENT_SECS))))
    }

    /// Check a set of media names before saving anything: each must name
    /// an existing announcement, and the interval must be in range.
    pub async fn check_media(&self, m: &GroupMedia) -> Result<(), StoreError> {
        self.check_announcements(&[("moh", &m.moh), ("greeting", &m.greeting), ("queue_announcement", &m.queue_announcement)]).await?;
        match m.queue_announcement_secs {
            Some(s) if !(5..=600).contains(&s) => Err(StoreError::Invalid("queue_announcement_secs: 5 to 600 seconds".into())),
            _ => Ok(()),
        }
    }

    /// Each named announcement must exist (a typo would play nothing).
    async fn check_announcements(&self, fields: &[(&str, &Option<String>)]) -> Result<(), StoreError> {
        for (field, v) in fields {
            if let Some(name) = v {
                check_media_name("announcement", name).map_err(|e| StoreError::Invalid(format!("{field}: {}", e.detail())))?;
                if self.announcement(name).await?.is_none() {
                    return Err(StoreError::Invalid(format!("{field}: no announcement named {name}")));
                }
            }
        }
        Ok(())
    }
}

fn group_media_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<GroupMedia, StoreError> {
    Ok(GroupMedia {
        moh: nonempty(r.try_get("moh")?),
        greeting: nonempty(r.try_get("greeting")?),
        queue_announcement: nonempty(r.try_get("queue_announcement")?),
        queue_announcement_secs: r.try_get::<Option<i64>, _>("queue_announcement_secs")?.map(|s| s.clamp(5, 600) as u32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rows_media_and_users() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), "r").await.unwrap();
        let a = Announcement::new("closed", "時間外", AnnouncementSource::Tts, Some("本日は終了".into()), Some("ja".into()));
        let v1 = s.put_announcement_with(&a, || Ok(())).await.unwrap();
        assert_eq!(v1.version, 1);
        // A failed file step leaves the row as it was.
        let b = Announcement { label: "changed".into(), ..a.clone() };
        assert!(s.put_announcement_with(&b, || Err(StoreError::Invalid("disk full".into()))).await.is_err());
        assert_eq!(s.announcement("closed").await.unwrap().unwrap().label, "時間外");
        assert_eq!(s.put_announcement_with(&b, || Ok(())).await.unwrap().version, 2);

        s.put_dids(&[("0312345678".into(), crate::store::Dest::Announcement("closed".into()), String::new())]).await.unwrap();
        assert_eq!(s.hold_music_for(Some("0312345678"), None).await.unwrap(), "hold-music");
        s.set_did_media("0312345678", &DidMedia { moh: Some("closed".into()), greeting: None }).await.unwrap();
        assert_eq!(s.hold_music_for(Some("0312345678"), Some("3000")).await.unwrap(), "closed");
        assert!(s.set_did_media("0312345678", &DidMedia { moh: Some("nothing".into()), greeting: None }).await.unwrap_err().to_string().contains("no announcement named nothing"));
        let users = s.announcement_users("closed").await.unwrap();
        assert_eq!(users, vec!["DID 0312345678 (destination)", "DID 0312345678 (hold music)"]);
        assert!(s.announcement_users("other").await.unwrap().is_empty());
    }
}
