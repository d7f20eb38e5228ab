//! Departments, ring groups, public numbers (DIDs) and their routing,
//! carrier trunks and PBX settings. Ring groups and DIDs are read at each
//! call, so a saved change routes the next call.

use super::events::Event;
use super::rights::{Access, Resource, Role};
use super::session::Admin;
use super::{audit, csv_response, ApiError, ApiResult, ApiState, Body, RowError, Upload};
use crate::store::{setting_default, DidMedia, Dest, GroupMedia, RingGroup, Strategy, StoreError, Trunk, TrunkTransport, SETTING_DISASTER_MODE, SETTING_KEYS, SETTING_MFA_REQUIRED_ROLES, SETTING_MUSIC_ON_HOLD};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::HashMap;

fn db<E: Into<StoreError>>(e: E) -> ApiError {
    ApiError::from(e.into())
}

// ---- departments -------------------------------------------------------

pub async fn list_departments(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require(Resource::Departments, Access::Read)?;
    let rows = sqlx::query("SELECT d.id, d.name, (SELECT COUNT(*) FROM users u WHERE u.department = d.id) AS users FROM departments d ORDER BY d.name")
        .fetch_all(state.store.pool())
        .await
        .map_err(db)?;
    let mut out = Vec::new();
    for r in rows {
        let id: i64 = r.try_get("id").map_err(db)?;
        out.push(json!({ "id": id, "name": r.try_get::<String, _>("name").map_err(db)?, "users": r.try_get::<i64, _>("users").map_err(db)?,
                          "granted": who.principal.in_department(Some(id)) }));
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct DepartmentBody {
    name: String,
}

fn check_department_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("a department name has 1 to 100 characters"));
    }
    Ok(name.to_string())
}

/// Departments shape the organisation: system and organisation admins only.
fn require_org(who: &Admin) -> ApiResult<()> {
    who.require(Resource::Departments, Access::Write)?;
    if who.principal.sees_everything() {
        Ok(())
    } else {
        Err(ApiError::forbidden("only system and organisation admins add, rename or remove departments"))
    }
}

pub async fn add_department(State(state): State<ApiState>, who: Admin, Body(b): Body<DepartmentBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    require_org(&who)?;
    let name = check_department_name(&b.name)?;
    let r = sqlx::query("INSERT INTO departments (name, created_at) VALUES (?, ?) RETURNING id").bind(&name).bind(super::accounts::unix_secs()).fetch_one(state.store.pool()).await;
    let id: i64 = match r {
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => return Err(ApiError::duplicate(format!("a department named {name:?} already exists"))),
        r => r.map_err(db)?.try_get("id").map_err(db)?,
    };
    let after = json!({ "id": id, "name": name });
    audit::change(&state, &who, "department_added", &id.to_string(), None, Some(after.clone())).await;
    state.events.send(Event::change("departments", &id.to_string()));
    Ok((StatusCode::CREATED, Json(after)))
}

async fn department_name(state: &ApiState, id: i64) -> ApiResult<String> {
    let r = sqlx::query("SELECT name FROM departments WHERE id = ?").bind(id).fetch_optional(state.store.pool()).await.map_err(db)?;
    r.map(|r| r.try_get::<String, _>("name")).transpose().map_err(db)?.ok_or_else(|| ApiError::not_found(format!("no such department {id}")))
}

pub async fn rename_department(State(state): State<ApiState>, who: Admin, Path(id): Path<i64>, Body(b): Body<DepartmentBody>) -> ApiResult<Json<Value>> {
    require_org(&who)?;
    let before = department_name(&state, id).await?;
    let name = check_department_name(&b.name)?;
    let r = sqlx::query("UPDATE departments SET name = ? WHERE id = ?").bind(&name).bind(id).execute(state.store.pool()).await;
    if let Err(sqlx::Error::Database(d)) = &r {
        if d.is_unique_violation() {
            return Err(ApiError::duplicate(format!("a department named {name:?} already exists")));
        }
    }
    r.map_err(db)?;
    audit::change(&state, &who, "department_renamed", &id.to_string(), Some(json!({ "name": before })), Some(json!({ "name": name }))).await;
    state.events.send(Event::change("departments", &id.to_string()));
    Ok(Json(json!({ "id": id, "name": name })))
}

pub async fn remove_department(State(state): State<ApiState>, who: Admin, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    require_org(&who)?;
    let before = department_name(&state, id).await?;
    let users: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE department = ?").bind(id).fetch_one(state.store.pool()).await.map_err(db)?.try_get("n").map_err(db)?;
    if users > 0 {
        return Err(ApiError::conflict(format!("department {before:?} still has {users} users; move them first")));
    }
    let mut tx = state.store.pool().begin().await.map_err(db)?;
    sqlx::query("UPDATE ring_groups SET department = NULL WHERE department = ?").bind(id).execute(&mut *tx).await.map_err(db)?;
    sqlx::query("DELETE FROM departments WHERE id = ?").bind(id).execute(&mut *tx).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    audit::change(&state, &who, "department_removed", &id.to_string(), Some(json!({ "name": before })), None).await;
    state.events.send(Event::change("departments", &id.to_string()));
    Ok(StatusCode::NO_CONTENT)
}

// ---- ring groups -------------------------------------------------------

async fn group_departments(state: &ApiState) -> ApiResult<HashMap<String, Option<i64>>> {
    let rows = sqlx::query("SELECT number, department FROM ring_groups").fetch_all(state.store.pool()).await.map_err(db)?;
    rows.iter().map(|r| Ok((r.try_get::<String, _>("number").map_err(db)?, r.try_get::<Option<i64>, _>("department").map_err(db)?))).collect()
}

fn group_json(g: &RingGroup, department: Option<i64>) -> Value {
    json!({
        "number": g.number, "name": g.name, "department": department, "strategy": g.strategy.as_str(),
        "members": g.members.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "member_timeout": g.member_timeout_secs, "timeout": g.timeout_secs,
        "overflow": g.overflow.as_ref().map(|d| d.to_string()), "skip_busy": g.skip_busy,
    })
}

pub async fn list_groups(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require(Resource::Groups, Access::Read)?;
    let deps = group_departments(&state).await?;
    let groups = state.store.list_ring_groups().await?;
    let media = state.store.list_group_media().await?;
    Ok(Json(
        groups
            .iter()
            .map(|g| (g, deps.get(&g.number).copied().flatten()))
            .filter(|(_, d)| who.principal.in_department(*d))
            .map(|(g, d)| with_group_media(group_json(g, d), media.get(&g.number)))
            .collect(),
    ))
}

#[derive(Deserialize)]
pub struct GroupBody {
    #[serde(default)]
    name: String,
    department: Option<i64>,
    strategy: String,
    members: Vec<String>,
    member_timeout: Option<u32>,
    timeout: Option<u32>,
    overflow: Option<String>,
    #[serde(default)]
    skip_busy: bool,
    /// Announcements (absent: unchanged; "": none).
    moh: Option<String>,
    greeting: Option<String>,
    queue_announcement: Option<String>,
    /// Seconds between waiting announcements (absent: unchanged; 0: the default).
    queue_announcement_secs: Option<u32>,
}

/// A group's media settings in its JSON.
fn with_group_media(mut v: Value, m: Option<&GroupMedia>) -> Value {
    let m = m.cloned().unwrap_or_default();
    v["moh"] = json!(m.moh);
    v["greeting"] = json!(m.greeting);
    v["queue_announcement"] = json!(m.queue_announcement);
    v["queue_announcement_secs"] = json!(m.queue_announcement_secs);
    v
}

/// A DID's media settings in its JSON.
fn with_did_media(mut v: Value, m: Option<&DidMedia>) -> Value {
    let m = m.cloned().unwrap_or_default();
    v["moh"] = json!(m.moh);
    v["greeting"] = json!(m.greeting);
    v
}

/// An announcement field of a body: absent keeps `old`, "" clears it,
/// a name must exist (checked before anything is saved).
async fn media_field(state: &ApiState, field: &str, given: &Option<String>, old: Option<String>) -> ApiResult<Option<String>> {
    let Some(v) = given else { return Ok(old) };
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    crate::store::check_media_name("announcement", v).map_err(|e| ApiError::invalid(format!("{field}: {}", e.detail())))?;
    if state.store.announcement(v).await?.is_none() {
        return Err(ApiError::invalid(format!("{field}: no announcement named {v}")));
    }
    Ok(Some(v.to_string()))
}

pub async fn put_group(State(state): State<ApiState>, who: Admin, Path(number): Path<String>, Body(b): Body<GroupBody>) -> ApiResult<Json<Value>> {
    who.require(Resource::Groups, Access::Write)?;
    crate::store::validate_extension(&number).map_err(|_| ApiError::invalid(format!("group number {number:?} must be 2 to 16 digits")))?;
    let deps = group_departments(&state).await?;
    let before = state.store.ring_group(&number).await?;
    if let Some(old) = &before {
        if !who.principal.in_department(deps.get(&old.number).copied().flatten()) {
            return Err(ApiError::forbidden(format!("ring group {number} is in a department not granted to {}", who.principal.name)));
        }
    }
    if !who.principal.in_department(b.department) {
        return Err(ApiError::forbidden(format!("{} may not put a ring group in that department", who.principal.name)));
    }
    if let Some(d) = b.department {
        department_name(&state, d).await.map_err(|_| ApiError::invalid(format!("no such department {d}")))?;
    }
    let strategy = Strategy::parse(&b.strategy).map_err(ApiError::from)?;
    let members = b.members.iter().filter(|m| !m.trim().is_empty()).map(|m| Dest::parse(m)).collect::<Result<Vec<_>, _>>()?;
    let overflow = b.overflow.as_deref().map(str::trim).filter(|o| !o.is_empty()).map(Dest::parse).transpose()?;
    let member_timeout = b.member_timeout.unwrap_or(15);
    let timeout = b.timeout.unwrap_or(60);
    if !(1..=600).contains(&member_timeout) || !(1..=3600).contains(&timeout) {
        return Err(ApiError::invalid("member_timeout: 1 to 600 s; timeout: 1 to 3600 s"));
    }
    if b.name.chars().count() > 100 {
        return Err(ApiError::invalid("the name is longer than 100 characters"));
    }
    let old_media = state.store.group_media(&number).await?;
    let media = GroupMedia {
        moh: media_field(&state, "moh", &b.moh, old_media.moh.clone()).await?,
        greeting: media_field(&state, "greeting", &b.greeting, old_media.greeting.clone()).await?,
        queue_announcement: media_field(&state, "queue_announcement", &b.queue_announcement, old_media.queue_announcement.clone()).await?,
        queue_announcement_secs: match b.queue_announcement_secs {
            None => old_media.queue_announcement_secs,
            Some(0) => None,
            Some(s) if (5..=600).contains(&s) => Some(s),
            Some(_) => return Err(ApiError::invalid("queue_announcement_secs: 5 to 600 s (0: the default, 30)")),
        },
    };
    let g = RingGroup { number: number.clone(), name: b.name, strategy, members, member_timeout_secs: member_timeout, timeout_secs: timeout, overflow, skip_busy: b.skip_busy, rr_next: 0 };
    state.store.put_ring_group(&g).await?;
    sqlx::query("UPDATE ring_groups SET department = ? WHERE number = ?").bind(b.department).bind(&number).execute(state.store.pool()).await.map_err(db)?;
    state.store.set_group_media(&number, &media).await?;
    let after = with_group_media(group_json(&g, b.department), Some(&media));
    let before = before.map(|o| with_group_media(group_json(&o, deps.get(&number).copied().flatten()), Some(&old_media)));
    audit::change(&state, &who, if before.is_some() { "group_changed" } else { "group_added" }, &number, before, Some(after.clone())).await;
    state.events.send(Event::change("groups", &number));
    Ok(Json(after))
}

pub async fn remove_group(State(state): State<ApiState>, who: Admin, Path(number): Path<String>) -> ApiResult<StatusCode> {
    who.require(Resource::Groups, Access::Write)?;
    let deps = group_departments(&state).await?;
    let Some(g) = state.store.ring_group(&number).await? else { return Err(ApiError::not_found(format!("no such ring group {number}"))) };
    let dep = deps.get(&number).copied().flatten();
    if !who.principal.in_department(dep) {
        return Err(ApiError::forbidden(format!("ring group {number} is in a department not granted to {}", who.principal.name)));
    }
    state.store.remove_ring_group(&number).await?;
    audit::change(&state, &who, "group_removed", &number, Some(group_json(&g, dep)), None).await;
    state.events.send(Event::change("groups", &number));
    Ok(StatusCode::NO_CONTENT)
}

// ---- public numbers (DIDs) -------------------------------------------

fn did_json(number: &str, dest: &Dest, label: &str) -> Value {
    json!({ "number": number, "dest": dest.to_string(), "label": label })
}

pub async fn list_dids(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require(Resource::Dids, Access::Read)?;
    let dids = state.store.list_dids().await?;
    let media = state.store.list_did_media().await?;
    Ok(Json(dids.iter().filter(|(n, _, _)| who.principal.in_did(n)).map(|(n, d, l)| with_did_media(did_json(n, d, l), media.get(n))).collect()))
}

#[derive(Deserialize)]
pub struct DidBody {
    dest: String,
    #[serde(default)]
    label: String,
    /// Announcements (absent: unchanged; "": none).
    moh: Option<String>,
    greeting: Option<String>,
}

fn require_did(who: &Admin, number: &str) -> ApiResult<()> {
    who.require(Resource::Dids, Access::Write)?;
    if who.principal.in_did(number) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("the routing of {number} has not been granted to {}", who.principal.name)))
    }
}

pub async fn put_did(State(state): State<ApiState>, who: Admin, Path(number): Path<String>, Body(b): Body<DidBody>) -> ApiResult<Json<Value>> {
    require_did(&who, &number)?;
    if crate::store::did_number(&number)? != number {
        return Err(ApiError::invalid(format!("number {number:?}: give it in national form ({})", crate::store::did_number(&number)?)));
    }
    crate::store::validate_did_label(&b.label)?;
    let dest = Dest::parse(&b.dest)?;
    let old_media = state.store.did_media(&number).await?;
    let media = DidMedia {
        moh: media_field(&state, "moh", &b.moh, old_media.moh.clone()).await?,
        greeting: media_field(&state, "greeting", &b.greeting, old_media.greeting.clone()).await?,
    };
    let before = state.store.list_dids().await?.into_iter().find(|(n, _, _)| *n == number).map(|(n, d, l)| with_did_media(did_json(&n, &d, &l), Some(&old_media)));
    state.store.put_dids(&[(number.clone(), dest.clone(), b.label.clone())]).await?;
    state.store.set_did_media(&number, &media).await?;
    let after = with_did_media(did_json(&number, &dest, &b.label), Some(&media));
    audit::change(&state, &who, "did_routing_changed", &number, before, Some(after.clone())).await;
    state.events.send(Event::change("dids", &number));
    Ok(Json(after))
}

pub async fn remove_did(State(state): State<ApiState>, who: Admin, Path(number): Path<String>) -> ApiResult<StatusCode> {
    require_did(&who, &number)?;
    let before = state.store.list_dids().await?.into_iter().find(|(n, _, _)| *n == number).map(|(n, d, l)| did_json(&n, &d, &l));
    state.store.remove_did(&number).await?;
    audit::change(&state, &who, "did_removed", &number, before, None).await;
    state.events.send(Event::change("dids", &number));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

/// Add or replace numbers from CSV (`number,dest,label`): all or none.
pub async fn import_dids(State(state): State<ApiState>, who: Admin, Query(q): Query<DryRun>, Upload(body): Upload) -> ApiResult<Json<Value>> {
    who.require(Resource::Dids, Access::Write)?;
    let text = crate::csv::decode(&body).map_err(|e| ApiError::invalid(e.to_string()))?;
    let rows = crate::csv::parse(&text).map_err(|e| ApiError::rows("the file is not valid CSV", vec![RowError { row: e.line, message: e.message }]))?;
    let parsed = crate::store::dids_from_rows(&rows);
    let mut errors: Vec<RowError> = parsed.as_ref().err().into_iter().flatten().map(|(row, message)| RowError { row: *row, message: message.clone() }).collect();
    let mut dids = Vec::new();
    for (line, number, dest, label) in parsed.unwrap_or_default() {
        if who.principal.in_did(&number) {
            dids.push((number, dest, label));
        } else {
            errors.push(RowError { row: line, message: format!("the routing of {number} has not been granted to {}", who.principal.name) });
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.row);
        return Err(ApiError::rows(format!("{} of {} rows have problems; nothing was imported", errors.len(), rows.len().saturating_sub(1)), errors));
    }
    if q.dry_run {
        return Ok(Json(json!({ "dry_run": true, "would_import": dids.len() })));
    }
    let n = state.store.put_dids(&dids).await?;
    audit::change(&state, &who, "dids_imported", &format!("{n} numbers"), None, Some(json!(dids.iter().map(|(n, d, l)| did_json(n, d, l)).collect::<Vec<_>>()))).await;
    state.events.send(Event::change("dids", ""));
    Ok(Json(json!({ "imported": n })))
}

pub async fn export_dids(State(state): State<ApiState>, who: Admin) -> ApiResult<Response> {
    who.require(Resource::Dids, Access::Read)?;
    let mut out = String::from(crate::csv::BOM);
    crate::csv::write_row(&mut out, &["number", "dest", "label"]);
    for (n, d, l) in state.store.list_dids().await? {
        if who.principal.in_did(&n) {
            crate::csv::write_row(&mut out, &[&n, &d.to_string(), &l]);
        }
    }
    Ok(csv_response("dids.csv", out))
}

// ---- trunks ------------------------------------------------------------

/// A trunk as shown: its password is never read back.
fn trunk_json(t: &Trunk) -> Value {
    json!({ "name": t.name, "host": t.host.to_string(), "transport": t.transport.as_str(), "username": t.username,
            "has_password": t.password.is_some(), "priority": t.priority, "register": t.register,
            "state": t.state, "detail": t.state_detail, "state_at": t.state_at })
}

pub async fn list_trunks(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require(Resource::Trunks, Access::Read)?;
    Ok(Json(state.store.list_trunks().await?.iter().map(trunk_json).collect()))
}

#[derive(Deserialize)]
pub struct TrunkBody {
    host: String,
    #[serde(default = "udp")]
    transport: String,
    username: Option<String>,
    /// Absent: keep the stored one.
    password: Option<String>,
    #[serde(default = "ten")]
    priority: i64,
    #[serde(default)]
    register: bool,
}

fn udp() -> String {
    "udp".into()
}
fn ten() -> i64 {
    10
}

pub async fn put_trunk(State(state): State<ApiState>, who: Admin, Path(name): Path<String>, Body(b): Body<TrunkBody>) -> ApiResult<Json<Value>> {
    who.require(Resource::Trunks, Access::Write)?;
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
        return Err(ApiError::invalid("a trunk name has 1 to 64 letters, digits, '-' or '_'"));
    }
    let host = b.host.trim().parse().map_err(|_| ApiError::invalid(format!("host {:?}: expected ip:port", b.host)))?;
    let transport = TrunkTransport::parse(&b.transport)?;
    let before = state.store.list_trunks().await?.into_iter().find(|t| t.name == name);
    let password = b.password.filter(|p| !p.is_empty()).or_else(|| before.as_ref().and_then(|t| t.password.clone()));
    let t = Trunk {
        name: name.clone(),
        host,
        transport,
        username: b.username.filter(|u| !u.is_empty()),
        password,
        priority: b.priority,
        register: b.register,
        state: String::new(),
        state_detail: String::new(),
        state_at: 0,
    };
    state.store.put_trunk(&t).await?;
    let after = trunk_json(&t);
    audit::change(&state, &who, if before.is_some() { "trunk_changed" } else { "trunk_added" }, &name, before.as_ref().map(trunk_json), Some(after.clone())).await;
    state.events.send(Event::change("trunks", &name));
    Ok(Json(after))
}

pub async fn remove_trunk(State(state): State<ApiState>, who: Admin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    who.require(Resource::Trunks, Access::Write)?;
    let before = state.store.list_trunks().await?.into_iter().find(|t| t.name == name);
    state.store.remove_trunk(&name).await?;
    audit::change(&state, &who, "trunk_removed", &name, before.as_ref().map(trunk_json), None).await;
    state.events.send(Event::change("trunks", &name));
    Ok(StatusCode::NO_CONTENT)
}

// ---- settings ----------------------------------------------------------

pub async fn list_settings(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require(Resource::Settings, Access::Read)?;
    let mut out = Vec::new();
    for key in SETTING_KEYS.into_iter().chain(crate::store::RECORDING_SETTING_KEYS) {
        out.push(json!({ "key": key, "value": state.store.setting(key).await?, "default": setting_default(key) }));
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct SettingBody {
    value: String,
}

pub async fn put_setting(State(state): State<ApiState>, who: Admin, Path(key): Path<String>, Body(b): Body<SettingBody>) -> ApiResult<Json<Value>> {
    who.require(Resource::Settings, Access::Write)?;
    let value = b.value.trim().to_string();
    if let Some(checked) = crate::store::check_recording_setting(&key, &value) {
        // Call recording's settings: modes, days, megabytes, a feature code, a name.
        checked.map_err(ApiError::invalid)?;
    } else if key == SETTING_DISASTER_MODE {
        if value != "on" && value != "off" {
            return Err(ApiError::invalid(format!("{key}: on or off")));
        }
    } else if key == SETTING_MUSIC_ON_HOLD && (value.is_empty() || value == "off") {
        // No hold music: holds pass across to the held phone as they are.
    } else if key == SETTING_MUSIC_ON_HOLD {
        crate::store::check_media_name("announcement", &value).map_err(|e| ApiError::invalid(format!("{key}: {}", e.detail())))?;
        if value != crate::announce::HOLD_MUSIC && state.store.announcement(&value).await?.is_none() {
            return Err(ApiError::invalid(format!("{key}: no announcement named {value}")));
        }
    } else if let Some(checked) = crate::store::check_call_setting(&key, &value) {
        checked.map_err(ApiError::invalid)?;
    } else if key == SETTING_MFA_REQUIRED_ROLES {
        if let Some(bad) = value.split(',').map(str::trim).find(|r| !r.is_empty() && Role::parse(r).is_none()) {
            return Err(ApiError::invalid(format!("{key}: unknown role {bad:?}")));
        }
    } else if value.len() > 32 || !value.bytes().all(|c| c.is_ascii_digit() || c == b'*' || c == b'#' || c == b'+') {
        return Err(ApiError::invalid(format!("{key}: digits, '*', '#' or '+' (at most 32)")));
    }
    let before = state.store.setting(&key).await.ok();
    state.store.set_setting(&key, &value).await?;
    audit::change(&state, &who, "setting_changed", &key, before.map(|v| json!(v)), Some(json!(value))).await;
    state.events.send(Event::change("settings", &key));
    Ok(Json(json!({ "key": key, "value": value })))
}

// ---- recording policy ----------------------------------------------------

pub async fn recording_policy(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Value>> {
    who.require(Resource::Settings, Access::Read)?;
    let flagged: Vec<Value> = state.store.recording_policy().await?.into_iter().map(|(kind, key)| json!({ "kind": kind, "key": key })).collect();
    Ok(Json(json!({ "mode": state.store.setting(crate::store::SETTING_RECORDING_MODE).await?, "flagged": flagged })))
}

#[derive(Deserialize)]
pub struct RecordingPolicyBody {
    record: bool,
}

/// With `recording_mode = selected`, these calls are recorded: the
/// extension's (as caller or callee), the ring group's, the number's.
pub async fn put_recording_policy(State(state): State<ApiState>, who: Admin, Path((kind, key)): Path<(String, String)>, Body(b): Body<RecordingPolicyBody>) -> ApiResult<Json<Value>> {
    who.require(Resource::Settings, Access::Write)?;
    let target = match kind.as_str() {
        "user" => crate::store::PolicyTarget::User,
        "group" => crate::store::PolicyTarget::Group,
        "did" => crate::store::PolicyTarget::Did,
        _ => return Err(ApiError::invalid(format!("kind {kind:?}: user, group or did"))),
    };
    state.store.set_recording_policy(target, &key, b.record).await?;
    let what = format!("{kind}:{key}");
    audit::change(&state, &who, "recording_policy_changed", &what, None, Some(json!({ "record": b.record }))).await;
    state.events.send(Event::change("settings", "recording_policy"));
    Ok(Json(json!({ "kind": kind, "key": key, "record": b.record })))
}
