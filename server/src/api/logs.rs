//! What happened: the dashboard's counts, call logs (per user or all, with
//! date filters, as JSON or CSV) and recordings with their access log.

use super::rights::{Access, Resource, Right};
use super::session::Admin;
use super::{csv_response, ApiError, ApiResult, ApiState};
use crate::store::{CallQuery, CallRecord, StoreError};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::HashSet;

use crate::calendar::JST_OFFSET_SECS;

/// `2026-12-07 22:31:05` (JST) for Unix milliseconds.
pub fn iso_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000) + JST_OFFSET_SECS;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::calendar::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub async fn dashboard(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Value>> {
    who.require(Resource::Dashboard, Access::Read)?;
    let pool = state.store.pool();
    let users: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(pool).await.map_err(StoreError::from)?.try_get("n").map_err(StoreError::from)?;
    let calls_now: i64 = sqlx::query("SELECT COUNT(*) AS n FROM calls WHERE ended_at IS NULL").fetch_one(pool).await.map_err(StoreError::from)?.try_get("n").map_err(StoreError::from)?;
    let (devices, extensions) = state.registrar.as_ref().map(|r| r.counts()).unwrap_or((0, 0));
    let trunks: Vec<Value> = if who.principal.may(Resource::Trunks, Access::Read) {
        state.store.list_trunks().await?.iter().map(|t| json!({ "name": t.name, "state": t.state, "detail": t.state_detail })).collect()
    } else {
        Vec::new()
    };
    Ok(Json(json!({ "users": users, "registered_devices": devices, "registered_extensions": extensions, "calls_now": calls_now, "trunks": trunks })))
}

#[derive(Debug, Deserialize, Default)]
pub struct CallFilter {
    user: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
}

/// The extensions a group admin's call logs may show (None: all).
pub(super) async fn extensions_in_scope(state: &ApiState, who: &Admin) -> ApiResult<Option<HashSet<String>>> {
    if who.principal.sees_everything() {
        return Ok(None);
    }
    let mut set = HashSet::new();
    for d in &who.principal.departments {
        for r in sqlx::query("SELECT extension FROM users WHERE department = ?").bind(d).fetch_all(state.store.pool()).await.map_err(StoreError::from)? {
            set.insert(r.try_get::<String, _>("extension").map_err(StoreError::from)?);
        }
    }
    Ok(Some(set))
}

async fn query_calls(state: &ApiState, who: &Admin, f: &CallFilter, cap: i64) -> ApiResult<Vec<CallRecord>> {
    who.require(Resource::Calls, Access::Read)?;
    let scope = extensions_in_scope(state, who).await?;
    if let (Some(user), Some(scope)) = (&f.user, &scope) {
        if !scope.contains(user) {
            return Err(ApiError::forbidden(format!("extension {user} is not in a department granted to {}", who.principal.name)));
        }
    }
    let rows = state
        .store
        .query_calls(&CallQuery { user: f.user.clone(), from: f.from, to: f.to, limit: Some(f.limit.unwrap_or(cap).clamp(1, cap)), newest_first: true })
        .await?;
    Ok(rows
        .into_iter()
        .filter(|c| scope.as_ref().is_none_or(|s| s.contains(&c.caller) || s.contains(&c.callee) || c.answered_by.as_ref().is_some_and(|a| s.contains(a))))
        .collect())
}

pub async fn calls(State(state): State<ApiState>, who: Admin, Query(f): Query<CallFilter>) -> ApiResult<Json<Vec<CallRecord>>> {
    Ok(Json(query_calls(&state, &who, &f, 1000).await?))
}

pub async fn calls_export(State(state): State<ApiState>, who: Admin, Query(f): Query<CallFilter>) -> ApiResult<Response> {
    let rows = query_calls(&state, &who, &f, 1_000_000).await?;
    let mut out = String::from(crate::csv::BOM);
    crate::csv::write_row(&mut out, &["id", "direction", "caller", "callee", "did", "started", "answered", "ended", "talk_secs", "result", "answered_by", "caller_id_shown"]);
    let t = |ms: Option<i64>| ms.map(iso_time).unwrap_or_default();
    for c in rows {
        let talk = match (c.answered_at, c.ended_at) {
            (Some(a), Some(e)) if e >= a => ((e - a + 500) / 1000).to_string(),
            _ => "0".into(),
        };
        crate::csv::write_row(
            &mut out,
            &[&c.id, &c.direction, &c.caller, &c.callee, c.did.as_deref().unwrap_or(""), &iso_time(c.started_at), &t(c.answered_at), &t(c.ended_at), &talk, &c.result, c.answered_by.as_deref().unwrap_or(""), c.caller_id_shown.as_deref().unwrap_or("")],
        );
    }
    let name = match &f.user {
        Some(u) => format!("calls-{u}.csv"),
        None => "calls.csv".into(),
    };
    Ok(csv_response(&name, out))
}

/// Recordings (made by the recording feature). Listing them is itself
/// logged in the access log that auditors read.
pub async fn recordings(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require_right(Right::Recordings)?;
    let rows = sqlx::query("SELECT * FROM recordings ORDER BY started_at DESC LIMIT 1000").fetch_all(state.store.pool()).await.map_err(StoreError::from)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(json!({
            "id": r.try_get::<String, _>("id").map_err(StoreError::from)?,
            "call_id": r.try_get::<String, _>("call_id").map_err(StoreError::from)?,
            "extension": r.try_get::<String, _>("extension").map_err(StoreError::from)?,
            "started_at": r.try_get::<i64, _>("started_at").map_err(StoreError::from)?,
            "duration_ms": r.try_get::<i64, _>("duration_ms").map_err(StoreError::from)?,
        }));
    }
    sqlx::query("INSERT INTO recording_access (at, actor, recording, action, source) VALUES (?, ?, '', 'list', ?)")
        .bind(crate::store::unix_ms())
        .bind(&who.principal.name)
        .bind(&who.source)
        .execute(state.store.pool())
        .await
        .map_err(StoreError::from)?;
    Ok(Json(out))
}

pub async fn recording_access(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require_right(Right::Recordings)?;
    let rows = sqlx::query("SELECT * FROM recording_access ORDER BY id DESC LIMIT 1000").fetch_all(state.store.pool()).await.map_err(StoreError::from)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(json!({
            "at": r.try_get::<i64, _>("at").map_err(StoreError::from)?,
            "actor": r.try_get::<String, _>("actor").map_err(StoreError::from)?,
            "recording": r.try_get::<String, _>("recording").map_err(StoreError::from)?,
            "action": r.try_get::<String, _>("action").map_err(StoreError::from)?,
            "source": r.try_get::<String, _>("source").map_err(StoreError::from)?,
        }));
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_japan_standard_time() {
        assert_eq!(super::iso_time(0), "1970-01-01 09:00:00");
        // 2026-12-07 13:30:00 UTC
        assert_eq!(super::iso_time(1_796_650_200_000), "2026-12-07 22:30:00");
        assert_eq!(super::iso_time(951_782_400_000), "2000-02-29 09:00:00", "a leap day");
    }
}
