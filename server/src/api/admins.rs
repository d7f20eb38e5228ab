//! Admins and their roles, rights and grants. A system admin manages
//! everyone; an organisation admin manages lower ranks and grants no
//! rights; nobody changes their own account here (a second admin must).

use super::accounts::{self, AdminSpec};
use super::audit;
use super::rights::{Access, Resource, Right, Role};
use super::session::{admin_json, Admin};
use super::{ApiError, ApiResult, ApiState, Body};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct AdminBody {
    name: Option<String>,
    role: String,
    #[serde(default)]
    rights: Vec<String>,
    #[serde(default)]
    departments: Vec<i64>,
    #[serde(default)]
    dids: Vec<String>,
}

fn spec_of(name: String, b: AdminBody) -> ApiResult<AdminSpec> {
    let role = Role::parse(&b.role).ok_or_else(|| ApiError::invalid(format!("role {:?}: expected one of system, org, group, auditor, supervisor, readonly", b.role)))?;
    let rights = b
        .rights
        .iter()
        .map(|r| Right::parse(r).ok_or_else(|| ApiError::invalid(format!("right {r:?}: expected recordings or devices"))))
        .collect::<ApiResult<Vec<_>>>()?;
    if role != Role::Group && (!b.departments.is_empty() || !b.dids.is_empty()) {
        return Err(ApiError::invalid("departments and numbers are granted to group admins only; other roles see the whole organisation or none of it"));
    }
    Ok(AdminSpec { name, role, rights, departments: b.departments, dids: b.dids })
}

async fn load(state: &ApiState, name: &str) -> ApiResult<accounts::AdminRow> {
    accounts::get_admin(state.store.pool(), name).await?.ok_or_else(|| ApiError::not_found(format!("no such admin {name}")))
}

fn check_manage(who: &Admin, name: &str, role: Role, rights: &[Right]) -> ApiResult<()> {
    if who.principal.may_manage_admin(name, role, rights) {
        Ok(())
    } else if name == who.principal.name {
        Err(ApiError::forbidden("admins cannot change their own role, rights or account here; ask another admin"))
    } else {
        Err(ApiError::forbidden(format!("the role {} may not manage a {} admin{}", who.principal.role.as_str(), role.as_str(), if rights.is_empty() { "" } else { " or grant rights" })))
    }
}

pub async fn list(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require(Resource::Admins, Access::Read)?;
    let out = accounts::list_admins(state.store.pool()).await?.iter().map(admin_json).collect();
    Ok(Json(out))
}

pub async fn add(State(state): State<ApiState>, who: Admin, Body(b): Body<AdminBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = b.name.clone().unwrap_or_default();
    let spec = spec_of(name.clone(), b)?;
    check_manage(&who, &name, spec.role, &spec.rights)?;
    let password = accounts::create_admin(state.store.pool(), &spec).await?;
    let a = load(&state, &name).await?;
    audit::change(&state, &who, "admin_added", &name, None, Some(admin_json(&a))).await;
    let mut body = admin_json(&a);
    body["one_time_password"] = json!(password);
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn update(State(state): State<ApiState>, who: Admin, Path(name): Path<String>, Body(b): Body<AdminBody>) -> ApiResult<Json<Value>> {
    let before = load(&state, &name).await?;
    let spec = spec_of(name.clone(), b)?;
    // Both what the admin was and what it becomes must be within reach.
    check_manage(&who, &name, before.role, &before.rights)?;
    check_manage(&who, &name, spec.role, &spec.rights)?;
    accounts::update_admin(state.store.pool(), &spec).await?;
    let after = load(&state, &name).await?;
    audit::change(&state, &who, "admin_changed", &name, Some(admin_json(&before)), Some(admin_json(&after))).await;
    Ok(Json(admin_json(&after)))
}

pub async fn remove(State(state): State<ApiState>, who: Admin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let before = load(&state, &name).await?;
    check_manage(&who, &name, before.role, &before.rights)?;
    sqlx::query("DELETE FROM admins WHERE name = ?").bind(&name).execute(state.store.pool()).await.map_err(crate::store::StoreError::from)?;
    audit::change(&state, &who, "admin_removed", &name, Some(admin_json(&before)), None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// For a lost phone: the admin enrols again at next sign-in.
pub async fn reset_mfa(State(state): State<ApiState>, who: Admin, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let before = load(&state, &name).await?;
    check_manage(&who, &name, before.role, &before.rights)?;
    accounts::reset_mfa(state.store.pool(), &name).await?;
    audit::change(&state, &who, "admin_mfa_reset", &name, None, None).await;
    Ok(Json(admin_json(&load(&state, &name).await?)))
}

pub async fn unlock(State(state): State<ApiState>, who: Admin, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let before = load(&state, &name).await?;
    check_manage(&who, &name, before.role, &before.rights)?;
    accounts::clear_failures(state.store.pool(), &name).await?;
    audit::change(&state, &who, "admin_unlocked", &name, None, None).await;
    Ok(Json(admin_json(&load(&state, &name).await?)))
}

/// A forgotten password: a new one-time password, shown once to the admin
/// who reset it; the account is unlocked and its sessions end.
pub async fn reset_password(State(state): State<ApiState>, who: Admin, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let before = load(&state, &name).await?;
    check_manage(&who, &name, before.role, &before.rights)?;
    let password = accounts::reset_password(state.store.pool(), &name).await?;
    audit::change(&state, &who, "admin_password_reset", &name, None, None).await;
    let mut body = admin_json(&load(&state, &name).await?);
    body["one_time_password"] = json!(password);
    Ok(Json(body))
}
