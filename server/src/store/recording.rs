//! Call recording in the store: the policy (settings, and flags on users,
//! ring groups and public numbers) and the question the call task asks
//! when a call is answered: record this one?

use super::{SqliteStore, StoreError};
use sqlx::Row;

/// `none` (default): nothing is recorded; `all`: every answered call;
/// `selected`: calls of users, ring groups and public numbers marked to be
/// recorded, and calls dialled with `recording_prefix`.
pub const SETTING_RECORDING_MODE: &str = "recording_mode";
/// Days a recording is kept (0: for ever).
pub const SETTING_RECORDING_RETENTION_DAYS: &str = "recording_retention_days";
/// Megabytes all recordings may take; the oldest go first (0: no limit).
pub const SETTING_RECORDING_QUOTA_MB: &str = "recording_quota_mb";
/// Dialled before a number (`*5` + number) to record that call (mode
/// `selected`).
pub const SETTING_RECORDING_PREFIX: &str = "recording_prefix";
/// The announcement played to outside callers before a recorded call
/// rings (empty: none).
pub const SETTING_RECORDING_NOTICE: &str = "recording_notice";

pub const RECORDING_SETTING_KEYS: [&str; 5] =
    [SETTING_RECORDING_MODE, SETTING_RECORDING_RETENTION_DAYS, SETTING_RECORDING_QUOTA_MB, SETTING_RECORDING_PREFIX, SETTING_RECORDING_NOTICE];

pub fn recording_setting_default(key: &str) -> Option<&'static str> {
    Some(match key {
        SETTING_RECORDING_MODE => "none",
        SETTING_RECORDING_RETENTION_DAYS => "365",
        SETTING_RECORDING_QUOTA_MB => "0",
        SETTING_RECORDING_PREFIX => "*5",
        SETTING_RECORDING_NOTICE => "recording-notice",
        _ => return None,
    })
}

/// Check a value of one of the recording settings; None for other keys.
pub fn check_recording_setting(key: &str, value: &str) -> Option<Result<(), String>> {
    let number = |max: u64| value.parse::<u64>().ok().filter(|n| *n <= max).is_some();
    Some(match key {
        SETTING_RECORDING_MODE if matches!(value, "none" | "all" | "selected") => Ok(()),
        SETTING_RECORDING_MODE => Err(format!("{key}: none, all or selected")),
        SETTING_RECORDING_RETENTION_DAYS if number(36_500) => Ok(()),
        SETTING_RECORDING_RETENTION_DAYS => Err(format!("{key}: days, 0 to 36500 (0: keep for ever)")),
        SETTING_RECORDING_QUOTA_MB if number(1 << 40) => Ok(()),
        SETTING_RECORDING_QUOTA_MB => Err(format!("{key}: megabytes (0: no limit)")),
        SETTING_RECORDING_PREFIX
            if (1..=8).contains(&value.len()) && value.starts_with('*') && value.bytes().all(|c| c.is_ascii_digit() || c == b'*' || c == b'#') =>
        {
            Ok(())
        }
        SETTING_RECORDING_PREFIX => Err(format!("{key}: a feature code starting with '*' (digits, '*', '#'; at most 8)")),
        SETTING_RECORDING_NOTICE if value.is_empty() || super::check_media_name("announcement", value).is_ok() => Ok(()),
        SETTING_RECORDING_NOTICE => Err(format!("{key}: an announcement name (lowercase letters, digits, '-', '_'), or empty for none")),
        _ => return None,
    })
}

/// What a recording policy flag is set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyTarget {
    User,
    Group,
    Did,
}

impl SqliteStore {
    /// Whether a call is to be recorded: mode `all`, or mode `selected` and
    /// any of the caller's or callee's extension, the ring group, the
    /// public number, or the call was dialled with the recording prefix
    /// (`on_demand`). Mode `none` records nothing, on demand or not.
    pub async fn recording_wanted(&self, caller_ext: Option<&str>, callee_ext: Option<&str>, group: Option<&str>, did: Option<&str>, on_demand: bool) -> Result<bool, StoreError> {
        match self.setting(SETTING_RECORDING_MODE).await?.as_str() {
            "all" => return Ok(true),
            "selected" => {}
            _ => return Ok(false),
        }
        if on_demand {
            return Ok(true);
        }
        for ext in [caller_ext, callee_ext].into_iter().flatten() {
            if flag(&self.pool, "SELECT record_calls AS f FROM users WHERE extension = ?", ext).await? {
                return Ok(true);
            }
        }
        if let Some(g) = group {
            if flag(&self.pool, "SELECT record AS f FROM ring_groups WHERE number = ?", g).await? {
                return Ok(true);
            }
        }
        if let Some(d) = did {
            let d = crate::routing::national(d);
            if flag(&self.pool, "SELECT record AS f FROM dids WHERE number = ?", &d).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Mark (or unmark) a user, ring group or public number to be recorded.
    pub async fn set_recording_policy(&self, target: PolicyTarget, key: &str, on: bool) -> Result<(), StoreError> {
        let (sql, what) = match target {
            PolicyTarget::User => ("UPDATE users SET record_calls = ? WHERE extension = ?", "extension"),
            PolicyTarget::Group => ("UPDATE ring_groups SET record = ? WHERE number = ?", "ring group"),
            PolicyTarget::Did => ("UPDATE dids SET record = ? WHERE number = ?", "number"),
        };
        let key = if target == PolicyTarget::Did { crate::routing::national(key) } else { key.to_string() };
        let r = sqlx::query(sql).bind(i64::from(on)).bind(&key).execute(&self.pool).await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{what} {key}")));
        }
        Ok(())
    }

    /// Everything marked to be recorded: (kind, key).
    pub async fn recording_policy(&self) -> Result<Vec<(&'static str, String)>, StoreError> {
        let mut out = Vec::new();
        for (kind, sql) in [
            ("user", "SELECT extension AS k FROM users WHERE record_calls != 0 ORDER BY extension"),
            ("group", "SELECT number AS k FROM ring_groups WHERE record != 0 ORDER BY number"),
            ("did", "SELECT number AS k FROM dids WHERE record != 0 ORDER BY number"),
        ] {
            for r in sqlx::query(sql).fetch_all(&self.pool).await? {
                out.push((kind, r.try_get::<String, _>("k")?));
            }
        }
        Ok(out)
    }
}

async fn flag(pool: &sqlx::SqlitePool, sql: &str, key: &str) -> Result<bool, StoreError> {
    let row = sqlx::query(sql).bind(key).fetch_optional(pool).await?;
    Ok(match row {
        Some(r) => r.try_get::<i64, _>("f")? != 0,
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, User};
    use tsunagu_sip::digest::StoredCredentials;

    #[tokio::test]
    async fn policy_by_mode_user_group_did_and_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), "r").await.unwrap();
        s.add_user(User { extension: "1001".into(), name: String::new(), credentials: StoredCredentials::from_password("1001", "r", "pw") }).await.unwrap();
        sqlx::query("INSERT INTO ring_groups (number, strategy, members) VALUES ('3000', 'simultaneous', '1001')").execute(s.pool()).await.unwrap();
        sqlx::query("INSERT INTO dids (number, dest) VALUES ('0312345678', 'user:1001')").execute(s.pool()).await.unwrap();
        assert!(!s.recording_wanted(Some("1001"), None, None, None, true).await.unwrap(), "mode none records nothing");
        s.set_setting(SETTING_RECORDING_MODE, "all").await.unwrap();
        assert!(s.recording_wanted(None, None, None, None, false).await.unwrap());
        s.set_setting(SETTING_RECORDING_MODE, "selected").await.unwrap();
        assert!(!s.recording_wanted(Some("1001"), Some("1002"), Some("3000"), Some("0312345678"), false).await.unwrap());
        assert!(s.recording_wanted(None, None, None, None, true).await.unwrap(), "on demand");
        s.set_recording_policy(PolicyTarget::User, "1001", true).await.unwrap();
        assert!(s.recording_wanted(None, Some("1001"), None, None, false).await.unwrap());
        s.set_recording_policy(PolicyTarget::User, "1001", false).await.unwrap();
        s.set_recording_policy(PolicyTarget::Group, "3000", true).await.unwrap();
        assert!(s.recording_wanted(None, None, Some("3000"), None, false).await.unwrap());
        s.set_recording_policy(PolicyTarget::Group, "3000", false).await.unwrap();
        s.set_recording_policy(PolicyTarget::Did, "+81312345678", true).await.unwrap();
        assert!(s.recording_wanted(None, None, None, Some("0312345678"), false).await.unwrap());
        assert_eq!(s.recording_policy().await.unwrap(), vec![("did", "0312345678".to_string())]);
        assert!(matches!(s.set_recording_policy(PolicyTarget::User, "9999", true).await, Err(StoreError::NotFound(_))));
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(check_recording_setting("main_number", "x"), None);
        assert!(check_recording_setting(SETTING_RECORDING_MODE, "selected").unwrap().is_ok());
        assert!(check_recording_setting(SETTING_RECORDING_MODE, "some").unwrap().is_err());
        assert!(check_recording_setting(SETTING_RECORDING_RETENTION_DAYS, "-1").unwrap().is_err());
        assert!(check_recording_setting(SETTING_RECORDING_PREFIX, "*5").unwrap().is_ok());
        assert!(check_recording_setting(SETTING_RECORDING_PREFIX, "5").unwrap().is_err());
        assert!(check_recording_setting(SETTING_RECORDING_NOTICE, "").unwrap().is_ok());
        assert!(check_recording_setting(SETTING_RECORDING_NOTICE, "Bad Name").unwrap().is_err());
    }
}
