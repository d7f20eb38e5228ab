//! Retention and quota: recordings older than `recording_retention_days`
//! (0: kept for ever), then the oldest beyond `recording_quota_mb` (0: no
//! limit), are deleted from the object store and the table, each with an
//! entry in the audit log (the access log keeps who heard them). Runs at
//! start-up and every hour; `tsunagu recording purge` runs it at once.

use super::RecordError;
use crate::store::{SqliteStore, SETTING_RECORDING_QUOTA_MB, SETTING_RECORDING_RETENTION_DAYS};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::json;
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    /// Recordings deleted for their age.
    pub by_age: usize,
    /// Recordings deleted to stay within the quota.
    pub by_quota: usize,
    pub bytes: u64,
    /// Deletions the object store refused (tried again next time).
    pub errors: usize,
}

struct Victim {
    id: String,
    key: String,
    started_at: i64,
    bytes: i64,
    call_id: String,
    why: &'static str,
}

fn victim(r: &sqlx::sqlite::SqliteRow, why: &'static str) -> Result<Victim, sqlx::Error> {
    Ok(Victim { id: r.try_get("id")?, key: r.try_get("object_key")?, started_at: r.try_get("started_at")?, bytes: r.try_get("bytes")?, call_id: r.try_get("call_id")?, why })
}

/// Delete what retention and quota say must go, now. `actor` is who the
/// audit log names (`system` for the hourly run).
pub async fn purge(store: &SqliteStore, objects: &dyn ObjectStore, now_ms: i64, actor: &str) -> Result<PurgeReport, RecordError> {
    let days: i64 = store.setting(SETTING_RECORDING_RETENTION_DAYS).await?.trim().parse().unwrap_or(365);
    let quota_mb: i64 = store.setting(SETTING_RECORDING_QUOTA_MB).await?.trim().parse().unwrap_or(0);
    let pool = store.pool();
    let mut victims = Vec::new();
    if days > 0 {
        // A recording in progress is never purged.
        let cutoff = now_ms.saturating_sub(days.saturating_mul(DAY_MS));
        for r in sqlx::query("SELECT id, object_key, started_at, bytes, call_id FROM recordings WHERE started_at < ? AND state != 'recording' ORDER BY started_at").bind(cutoff).fetch_all(pool).await? {
            victims.push(victim(&r, "retention")?);
        }
    }
    if quota_mb > 0 {
        let quota = quota_mb.saturating_mul(1 << 20);
        let mut total = 0i64;
        for r in sqlx::query("SELECT id, object_key, started_at, bytes, call_id FROM recordings WHERE state IN ('stored', 'interrupted') ORDER BY started_at DESC, id DESC").fetch_all(pool).await? {
            let v = victim(&r, "quota")?;
            if victims.iter().any(|o| o.id == v.id) {
                continue;
            }
            total = total.saturating_add(v.bytes);
            if total > quota {
                victims.push(v);
            }
        }
    }
    let mut report = PurgeReport::default();
    for v in victims {
        // The object first: a row without its object would be harmless, an
        // object without its row would be kept for ever and unseen.
        match objects.delete(&ObjectPath::from(v.key.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(recording = %v.id, error = %e, "cannot delete a recording past retention or quota; trying again later");
                report.errors += 1;
                continue;
            }
        }
        sqlx::query("DELETE FROM recordings WHERE id = ?").bind(&v.id).execute(pool).await?;
        let why = if v.why == "retention" { format!("older than {days} days") } else { format!("beyond the quota of {quota_mb} MB") };
        crate::api::audit::record(pool, actor, "recording_purged", &v.id, Some(json!({ "call_id": v.call_id, "started_at": v.started_at, "bytes": v.bytes })), Some(json!({ "reason": why })), "").await;
        if v.why == "retention" {
            report.by_age += 1;
        } else {
            report.by_quota += 1;
        }
        report.bytes += v.bytes.max(0) as u64;
    }
    if report.by_age + report.by_quota > 0 {
        tracing::info!(by_age = report.by_age, by_quota = report.by_quota, bytes = report.bytes, "recordings purged");
    }
    Ok(report)
}

/// At start-up and every hour.
pub async fn run(store: Arc<SqliteStore>, objects: Arc<dyn ObjectStore>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        if let Err(e) = purge(&store, objects.as_ref(), crate::store::unix_ms(), "system").await {
            tracing::error!(error = %e, "recording purge failed; trying again in an hour");
        }
    }
}
