//! Signing in: password, then a TOTP or recovery code (or enrolment when
//! MFA is mandatory and not set up, or a new password after a one-time
//! one), with lockout after repeated failures. The session is an HttpOnly,
//! SameSite=Strict, Secure cookie; every changing request must also carry
//! the session's CSRF token in `X-CSRF-Token`.

use super::accounts::{self, AdminRow, SessionRow, SessionState};
use super::audit;
use super::rights::{Principal, Role};
use super::{ApiError, ApiResult, ApiState, Body};
use crate::store::SETTING_MFA_REQUIRED_ROLES;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

pub const COOKIE: &str = "tsunagu_session";
const CSRF_HEADER: &str = "x-csrf-token";

/// The address a request came from, for the audit log.
pub fn source_of(parts: &Parts) -> String {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default()
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A session in any state, with its admin: what the sign-in steps use.
pub struct AnySession {
    pub session: SessionRow,
    pub admin: AdminRow,
    pub source: String,
}

impl FromRequestParts<ApiState> for AnySession {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let pool = state.store.pool();
        let token = cookie_token(&parts.headers).ok_or_else(|| ApiError::unauthenticated("not signed in"))?;
        let session = accounts::get_session(pool, &token).await?.ok_or_else(|| ApiError::unauthenticated("not signed in (the session ended)"))?;
        let now = accounts::unix_secs();
        if now - session.last_seen > state.settings.idle_secs || now - session.created_at > state.settings.max_session_secs {
            accounts::delete_session(pool, &session.token_hash).await?;
            return Err(ApiError::unauthenticated("the session expired; please sign in again"));
        }
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if sent != session.csrf {
                return Err(ApiError { code: "csrf", ..ApiError::forbidden("missing or wrong X-CSRF-Token header") });
            }
        }
        let admin = accounts::get_admin(pool, &session.admin).await?.ok_or_else(|| ApiError::unauthenticated("this admin no longer exists"))?;
        // A write per request would be wasteful: the idle clock only needs
        // a resolution well under its length.
        if now - session.last_seen >= 15 {
            accounts::touch_session(pool, &session.token_hash).await?;
        }
        Ok(AnySession { session, admin, source: source_of(parts) })
    }
}

/// A fully signed-in admin: what every API handler but sign-in takes. A
/// browser comes with the session cookie; a script with an API token
/// (`Authorization: Bearer tsu_…`), which needs no CSRF header because no
/// browser sends it by itself.
pub struct Admin {
    pub principal: Principal,
    pub source: String,
    /// The session's token hash (None for an API token): live event
    /// sockets end with their session.
    pub session: Option<String>,
}

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if let Some(token) = bearer_token(&parts.headers) {
            let (admin, id) = super::tokens::admin_of_token(state, &token).await?;
            // The audit log tells a script's changes from a person's.
            return Ok(Admin { principal: admin.principal(), source: format!("{} (API token {id})", source_of(parts)), session: None });
        }
        let s = AnySession::from_request_parts(parts, state).await?;
        match s.session.state {
            SessionState::Ok => Ok(Admin { principal: s.admin.principal(), source: s.source, session: Some(s.session.token_hash) }),
            other => Err(ApiError::unauthenticated(format!("sign-in is not finished (next step: {})", other.as_str()))),
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

/// Whether a session still stands (not signed out, not expired), for
/// connections that outlive the request that opened them.
pub async fn session_alive(state: &ApiState, token_hash: &str) -> bool {
    let row = sqlx::query("SELECT created_at, last_seen FROM admin_sessions WHERE token_hash = ?").bind(token_hash).fetch_optional(state.store.pool()).await;
    match row {
        Ok(Some(r)) => {
            use sqlx::Row;
            let now = accounts::unix_secs();
            let (created, seen): (i64, i64) = (r.try_get("created_at").unwrap_or(0), r.try_get("last_seen").unwrap_or(0));
            now - seen <= state.settings.idle_secs && now - created <= state.settings.max_session_secs
        }
        Ok(None) => false,
        // A database hiccup is not a reason to drop a live view.
        Err(_) => true,
    }
}

impl Admin {
    /// Refuse unless the role allows this access to this kind of resource.
    pub fn require(&self, resource: super::rights::Resource, access: super::rights::Access) -> ApiResult<()> {
        if self.principal.may(resource, access) {
            Ok(())
        } else {
            let verb = if access == super::rights::Access::Read { "see" } else { "change" };
            Err(ApiError::forbidden(format!("the role {} may not {verb} {}", self.principal.role.as_str(), resource_name(resource))))
        }
    }

    pub fn require_right(&self, right: super::rights::Right) -> ApiResult<()> {
        if self.principal.has(right) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this needs the {} right, which has not been granted to {}", right.as_str(), self.principal.name)))
        }
    }
}

fn resource_name(r: super::rights::Resource) -> &'static str {
    use super::rights::Resource::*;
    match r {
        Dashboard => "the dashboard",
        Departments => "departments",
        Users => "users",
        Groups => "ring groups",
        Dids => "public numbers",
        Trunks => "trunks",
        Settings => "PBX settings",
        Phonebook => "the phonebook",
        Calls => "call logs",
        Audit => "the audit log",
        Admins => "admins",
        Recordings => "recordings",
        Events => "live events",
        Schedules => "schedules and disaster mode",
        Ivr => "IVR menus",
    }
}

pub fn admin_json(a: &AdminRow) -> Value {
    json!({
        "name": a.name,
        "role": a.role,
        "rights": a.rights,
        "departments": a.departments,
        "dids": a.dids,
        "mfa": a.totp_secret.is_some(),
        "must_change_password": a.must_change_password,
        "locked": a.locked_until > accounts::unix_secs(),
    })
}

fn answer(state: SessionState, csrf: &str, admin: &AdminRow) -> Value {
    json!({ "state": state.as_str(), "csrf": csrf, "admin": admin_json(admin) })
}

async fn mfa_required(state: &ApiState, role: Role) -> ApiResult<bool> {
    let roles = state.store.setting(SETTING_MFA_REQUIRED_ROLES).await?;
    Ok(roles.split(',').any(|r| r.trim() == role.as_str()))
}

fn set_cookie(token: &str) -> (header::HeaderName, String) {
    (header::SET_COOKIE, format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Secure"))
}

#[derive(Deserialize)]
pub struct SignIn {
    name: String,
    password: String,
}

/// The request's source, for handlers that take no session.
pub struct Source(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(source_of(parts)))
    }
}

/// A failed password or code: count it, log it, and answer 401 or 423.
async fn failed(state: &ApiState, name: &str, source: &str, what: &str) -> ApiError {
    let pool = state.store.pool();
    let locked = accounts::record_failure(pool, name).await.unwrap_or(0);
    audit::record(pool, name, "sign_in_failed", name, None, Some(json!({ "reason": what })), source).await;
    if locked > 0 {
        audit::record(pool, name, "account_locked", name, None, None, source).await;
        ApiError::locked(locked)
    } else {
        ApiError::unauthenticated(what)
    }
}

pub async fn sign_in(State(state): State<ApiState>, Source(source): Source, Body(req): Body<SignIn>) -> ApiResult<Response> {
    let pool = state.store.pool();
    let admin = accounts::get_admin(pool, &req.name).await?;
    if let Some(a) = &admin {
        let left = a.locked_until - accounts::unix_secs();
        if left > 0 {
            audit::record(pool, &a.name, "sign_in_refused_locked", &a.name, None, None, &source).await;
            return Err(ApiError::locked(left));
        }
    }
    if !accounts::verify_password(admin.as_ref().map(|a| a.password_hash.clone()), req.password).await {
        return Err(failed(&state, &req.name, &source, "wrong name or password").await);
    }
    let Some(admin) = admin else { return Err(ApiError::unauthenticated("wrong name or password")) };
    let next = SessionState::next(&admin, mfa_required(&state, admin.role).await?, false);
    let (token, session) = accounts::create_session(pool, &admin.name, next, &source).await?;
    if next == SessionState::Ok {
        accounts::clear_failures(pool, &admin.name).await?;
        audit::record(pool, &admin.name, "sign_in", &admin.name, None, Some(json!({ "mfa": false })), &source).await;
    }
    Ok(([set_cookie(&token)], Json(answer(next, &session.csrf, &admin))).into_response())
}

pub async fn current(s: AnySession) -> Json<Value> {
    Json(answer(s.session.state, &s.session.csrf, &s.admin))
}

pub async fn sign_out(State(state): State<ApiState>, s: AnySession) -> ApiResult<Response> {
    accounts::delete_session(state.store.pool(), &s.session.token_hash).await?;
    audit::record(state.store.pool(), &s.admin.name, "sign_out", &s.admin.name, None, None, &s.source).await;
    Ok(([(header::SET_COOKIE, format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"))], StatusCode::NO_CONTENT).into_response())
}

#[derive(Deserialize)]
pub struct Code {
    code: String,
}

/// The second factor: a TOTP code (each good once) or a recovery code
/// (each good once).
pub async fn totp(State(state): State<ApiState>, s: AnySession, Body(req): Body<Code>) -> ApiResult<Json<Value>> {
    let pool = state.store.pool();
    if s.session.state != SessionState::Mfa {
        return Err(ApiError::conflict(format!("no code is expected now (next step: {})", s.session.state.as_str())));
    }
    let left = s.admin.locked_until - accounts::unix_secs();
    if left > 0 {
        return Err(ApiError::locked(left));
    }
    let secret = s.admin.totp_secret.clone().unwrap_or_default();
    let now = accounts::unix_secs() as u64;
    let method = match accounts::totp_step(&secret, &req.code, now) {
        Some(step) if step > s.admin.totp_last_step => {
            sqlx::query("UPDATE admins SET totp_last_step = ? WHERE name = ?").bind(step).bind(&s.admin.name).execute(pool).await.map_err(crate::store::StoreError::from)?;
            "totp"
        }
        Some(_) => return Err(failed(&state, &s.admin.name, &s.source, "this code was already used; wait for the next one").await),
        None => {
            let hash = accounts::sha256_hex(&req.code.trim().to_lowercase());
            if !s.admin.recovery_codes.contains(&hash) {
                return Err(failed(&state, &s.admin.name, &s.source, "wrong code").await);
            }
            let rest: Vec<&str> = s.admin.recovery_codes.iter().filter(|h| **h != hash).map(String::as_str).collect();
            sqlx::query("UPDATE admins SET recovery_codes = ? WHERE name = ?").bind(rest.join(",")).bind(&s.admin.name).execute(pool).await.map_err(crate::store::StoreError::from)?;
            "recovery_code"
        }
    };
    accounts::clear_failures(pool, &s.admin.name).await?;
    let next = SessionState::next(&s.admin, mfa_required(&state, s.admin.role).await?, true);
    accounts::set_session_state(pool, &s.session.token_hash, next).await?;
    audit::record(pool, &s.admin.name, "sign_in", &s.admin.name, None, Some(json!({ "mfa": method })), &s.source).await;
    Ok(Json(answer(next, &s.session.csrf, &s.admin)))
}

/// Start (or restart) TOTP enrolment: a new secret, confirmed by its first code.
/// Enrolment is open while signing in (step enrol) or, for an admin without
/// TOTP, once signed in. Replacing an enrolled TOTP is not: a stolen session
/// could otherwise take the account over; another admin resets it instead.
fn enrolment_open(s: &AnySession) -> ApiResult<()> {
    match s.session.state {
        SessionState::Enrol => Ok(()),
        SessionState::Ok if s.admin.totp_secret.is_none() => Ok(()),
        SessionState::Ok => Err(ApiError::conflict("TOTP is already set up; to move it to a new phone, ask another admin to reset it (or run tsunagu admin reset-mfa)")),
        other => Err(ApiError::conflict(format!("enrolment is not open now (next step: {})", other.as_str()))),
    }
}

pub async fn enrol_begin(State(state): State<ApiState>, s: AnySession) -> ApiResult<Json<Value>> {
    enrolment_open(&s)?;
    let secret = accounts::new_totp_secret();
    sqlx::query("UPDATE admins SET totp_pending = ? WHERE name = ?").bind(&secret).bind(&s.admin.name).execute(state.store.pool()).await.map_err(crate::store::StoreError::from)?;
    let url = accounts::otpauth_url(&state.settings.totp_issuer, &s.admin.name, &secret);
    Ok(Json(json!({ "secret": secret, "otpauth_url": url })))
}

pub async fn enrol_confirm(State(state): State<ApiState>, s: AnySession, Body(req): Body<Code>) -> ApiResult<Json<Value>> {
    let pool = state.store.pool();
    enrolment_open(&s)?;
    let Some(pending) = s.admin.totp_pending.clone() else {
        return Err(ApiError::conflict("start enrolment first (POST /api/v1/me/totp)"));
    };
    let Some(step) = accounts::totp_step(&pending, &req.code, accounts::unix_secs() as u64) else {
        return Err(failed(&state, &s.admin.name, &s.source, "wrong code: check the authenticator app's clock and try the next code").await);
    };
    let (codes, hashes) = accounts::new_recovery_codes();
    sqlx::query("UPDATE admins SET totp_secret = ?, totp_pending = NULL, totp_last_step = ?, recovery_codes = ? WHERE name = ?")
        .bind(&pending)
        .bind(step)
        .bind(hashes.join(","))
        .bind(&s.admin.name)
        .execute(pool)
        .await
        .map_err(crate::store::StoreError::from)?;
    let admin = accounts::get_admin(pool, &s.admin.name).await?.ok_or_else(|| ApiError::unauthenticated("this admin no longer exists"))?;
    let next = SessionState::next(&admin, mfa_required(&state, admin.role).await?, true);
    accounts::set_session_state(pool, &s.session.token_hash, next).await?;
    accounts::clear_failures(pool, &admin.name).await?;
    audit::record(pool, &admin.name, "mfa_enrolled", &admin.name, None, None, &s.source).await;
    let mut a = answer(next, &s.session.csrf, &admin);
    a["recovery_codes"] = json!(codes);
    Ok(Json(a))
}

#[derive(Deserialize)]
pub struct PasswordChange {
    current: String,
    new: String,
}

pub async fn change_password(State(state): State<ApiState>, s: AnySession, Body(req): Body<PasswordChange>) -> ApiResult<Json<Value>> {
    let pool = state.store.pool();
    if !matches!(s.session.state, SessionState::Password | SessionState::Ok) {
        return Err(ApiError::conflict(format!("finish signing in first (next step: {})", s.session.state.as_str())));
    }
    if !accounts::verify_password(Some(s.admin.password_hash.clone()), req.current.clone()).await {
        return Err(failed(&state, &s.admin.name, &s.source, "the current password is wrong").await);
    }
    accounts::check_new_password(&req.new)?;
    if req.new == req.current {
        return Err(ApiError::invalid("the new password must differ from the current one"));
    }
    let hash = accounts::hash_password(req.new).await?;
    sqlx::query("UPDATE admins SET password_hash = ?, must_change_password = 0 WHERE name = ?").bind(hash).bind(&s.admin.name).execute(pool).await.map_err(crate::store::StoreError::from)?;
    // Other sessions signed in with the old password end here.
    sqlx::query("DELETE FROM admin_sessions WHERE admin = ? AND token_hash != ?").bind(&s.admin.name).bind(&s.session.token_hash).execute(pool).await.map_err(crate::store::StoreError::from)?;
    let admin = accounts::get_admin(pool, &s.admin.name).await?.ok_or_else(|| ApiError::unauthenticated("this admin no longer exists"))?;
    let next = SessionState::next(&admin, mfa_required(&state, admin.role).await?, true);
    accounts::set_session_state(pool, &s.session.token_hash, next).await?;
    audit::record(pool, &admin.name, "password_changed", &admin.name, None, None, &s.source).await;
    Ok(Json(answer(next, &s.session.csrf, &admin)))
}
