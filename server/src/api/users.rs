//! Users (extensions): list, add, change, move between departments,
//! forwarding, their devices and SIP passwords, and CSV import/export. A
//! group admin reaches only the users of the departments granted. Adding
//! or changing a user bumps the users version, which the running
//! registrar polls: a new user can register at once.

use super::events::Event;
use super::rights::{Access, Resource, Right};
use super::session::Admin;
use super::{audit, csv_response, ApiError, ApiResult, ApiState, Body, RowError, Upload};
use crate::store::{validate_extension, Dest, StoreError, Store};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use tsunagu_sip::digest::StoredCredentials;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UserView {
    pub extension: String,
    pub name: String,
    pub department: Option<i64>,
    pub department_name: Option<String>,
    pub caller_id: String,
    pub own_did: Option<String>,
    pub registered: bool,
}

const USER_SELECT: &str = "SELECT u.extension, u.name, u.department, d.name AS department_name,
       COALESCE(s.caller_id, 'main') AS caller_id, s.own_did
  FROM users u LEFT JOIN departments d ON d.id = u.department LEFT JOIN user_settings s ON s.extension = u.extension";

fn view_of(state: &ApiState, r: &sqlx::sqlite::SqliteRow) -> Result<UserView, sqlx::Error> {
    let extension: String = r.try_get("extension")?;
    let registered = state.registrar.as_ref().is_some_and(|reg| !reg.bindings(&extension).is_empty());
    Ok(UserView {
        name: r.try_get("name")?,
        department: r.try_get("department")?,
        department_name: r.try_get("department_name")?,
        caller_id: r.try_get("caller_id")?,
        own_did: r.try_get("own_did")?,
        registered,
        extension,
    })
}

async fn load(state: &ApiState, ext: &str) -> ApiResult<UserView> {
    let row = sqlx::query(&format!("{USER_SELECT} WHERE u.extension = ?")).bind(ext).fetch_optional(state.store.pool()).await.map_err(StoreError::from)?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("no such extension {ext}")))?;
    Ok(view_of(state, &row).map_err(StoreError::from)?)
}

/// Load a user the admin may act on; someone out of scope gets 403 (not
/// 404: the admin may know the number, and 403 says why).
async fn load_in_scope(state: &ApiState, who: &Admin, ext: &str, access: Access) -> ApiResult<UserView> {
    who.require(Resource::Users, access)?;
    let u = load(state, ext).await?;
    if !who.principal.in_department(u.department) {
        return Err(ApiError::forbidden(format!("extension {ext} is in a department not granted to {}", who.principal.name)));
    }
    Ok(u)
}

fn json_of(u: &UserView) -> Value {
    serde_json::to_value(u).unwrap_or_default()
}

#[derive(Deserialize)]
pub struct ListQuery {
    department: Option<i64>,
    q: Option<String>,
}

pub async fn list(State(state): State<ApiState>, who: Admin, Query(q): Query<ListQuery>) -> ApiResult<Json<Vec<UserView>>> {
    who.require(Resource::Users, Access::Read)?;
    let rows = sqlx::query(&format!("{USER_SELECT} ORDER BY u.extension")).fetch_all(state.store.pool()).await.map_err(StoreError::from)?;
    let needle = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase);
    let mut out = Vec::new();
    for r in &rows {
        let u = view_of(&state, r).map_err(StoreError::from)?;
        if !who.principal.in_department(u.department) || q.department.is_some_and(|d| u.department != Some(d)) {
            continue;
        }
        if needle.as_ref().is_some_and(|n| !u.extension.contains(n.as_str()) && !u.name.to_lowercase().contains(n.as_str())) {
            continue;
        }
        out.push(u);
    }
    Ok(Json(out))
}

pub async fn get_one(State(state): State<ApiState>, who: Admin, Path(ext): Path<String>) -> ApiResult<Json<Value>> {
    let u = load_in_scope(&state, &who, &ext, Access::Read).await?;
    let s = state.store.user_settings(&ext).await?;
    let mut body = json_of(&u);
    body["forwarding"] = forwarding_json(&s);
    if who.principal.has(Right::Devices) {
        let devices: Vec<Value> = state
            .registrar
            .as_ref()
            .map(|r| r.bindings(&ext))
            .unwrap_or_default()
            .iter()
            .map(|b| {
                let s = b.to_stored(&ext);
                json!({ "device_key": s.device_key, "contact": s.contact, "transport": s.transport, "source": s.source,
                        "user_agent": s.user_agent, "expires_at": s.expires_at, "push": s.pn_provider.is_some() })
            })
            .collect();
        body["devices"] = json!(devices);
    }
    Ok(Json(body))
}

fn forwarding_json(s: &crate::store::UserSettings) -> Value {
    let d = |d: &Option<Dest>| d.as_ref().map(|d| d.to_string());
    json!({ "always": d(&s.fwd_always), "busy": d(&s.fwd_busy), "no_answer": d(&s.fwd_no_answer),
            "no_answer_secs": s.fwd_no_answer_secs, "unregistered": d(&s.fwd_unregistered) })
}

/// A new user, from the API or a CSV row, checked.
#[derive(Debug, Clone)]
struct NewUser {
    extension: String,
    name: String,
    department: Option<i64>,
    /// None: generate one.
    password: Option<String>,
    caller_id: Option<String>,
    own_did: Option<String>,
}

fn check_name(name: &str) -> Result<(), String> {
    if name.chars().count() > 100 {
        return Err("the name is longer than 100 characters".into());
    }
    if name.chars().any(char::is_control) {
        return Err("the name contains control characters".into());
    }
    Ok(())
}

fn check_sip_password(p: &str) -> Result<(), String> {
    crate::store::validate_sip_password(p).map_err(|e| e.detail())
}

fn check_caller_id(c: &str) -> Result<(), String> {
    match c {
        "main" | "own" => Ok(()),
        _ => Err(format!("caller_id {c:?}: expected main (the city's main number) or own (the user's DID)")),
    }
}

/// A user's own public number, in national form.
fn own_did(d: &str) -> Result<String, String> {
    crate::store::did_number(d).map_err(|e| format!("own_did: {}", e.detail()))
}

/// A SIP password people can type on a desk phone's keypad if they must.
pub fn generate_sip_password() -> String {
    super::accounts::random_text(16)
}

async fn realm(state: &ApiState) -> ApiResult<String> {
    Ok(state.store.realm().await?)
}

/// Insert users with their department and caller ID in one transaction.
async fn insert_users(state: &ApiState, users: &[NewUser]) -> ApiResult<Vec<(String, String)>> {
    let realm = realm(state).await?;
    let mut generated = Vec::new();
    let mut tx = state.store.pool().begin().await.map_err(StoreError::from)?;
    let now = super::accounts::unix_secs();
    for u in users {
        let password = match &u.password {
            Some(p) => p.clone(),
            None => {
                let p = generate_sip_password();
                generated.push((u.extension.clone(), p.clone()));
                p
            }
        };
        let c = StoredCredentials::from_password(&u.extension, &realm, &password);
        let r = sqlx::query("INSERT INTO users (extension, name, ha1_md5, ha1_sha256, created_at, department) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&u.extension)
            .bind(&u.name)
            .bind(&c.ha1_md5)
            .bind(&c.ha1_sha256)
            .bind(now)
            .bind(u.department)
            .execute(&mut *tx)
            .await;
        match r {
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => return Err(ApiError::duplicate(format!("extension {} already exists", u.extension))),
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => return Err(ApiError::invalid(format!("no such department {:?}", u.department))),
            r => {
                r.map_err(StoreError::from)?;
            }
        }
        if u.caller_id.is_some() || u.own_did.is_some() {
            sqlx::query("INSERT INTO user_settings (extension, caller_id, own_did) VALUES (?, ?, ?)")
                .bind(&u.extension)
                .bind(u.caller_id.as_deref().unwrap_or("main"))
                .bind(&u.own_did)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(generated)
}

#[derive(Deserialize)]
pub struct AddUser {
    extension: String,
    #[serde(default)]
    name: String,
    department: Option<i64>,
    password: Option<String>,
    caller_id: Option<String>,
    own_did: Option<String>,
}

pub async fn add(State(state): State<ApiState>, who: Admin, Body(b): Body<AddUser>) -> ApiResult<(StatusCode, Json<Value>)> {
    who.require(Resource::Users, Access::Write)?;
    validate_extension(&b.extension)?;
    check_name(&b.name).map_err(ApiError::invalid)?;
    let password = b.password.filter(|p| !p.is_empty());
    if let Some(p) = &password {
        check_sip_password(p).map_err(ApiError::invalid)?;
    }
    if let Some(c) = &b.caller_id {
        check_caller_id(c).map_err(ApiError::invalid)?;
    }
    let own_did = b.own_did.filter(|d| !d.is_empty()).map(|d| own_did(&d)).transpose().map_err(ApiError::invalid)?;
    if !who.principal.in_department(b.department) {
        return Err(ApiError::forbidden(match b.department {
            Some(d) => format!("department {d} is not granted to {}", who.principal.name),
            None => "a group admin must put the user in one of the departments granted".into(),
        }));
    }
    if state.store.ring_group(&b.extension).await?.is_some() {
        return Err(ApiError::duplicate(format!("{} is already a ring group's number", b.extension)));
    }
    let nu = NewUser { extension: b.extension.clone(), name: b.name, department: b.department, password, caller_id: b.caller_id, own_did };
    let generated = insert_users(&state, std::slice::from_ref(&nu)).await?;
    let u = load(&state, &nu.extension).await?;
    audit::change(&state, &who, "user_added", &u.extension, None, Some(json_of(&u))).await;
    state.events.send(Event::change("users", &u.extension));
    let mut body = json_of(&u);
    if let Some((_, p)) = generated.first() {
        body["sip_password"] = json!(p);
    }
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize)]
pub struct UpdateUser {
    name: Option<String>,
    /// Present and null: out of every department.
    #[serde(default, with = "double_option")]
    department: Option<Option<i64>>,
    caller_id: Option<String>,
    #[serde(default, with = "double_option")]
    own_did: Option<Option<String>>,
}

/// Tell "absent" (leave as is) from "null" (clear) in a JSON body.
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

pub async fn update(State(state): State<ApiState>, who: Admin, Path(ext): Path<String>, Body(b): Body<UpdateUser>) -> ApiResult<Json<Value>> {
    let before = load_in_scope(&state, &who, &ext, Access::Write).await?;
    let pool = state.store.pool();
    if let Some(name) = &b.name {
        check_name(name).map_err(ApiError::invalid)?;
    }
    if let Some(dep) = b.department {
        if !who.principal.in_department(dep) {
            return Err(ApiError::forbidden(format!("{} may not move a user into that department", who.principal.name)));
        }
    }
    if let Some(c) = &b.caller_id {
        check_caller_id(c).map_err(ApiError::invalid)?;
    }
    let new_own_did = match &b.own_did {
        Some(Some(d)) if !d.is_empty() => Some(Some(own_did(d).map_err(ApiError::invalid)?)),
        Some(_) => Some(None),
        None => None,
    };
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    if let Some(name) = &b.name {
        sqlx::query("UPDATE users SET name = ? WHERE extension = ?").bind(name).bind(&ext).execute(&mut *tx).await.map_err(StoreError::from)?;
    }
    if let Some(dep) = b.department {
        let r = sqlx::query("UPDATE users SET department = ? WHERE extension = ?").bind(dep).bind(&ext).execute(&mut *tx).await;
        match r {
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => return Err(ApiError::invalid(format!("no such department {dep:?}"))),
            r => {
                r.map_err(StoreError::from)?;
            }
        }
    }
    if b.caller_id.is_some() || b.own_did.is_some() {
        sqlx::query("INSERT OR IGNORE INTO user_settings (extension) VALUES (?)").bind(&ext).execute(&mut *tx).await.map_err(StoreError::from)?;
        if let Some(c) = &b.caller_id {
            sqlx::query("UPDATE user_settings SET caller_id = ? WHERE extension = ?").bind(c).bind(&ext).execute(&mut *tx).await.map_err(StoreError::from)?;
        }
        if let Some(d) = &new_own_did {
            sqlx::query("UPDATE user_settings SET own_did = ? WHERE extension = ?").bind(d).bind(&ext).execute(&mut *tx).await.map_err(StoreError::from)?;
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    let after = load(&state, &ext).await?;
    audit::change(&state, &who, "user_changed", &ext, Some(json_of(&before)), Some(json_of(&after))).await;
    state.events.send(Event::change("users", &ext));
    Ok(Json(json_of(&after)))
}

pub async fn remove(State(state): State<ApiState>, who: Admin, Path(ext): Path<String>) -> ApiResult<StatusCode> {
    let before = load_in_scope(&state, &who, &ext, Access::Write).await?;
    state.store.remove_user(&ext).await?;
    audit::change(&state, &who, "user_removed", &ext, Some(json_of(&before)), None).await;
    state.events.send(Event::change("users", &ext));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct Forwarding {
    always: Option<String>,
    busy: Option<String>,
    no_answer: Option<String>,
    no_answer_secs: Option<u32>,
    unregistered: Option<String>,
}

pub async fn set_forwarding(State(state): State<ApiState>, who: Admin, Path(ext): Path<String>, Body(b): Body<Forwarding>) -> ApiResult<Json<Value>> {
    load_in_scope(&state, &who, &ext, Access::Write).await?;
    let before = state.store.user_settings(&ext).await?;
    let dest = |what: &str, v: &Option<String>| -> ApiResult<Option<Dest>> {
        match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => Dest::parse(s).map(Some).map_err(|e| ApiError::invalid(format!("{what}: {e}"))),
        }
    };
    let mut s = before.clone();
    s.fwd_always = dest("always", &b.always)?;
    s.fwd_busy = dest("busy", &b.busy)?;
    s.fwd_no_answer = dest("no_answer", &b.no_answer)?;
    s.fwd_unregistered = dest("unregistered", &b.unregistered)?;
    if let Some(secs) = b.no_answer_secs {
        if !(1..=600).contains(&secs) {
            return Err(ApiError::invalid("no_answer_secs: 1 to 600 seconds"));
        }
        s.fwd_no_answer_secs = secs;
    }
    state.store.set_user_settings(&s).await?;
    audit::change(&state, &who, "forwarding_changed", &ext, Some(forwarding_json(&before)), Some(forwarding_json(&s))).await;
    state.events.send(Event::change("forwarding", &ext));
    Ok(Json(forwarding_json(&s)))
}

async fn set_sip_password(state: &ApiState, ext: &str, password: &str) -> ApiResult<()> {
    let c = StoredCredentials::from_password(ext, &realm(state).await?, password);
    sqlx::query("UPDATE users SET ha1_md5 = ?, ha1_sha256 = ? WHERE extension = ?")
        .bind(&c.ha1_md5)
        .bind(&c.ha1_sha256)
        .bind(ext)
        .execute(state.store.pool())
        .await
        .map_err(StoreError::from)?;
    Ok(())
}

pub async fn reset_sip_password(State(state): State<ApiState>, who: Admin, Path(ext): Path<String>) -> ApiResult<Json<Value>> {
    who.require_right(Right::Devices)?;
    load_in_scope(&state, &who, &ext, Access::Write).await?;
    let password = generate_sip_password();
    set_sip_password(&state, &ext, &password).await?;
    // The secret itself never goes into the log.
    audit::change(&state, &who, "sip_password_reset", &ext, None, None).await;
    Ok(Json(json!({ "extension": ext, "sip_password": password })))
}

/// The app's provisioning link for an extension (shown as a QR code). The
/// SIP password is stored only as digests, so a link that carries one
/// sets a fresh password: POST makes such a link; GET answers one without
/// a password (the person types it).
pub async fn provisioning(State(state): State<ApiState>, who: Admin, Path(ext): Path<String>) -> ApiResult<Json<Value>> {
    who.require_right(Right::Devices)?;
    load_in_scope(&state, &who, &ext, Access::Read).await?;
    Ok(Json(provisioning_json(&state, &ext, None)))
}

pub async fn provisioning_with_password(State(state): State<ApiState>, who: Admin, Path(ext): Path<String>) -> ApiResult<Json<Value>> {
    who.require_right(Right::Devices)?;
    load_in_scope(&state, &who, &ext, Access::Write).await?;
    let password = generate_sip_password();
    set_sip_password(&state, &ext, &password).await?;
    audit::change(&state, &who, "provisioning_issued", &ext, None, None).await;
    Ok(Json(provisioning_json(&state, &ext, Some(&password))))
}

fn provisioning_json(state: &ApiState, ext: &str, password: Option<&str>) -> Value {
    let mut uri = format!("tsunagu://provision?server={}&domain={}&user={ext}", state.settings.sip_server, state.settings.sip_domain);
    if let Some(p) = password {
        uri.push_str("&password=");
        uri.push_str(p);
    }
    json!({ "uri": uri, "server": state.settings.sip_server, "domain": state.settings.sip_domain, "extension": ext, "includes_password": password.is_some() })
}

pub async fn remove_device(State(state): State<ApiState>, who: Admin, Path((ext, device)): Path<(String, String)>) -> ApiResult<StatusCode> {
    who.require_right(Right::Devices)?;
    load_in_scope(&state, &who, &ext, Access::Write).await?;
    let removed = state.registrar.as_ref().is_some_and(|r| r.remove_device(&ext, &device));
    if !removed {
        return Err(ApiError::not_found(format!("extension {ext} has no registered device {device:?}")));
    }
    audit::change(&state, &who, "device_removed", &ext, Some(json!({ "device": device })), None).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
}

/// The import's columns; `extension` is required, the rest optional.
const IMPORT_COLUMNS: [&str; 6] = ["extension", "name", "department", "password", "caller_id", "own_did"];

/// Check every row; answer the users to add, or every bad row.
async fn check_import(state: &ApiState, who: &Admin, bytes: &[u8]) -> ApiResult<Vec<NewUser>> {
    let text = crate::csv::decode(bytes).map_err(|e| ApiError::invalid(e.to_string()))?;
    let rows = crate::csv::parse(&text).map_err(|e| ApiError::rows("the file is not valid CSV", vec![RowError { row: e.line, message: e.message }]))?;
    let Some((_, header)) = rows.first() else { return Err(ApiError::invalid("the file is empty")) };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    if col("extension").is_none() {
        return Err(ApiError::rows("the header row must name an extension column", vec![RowError { row: 1, message: format!("expected the columns {}", IMPORT_COLUMNS.join(",")) }]));
    }
    if let Some(unknown) = header.iter().find(|h| !IMPORT_COLUMNS.contains(&h.as_str())) {
        return Err(ApiError::rows("the header row has an unknown column", vec![RowError { row: 1, message: format!("unknown column {unknown:?}; expected {}", IMPORT_COLUMNS.join(",")) }]));
    }
    let departments: HashMap<String, i64> = sqlx::query("SELECT id, name FROM departments")
        .fetch_all(state.store.pool())
        .await
        .map_err(StoreError::from)?
        .iter()
        .filter_map(|r| Some((r.try_get::<String, _>("name").ok()?, r.try_get::<i64, _>("id").ok()?)))
        .collect();
    let existing: HashSet<String> = state.store.list_users().await?.into_iter().map(|u| u.extension).collect();
    let groups: HashSet<String> = state.store.list_ring_groups().await?.into_iter().map(|g| g.number).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut errors = Vec::new();
    let mut users = Vec::new();
    for (line, fields) in rows.iter().skip(1) {
        let get = |name: &str| col(name).and_then(|i| fields.get(i)).map(|s| s.trim().to_string()).unwrap_or_default();
        let mut problems: Vec<String> = Vec::new();
        if fields.len() != header.len() {
            problems.push(format!("{} fields where the header has {}", fields.len(), header.len()));
        }
        let extension = get("extension");
        if let Err(e) = validate_extension(&extension) {
            problems.push(e.detail());
        } else if let Some(first) = seen.get(&extension) {
            problems.push(format!("extension {extension} is also on row {first}"));
        } else if existing.contains(&extension) {
            problems.push(format!("extension {extension} already exists"));
        } else if groups.contains(&extension) {
            problems.push(format!("{extension} is already a ring group's number"));
        }
        seen.entry(extension.clone()).or_insert(*line);
        let name = get("name");
        if let Err(e) = check_name(&name) {
            problems.push(e);
        }
        let dep_name = get("department");
        let department = if dep_name.is_empty() {
            None
        } else {
            match departments.get(&dep_name) {
                Some(id) => Some(*id),
                None => {
                    problems.push(format!("no department named {dep_name:?}"));
                    None
                }
            }
        };
        if problems.is_empty() && !who.principal.in_department(department) {
            problems.push(format!("department {dep_name:?} is not granted to {}", who.principal.name));
        }
        let password = Some(get("password")).filter(|p| !p.is_empty());
        if let Some(Err(e)) = password.as_deref().map(check_sip_password) {
            problems.push(e);
        }
        let caller_id = Some(get("caller_id")).filter(|c| !c.is_empty());
        if let Some(Err(e)) = caller_id.as_deref().map(check_caller_id) {
            problems.push(e);
        }
        let own_did = match get("own_did") {
            d if d.is_empty() => None,
            d => own_did(&d).map_err(|e| problems.push(e)).ok(),
        };
        if problems.is_empty() {
            users.push(NewUser { extension, name, department, password, caller_id, own_did });
        } else {
            errors.push(RowError { row: *line, message: problems.join("; ") });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::rows(format!("{} of {} rows have problems; nothing was imported", errors.len(), rows.len() - 1), errors));
    }
    if users.is_empty() {
        return Err(ApiError::invalid("the file has a header but no users"));
    }
    Ok(users)
}

/// Add users from CSV: all rows or none. A dry run checks every row and
/// changes nothing.
pub async fn import(State(state): State<ApiState>, who: Admin, Query(q): Query<ImportQuery>, Upload(body): Upload) -> ApiResult<Json<Value>> {
    who.require(Resource::Users, Access::Write)?;
    let users = check_import(&state, &who, &body).await?;
    if q.dry_run {
        return Ok(Json(json!({ "dry_run": true, "would_import": users.len() })));
    }
    let generated = insert_users(&state, &users).await?;
    audit::change(&state, &who, "users_imported", &format!("{} users", users.len()), None, Some(json!({ "extensions": users.iter().map(|u| &u.extension).collect::<Vec<_>>() }))).await;
    state.events.send(Event::change("users", ""));
    let generated: Vec<Value> = generated.into_iter().map(|(e, p)| json!({ "extension": e, "sip_password": p })).collect();
    Ok(Json(json!({ "imported": users.len(), "generated": generated })))
}

pub async fn export(State(state): State<ApiState>, who: Admin) -> ApiResult<Response> {
    who.require(Resource::Users, Access::Read)?;
    let Json(users) = list(State(state), who, Query(ListQuery { department: None, q: None })).await?;
    let mut out = String::from(crate::csv::BOM);
    crate::csv::write_row(&mut out, &["extension", "name", "department", "caller_id", "own_did"]);
    for u in users {
        crate::csv::write_row(&mut out, &[&u.extension, &u.name, u.department_name.as_deref().unwrap_or(""), &u.caller_id, u.own_did.as_deref().unwrap_or("")]);
    }
    Ok(csv_response("users.csv", out))
}
