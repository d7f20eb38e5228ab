//! What happened: the dashboard's counts, call logs (per user or all, with
//! date filters, as JSON or CSV) and recordings with their access log.

use super::rights::{Access, Resource, Right};
use super::session::Admin;
use super::{csv_response, ApiError, ApiResult, ApiState};
use crate::store::{CallQuery, CallRecord, StoreError};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
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

/// Recordings with their state and the call's parties (joined with the
/// call records). Listing them is itself logged in the access log that
/// auditors read.
pub async fn recordings(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require_right(Right::Recordings)?;
    let rows = sqlx::query(
        "SELECT r.*, c.caller AS call_caller, c.callee AS call_callee, c.direction AS call_direction, c.did AS call_did
         FROM recordings r LEFT JOIN calls c ON c.id = r.call_id ORDER BY r.started_at DESC LIMIT 1000",
    )
    .fetch_all(state.store.pool())
    .await
    .map_err(StoreError::from)?;
    let mut out = Vec::new();
    for r in rows {
        let get = |k: &str| r.try_get::<String, _>(k).map_err(StoreError::from);
        let opt = |k: &str| r.try_get::<Option<String>, _>(k).map_err(StoreError::from);
        // The row's own parties (written when recording began), else the call's.
        let caller = Some(get("caller")?).filter(|c| !c.is_empty()).or(opt("call_caller")?).unwrap_or_default();
        let callee = Some(get("callee")?).filter(|c| !c.is_empty()).or(opt("call_callee")?).unwrap_or_default();
        out.push(json!({
            "id": get("id")?,
            "call_id": get("call_id")?,
            "extension": get("extension")?,
            "started_at": r.try_get::<i64, _>("started_at").map_err(StoreError::from)?,
            "duration_ms": r.try_get::<i64, _>("duration_ms").map_err(StoreError::from)?,
            "state": get("state")?,
            "bytes": r.try_get::<i64, _>("bytes").map_err(StoreError::from)?,
            "sha256": get("sha256")?,
            "format": get("format")?,
            "channels": get("channels")?,
            "reason": get("reason")?,
            "caller": caller,
            "callee": callee,
            "direction": opt("call_direction")?,
            "did": opt("call_did")?,
        }));
    }
    log_access(&state, &who, "", "list").await?;
    Ok(Json(out))
}

async fn log_access(state: &ApiState, who: &Admin, recording: &str, action: &str) -> ApiResult<()> {
    sqlx::query("INSERT INTO recording_access (at, actor, recording, action, source) VALUES (?, ?, ?, ?, ?)")
        .bind(crate::store::unix_ms())
        .bind(&who.principal.name)
        .bind(recording)
        .bind(action)
        .bind(&who.source)
        .execute(state.store.pool())
        .await
        .map_err(StoreError::from)?;
    Ok(())
}

/// A recording whose audio is in the object store: (object key, SHA-256).
async fn stored_recording(state: &ApiState, id: &str) -> ApiResult<(object_store::path::Path, String)> {
    let not_found = || ApiError::not_found(format!("no such recording {id}"));
    if !crate::recording::valid_id(id) {
        return Err(not_found());
    }
    let row = sqlx::query("SELECT object_key, state, reason, sha256 FROM recordings WHERE id = ?").bind(id).fetch_optional(state.store.pool()).await.map_err(StoreError::from)?.ok_or_else(not_found)?;
    let get = |k: &str| row.try_get::<String, _>(k).map_err(StoreError::from);
    let sha = get("sha256")?;
    match get("state")?.as_str() {
        "stored" | "interrupted" if !sha.is_empty() => Ok((object_store::path::Path::from(get("object_key")?.as_str()), sha)),
        "failed" => Err(ApiError::not_found(format!("recording {id} failed; no audio was kept ({})", get("reason")?))),
        _ => Err(ApiError::conflict(format!("recording {id} is still being recorded or stored; try again shortly"))),
    }
}

fn objects_of(state: &ApiState) -> ApiResult<&std::sync::Arc<dyn object_store::ObjectStore>> {
    state.objects.as_ref().ok_or_else(|| ApiError::not_found("this server keeps no recordings"))
}

fn object_error(e: object_store::Error) -> ApiError {
    match e {
        object_store::Error::NotFound { .. } => ApiError::not_found("the recording's audio is missing from the store"),
        e => {
            tracing::error!(error = %e, "cannot read a recording from the object store");
            ApiError::internal("the recording store could not be read")
        }
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` within a body of `len` bytes:
/// Some(Ok(first, last)); Some(Err) when unsatisfiable; None when absent
/// or not understood (the whole body is sent).
fn byte_range(h: Option<&str>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // several ranges: the whole body instead
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let first: u64 = a.parse().ok()?;
        let last = if b.is_empty() { len.saturating_sub(1) } else { b.parse::<u64>().ok()?.min(len.saturating_sub(1)) };
        if first >= len || last < first {
            return Some(Err(()));
        }
        (first, last)
    };
    Some(Ok(r))
}

/// The 44-byte header of 16-bit PCM stereo 8 kHz with `data` bytes.
fn pcm_stereo_header(data: u64) -> [u8; 44] {
    let data = u32::try_from(data).unwrap_or(u32::MAX - 36).min(u32::MAX - 36);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&2u16.to_le_bytes());
    h[24..28].copy_from_slice(&8000u32.to_le_bytes());
    h[28..32].copy_from_slice(&32000u32.to_le_bytes());
    h[32..34].copy_from_slice(&4u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

fn ulaw_table() -> &'static [[u8; 2]; 256] {
    static T: std::sync::OnceLock<[[u8; 2]; 256]> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = [[0u8; 2]; 256];
        for (i, v) in t.iter_mut().enumerate() {
            *v = tsunagu_media::codec::ulaw_decode(i as u8).to_le_bytes();
        }
        t
    })
}

/// Play a recording: streamed as 16-bit PCM WAV (expanded from the stored
/// µ-law on the way, so every browser plays it), with `Range` for seeking.
/// Needs the recordings right; logged `play` once per admin and recording
/// every 10 minutes (a player's many range requests are one listening).
pub async fn recording_audio(State(state): State<ApiState>, who: Admin, axum::extract::Path(id): axum::extract::Path<String>, headers: axum::http::HeaderMap) -> ApiResult<Response> {
    use axum::http::{header, StatusCode};
    use futures_util::StreamExt;
    use object_store::ObjectStoreExt;
    who.require_right(Right::Recordings)?;
    let (key, _) = stored_recording(&state, &id).await?;
    let objects = objects_of(&state)?;
    let size = objects.head(&key).await.map_err(object_error)?.size;
    let head = objects.get_range(&key, 0..size.min(crate::recording::writer::HEADER_LEN + 64)).await.map_err(object_error)?;
    let Some((2, 7, offset, data_len)) = crate::recording::writer::parse_header(&head) else {
        return Err(ApiError::internal(format!("recording {id} is not stereo µ-law WAV")));
    };
    let offset = offset as u64;
    let data_len = (data_len as u64).min(size.saturating_sub(offset)) & !1;
    let out_len = 44 + 2 * data_len;
    let range = byte_range(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), out_len);
    let (first, last, partial) = match range {
        Some(Ok((a, b))) => (a, b, true),
        Some(Err(())) => {
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{out_len}"))]).into_response());
        }
        None => (0, out_len - 1, false),
    };
    let recent: Option<i64> = sqlx::query_scalar("SELECT at FROM recording_access WHERE actor = ? AND recording = ? AND action = 'play' AND at > ? LIMIT 1")
        .bind(&who.principal.name)
        .bind(&id)
        .bind(crate::store::unix_ms() - 600_000)
        .fetch_optional(state.store.pool())
        .await
        .map_err(StoreError::from)?;
    if recent.is_none() {
        log_access(&state, &who, &id, "play").await?;
    }
    // Output bytes first..=last: part of the 44-byte header, then audio,
    // where output byte 44 + 2i + j is byte j of input sample i expanded.
    let header_part: Vec<u8> = pcm_stereo_header(2 * data_len).get(first.min(44) as usize..(last + 1).min(44) as usize).unwrap_or(&[]).to_vec();
    let body = if last < 44 {
        axum::body::Body::from(header_part)
    } else {
        let a_first = first.max(44) - 44;
        let a_last = last - 44;
        let (in_first, in_last) = (a_first / 2, a_last / 2);
        let mut skip = (a_first % 2) as usize;
        let mut remaining = (a_last - a_first + 1) as usize;
        let got = objects.get_opts(&key, object_store::GetOptions { range: Some((offset + in_first..offset + in_last + 1).into()), ..Default::default() }).await.map_err(object_error)?;
        let table = ulaw_table();
        let audio = got.into_stream().map(move |chunk| {
            chunk.map(|b| {
                let mut out = Vec::with_capacity(b.len() * 2);
                for &u in b.iter() {
                    out.extend_from_slice(&table[u as usize]);
                }
                let start = skip.min(out.len());
                skip -= start;
                let end = (start + remaining).min(out.len());
                remaining -= end - start;
                axum::body::Bytes::from(out).slice(start..end)
            })
        });
        let head = futures_util::stream::once(async move { Ok::<_, object_store::Error>(axum::body::Bytes::from(header_part)) });
        axum::body::Body::from_stream(head.chain(audio))
    };
    let mut resp = Response::builder()
        .status(if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, "audio/wav")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, (last - first + 1).to_string())
        .header(header::CACHE_CONTROL, "no-store");
    if partial {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{out_len}"));
    }
    resp.body(body).map_err(|e| ApiError::internal(e.to_string()))
}

/// Download a copy of a recording, as stored (stereo µ-law WAV, the
/// SHA-256 in `X-Content-SHA256` matches it). A copy leaving the system is
/// what the access log is for: needs the recordings right and the auditor
/// role, and every download is logged.
pub async fn recording_download(State(state): State<ApiState>, who: Admin, axum::extract::Path(id): axum::extract::Path<String>) -> ApiResult<Response> {
    use axum::http::header;
    use object_store::ObjectStoreExt;
    who.require_right(Right::Recordings)?;
    if who.principal.role != super::rights::Role::Auditor {
        return Err(ApiError::forbidden("downloading a copy of a recording needs the auditor role (playing it needs only the right)"));
    }
    let (key, sha) = stored_recording(&state, &id).await?;
    let got = objects_of(&state)?.get(&key).await.map_err(object_error)?;
    let size = got.meta.size;
    log_access(&state, &who, &id, "download").await?;
    let body = axum::body::Body::from_stream(got.into_stream());
    Response::builder()
        .header(header::CONTENT_TYPE, "audio/wav")
        .header(header::CONTENT_LENGTH, size.to_string())
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"recording-{id}.wav\""))
        .header(header::CACHE_CONTROL, "no-store")
        .header("X-Content-SHA256", sha)
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
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
    fn byte_ranges() {
        use super::byte_range;
        assert_eq!(byte_range(Some("bytes=0-99"), 1000), Some(Ok((0, 99))));
        assert_eq!(byte_range(Some("bytes=900-"), 1000), Some(Ok((900, 999))));
        assert_eq!(byte_range(Some("bytes=-10"), 1000), Some(Ok((990, 999))));
        assert_eq!(byte_range(Some("bytes=990-5000"), 1000), Some(Ok((990, 999))));
        assert_eq!(byte_range(Some("bytes=1000-"), 1000), Some(Err(())));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 1000), None);
        assert_eq!(byte_range(Some("items=0-1"), 1000), None);
        assert_eq!(byte_range(None, 1000), None);
    }

    #[test]
    fn times_are_japan_standard_time() {
        assert_eq!(super::iso_time(0), "1970-01-01 09:00:00");
        // 2026-12-07 13:30:00 UTC
        assert_eq!(super::iso_time(1_796_650_200_000), "2026-12-07 22:30:00");
        assert_eq!(super::iso_time(951_782_400_000), "2000-02-29 09:00:00", "a leap day");
    }
}
