//! API tokens for scripts (a nightly CSV sync, monitoring): made by a
//! signed-in admin (so after MFA), shown once, acting with that admin's
//! rights until they expire or are revoked. Only a hash is stored.

use super::accounts::{self, sha256_hex, AdminRow};
use super::session::Admin;
use super::{audit, ApiError, ApiResult, ApiState, Body};
use crate::store::StoreError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

/// Tokens start with this, so a leaked one is easy to recognise (and to
/// search for in logs and repositories).
const PREFIX: &str = "tsu_";
const MAX_DAYS: i64 = 366;
/// `last_used_at` is updated at most this often.
const USE_RESOLUTION_SECS: i64 = 60;

/// The admin an API token acts for, and the token's id, if it is valid.
pub async fn admin_of_token(state: &ApiState, token: &str) -> ApiResult<(AdminRow, i64)> {
    let pool = state.store.pool();
    let invalid = || ApiError::unauthenticated("the API token is not valid (revoked, expired or mistyped)");
    if !token.starts_with(PREFIX) || token.len() > 100 {
        return Err(invalid());
    }
    let row = sqlx::query("SELECT id, admin, expires_at, last_used_at FROM api_tokens WHERE token_hash = ?").bind(sha256_hex(token)).fetch_optional(pool).await.map_err(StoreError::from)?;
    let row = row.ok_or_else(invalid)?;
    let now = accounts::unix_secs();
    let (id, expires, used): (i64, i64, i64) = (row.try_get("id").map_err(StoreError::from)?, row.try_get("expires_at").map_err(StoreError::from)?, row.try_get("last_used_at").map_err(StoreError::from)?);
    if expires <= now {
        return Err(invalid());
    }
    if now - used >= USE_RESOLUTION_SECS {
        sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?").bind(now).bind(id).execute(pool).await.map_err(StoreError::from)?;
    }
    let name: String = row.try_get("admin").map_err(StoreError::from)?;
    Ok((accounts::get_admin(pool, &name).await?.ok_or_else(invalid)?, id))
}

pub async fn list(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    let rows = sqlx::query("SELECT id, label, created_at, last_used_at, expires_at FROM api_tokens WHERE admin = ? ORDER BY id")
        .bind(&who.principal.name)
        .fetch_all(state.store.pool())
        .await
        .map_err(StoreError::from)?;
    let mut out = Vec::new();
    for r in rows {
        let get = |c: &str| r.try_get::<i64, _>(c).map_err(StoreError::from);
        out.push(json!({ "id": get("id")?, "label": r.try_get::<String, _>("label").map_err(StoreError::from)?,
                          "created_at": get("created_at")?, "last_used_at": get("last_used_at")?, "expires_at": get("expires_at")? }));
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct NewToken {
    #[serde(default)]
    label: String,
    /// Lifetime in days (default 90, at most 366).
    days: Option<i64>,
}

/// Only from a browser session (password and TOTP just proven): a token
/// cannot make more tokens.
pub async fn create(State(state): State<ApiState>, who: Admin, Body(b): Body<NewToken>) -> ApiResult<(StatusCode, Json<Value>)> {
    if who.session.is_none() {
        return Err(ApiError::forbidden("API tokens are made from a signed-in session, not with another token"));
    }
    let days = b.days.unwrap_or(90);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::invalid(format!("days: 1 to {MAX_DAYS}")));
    }
    if b.label.chars().count() > 100 || b.label.chars().any(char::is_control) {
        return Err(ApiError::invalid("the label has at most 100 characters, no control characters"));
    }
    let token = format!("{PREFIX}{}", hex::encode(rand::random::<[u8; 20]>()));
    let now = accounts::unix_secs();
    let expires = now + days * 86_400;
    let id: i64 = sqlx::query("INSERT INTO api_tokens (token_hash, admin, label, created_at, expires_at) VALUES (?, ?, ?, ?, ?) RETURNING id")
        .bind(sha256_hex(&token))
        .bind(&who.principal.name)
        .bind(&b.label)
        .bind(now)
        .bind(expires)
        .fetch_one(state.store.pool())
        .await
        .map_err(StoreError::from)?
        .try_get("id")
        .map_err(StoreError::from)?;
    audit::change(&state, &who, "api_token_created", &id.to_string(), None, Some(json!({ "label": b.label, "expires_at": expires }))).await;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "label": b.label, "expires_at": expires, "token": token }))))
}

pub async fn revoke(State(state): State<ApiState>, who: Admin, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let r = sqlx::query("DELETE FROM api_tokens WHERE id = ? AND admin = ?").bind(id).bind(&who.principal.name).execute(state.store.pool()).await.map_err(StoreError::from)?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("{} has no API token {id}", who.principal.name)));
    }
    audit::change(&state, &who, "api_token_revoked", &id.to_string(), None, None).await;
    Ok(StatusCode::NO_CONTENT)
}
