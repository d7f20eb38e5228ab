//! The shared phonebook over HTTP: search and deltas for the apps, edits
//! and CSV for admins, and the remote phonebook XML desk phones read with
//! their SIP credentials.

use super::events::Event;
use super::rights::{Access, Resource};
use super::session::Admin;
use super::{audit, csv_response, ApiError, ApiResult, ApiState, Body, RowError, Upload};
use crate::phonebook::{NewEntry, PhonebookError};
use crate::store::{Store, StoreError};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

impl From<PhonebookError> for ApiError {
    fn from(e: PhonebookError) -> Self {
        match e {
            PhonebookError::NotFound(id) => ApiError::not_found(format!("no phonebook entry {id}")),
            PhonebookError::Db(e) => ApiError::from(StoreError::from(e)),
            PhonebookError::Rows(rows) => {
                let rows: Vec<RowError> = rows.into_iter().map(|r| RowError { row: r.row, message: r.message }).collect();
                ApiError::rows(format!("{} rows have problems; nothing was imported", rows.len()), rows)
            }
            e => ApiError::invalid(e.to_string()),
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    since: Option<i64>,
    limit: Option<usize>,
}

/// `?since=V`: what changed after version V (the apps' sync); otherwise a
/// search (empty `q`: everything, up to `limit`).
pub async fn list(State(state): State<ApiState>, who: Admin, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    who.require(Resource::Phonebook, Access::Read)?;
    if let Some(since) = q.since {
        let d = state.phonebook.since(since).await?;
        return Ok(Json(serde_json::to_value(d).unwrap_or_default()));
    }
    let limit = q.limit.unwrap_or(200).clamp(1, 100_000);
    let entries = state.phonebook.search(q.q.as_deref().unwrap_or(""), limit).await?;
    Ok(Json(json!({ "version": state.phonebook.version().await?, "entries": entries, "deleted": [] })))
}

fn require_write(who: &Admin) -> ApiResult<()> {
    who.require(Resource::Phonebook, Access::Write)
}

pub async fn add(State(state): State<ApiState>, who: Admin, Body(b): Body<NewEntry>) -> ApiResult<(StatusCode, Json<Value>)> {
    require_write(&who)?;
    let e = state.phonebook.add(b).await?;
    let after = json!(e);
    audit::change(&state, &who, "phonebook_added", &e.id.to_string(), None, Some(after.clone())).await;
    state.events.send(Event::change("phonebook", &e.id.to_string()));
    Ok((StatusCode::CREATED, Json(after)))
}

pub async fn update(State(state): State<ApiState>, who: Admin, Path(id): Path<i64>, Body(b): Body<NewEntry>) -> ApiResult<Json<Value>> {
    require_write(&who)?;
    let before = state.phonebook.get(id).await?.ok_or(PhonebookError::NotFound(id))?;
    let e = state.phonebook.update(id, b).await?;
    let after = json!(e);
    audit::change(&state, &who, "phonebook_changed", &id.to_string(), Some(json!(before)), Some(after.clone())).await;
    state.events.send(Event::change("phonebook", &id.to_string()));
    Ok(Json(after))
}

pub async fn remove(State(state): State<ApiState>, who: Admin, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    require_write(&who)?;
    let before = state.phonebook.get(id).await?.ok_or(PhonebookError::NotFound(id))?;
    state.phonebook.remove(id).await?;
    audit::change(&state, &who, "phonebook_removed", &id.to_string(), Some(json!(before)), None).await;
    state.events.send(Event::change("phonebook", &id.to_string()));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

/// Replace the whole phonebook from CSV: all rows or none.
pub async fn import(State(state): State<ApiState>, who: Admin, Query(q): Query<DryRun>, Upload(body): Upload) -> ApiResult<Json<Value>> {
    require_write(&who)?;
    let text = crate::csv::decode(&body).map_err(|e| ApiError::invalid(e.to_string()))?;
    let rows = crate::csv::parse(&text).map_err(|e| ApiError::rows("the file is not valid CSV", vec![RowError { row: e.line, message: e.message }]))?;
    let entries = match crate::phonebook::Phonebook::validate_rows(&rows) {
        Ok(e) => e,
        Err(errors) => {
            let rows = errors.into_iter().map(|e| RowError { row: e.row, message: e.message }).collect::<Vec<_>>();
            return Err(ApiError::rows(format!("{} rows have problems; nothing was imported", rows.len()), rows));
        }
    };
    if q.dry_run {
        return Ok(Json(json!({ "dry_run": true, "would_import": entries.len() })));
    }
    let n = entries.len();
    drop((rows, text, body));
    state.phonebook.replace_all(entries).await?;
    crate::phonebook::release_freed_memory();
    audit::change(&state, &who, "phonebook_imported", &format!("{n} entries"), None, None).await;
    state.events.send(Event::change("phonebook", ""));
    Ok(Json(json!({ "imported": n })))
}

pub async fn export(State(state): State<ApiState>, who: Admin) -> ApiResult<Response> {
    who.require(Resource::Phonebook, Access::Read)?;
    Ok(csv_response("phonebook.csv", state.phonebook.export_csv().await?))
}

#[derive(Deserialize)]
pub struct XmlQuery {
    q: Option<String>,
}

/// The extension whose SIP password the Basic credentials carry, if right.
/// Wrong passwords count towards the registrar's brute-force bans, and a
/// banned source or extension is refused without a check.
async fn sip_user(state: &ApiState, headers: &HeaderMap, from: Option<std::net::IpAddr>) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    let guard = state.registrar.as_ref().zip(from);
    if let Some((reg, ip)) = guard {
        if !reg.password_check_allowed(ip, user) {
            return None;
        }
    }
    let known = sip_password_matches(state, user, password).await;
    if !known {
        if let Some((reg, ip)) = guard {
            reg.password_check_failed(ip, user);
        }
        return None;
    }
    Some(user.to_string())
}

async fn sip_password_matches(state: &ApiState, user: &str, password: &str) -> bool {
    let Ok(Some(stored)) = state.store.get_user(user).await else { return false };
    let Ok(realm) = state.store.realm().await else { return false };
    let given = tsunagu_sip::digest::StoredCredentials::from_password(user, &realm, password);
    // Compare every byte whatever the first difference (no timing hint).
    given.ha1_sha256.len() == stored.credentials.ha1_sha256.len()
        && given.ha1_sha256.bytes().zip(stored.credentials.ha1_sha256.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The remote phonebook for desk phones, with their own SIP credentials.
pub async fn desk_phone_xml(State(state): State<ApiState>, super::session::Source(source): super::session::Source, headers: HeaderMap, Query(q): Query<XmlQuery>) -> Response {
    if sip_user(&state, &headers, source.parse().ok()).await.is_none() {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"Tsunagu phonebook\", charset=\"UTF-8\"")], "sign in with the phone's extension and SIP password\n").into_response();
    }
    match state.phonebook.search(q.q.as_deref().unwrap_or(""), 100_000).await {
        Ok(entries) => ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], crate::phonebook::to_xml(&entries)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
