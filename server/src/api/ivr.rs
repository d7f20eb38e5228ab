//! IVR menus over the API: list, read, add or replace (a menu with all its
//! options, all or nothing), remove. A call reads a menu each time it
//! enters it, so a saved menu is live at once. A loop of sub-menus is
//! answered 422 with the loop named; a menu still in use is not removed
//! (409, naming what uses it).

use super::events::Event;
use super::rights::{Access, Resource};
use super::session::Admin;
use super::{audit, ApiError, ApiResult, ApiState, Body};
use crate::ivr::{self, IvrAction, IvrMenu, LinkProblem};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// A menu as the API and the audit log show it (the same fields a PUT
/// takes, and its name).
pub fn menu_json(m: &IvrMenu) -> Value {
    let options: Map<String, Value> = m.options.iter().map(|(k, a)| (k.clone(), Value::String(a.to_string()))).collect();
    json!({
        "name": m.name, "label": m.label, "greeting": m.greeting, "prompt": m.prompt,
        "invalid_prompt": m.invalid_prompt, "timeout_prompt": m.timeout_prompt,
        "first_digit_ms": m.first_digit.as_millis() as u64, "inter_digit_ms": m.inter_digit.as_millis() as u64,
        "max_repeats": m.max_repeats, "on_failure": m.on_failure.to_string(), "direct_dial": m.direct_dial,
        "options": options,
    })
}

pub async fn list(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require(Resource::Ivr, Access::Read)?;
    Ok(Json(state.store.list_ivr_menus().await?.iter().map(menu_json).collect()))
}

pub async fn get_one(State(state): State<ApiState>, who: Admin, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    who.require(Resource::Ivr, Access::Read)?;
    let m = state.store.ivr_menu(&name).await?.ok_or_else(|| ApiError::not_found(format!("no such IVR menu {name}")))?;
    Ok(Json(menu_json(&m)))
}

/// Unknown fields are ignored, so what a GET answered (with `name`) can be
/// sent back as it is.
#[derive(Deserialize)]
pub struct IvrBody {
    #[serde(default)]
    label: String,
    greeting: Option<String>,
    prompt: String,
    invalid_prompt: Option<String>,
    timeout_prompt: Option<String>,
    first_digit_ms: Option<u64>,
    inter_digit_ms: Option<u64>,
    max_repeats: Option<u32>,
    on_failure: Option<String>,
    #[serde(default)]
    direct_dial: bool,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

/// An optional text field: absent, null or blank means "not given".
fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn action(field: &str, v: &str) -> ApiResult<IvrAction> {
    IvrAction::parse(v).map_err(|e| ApiError::invalid(format!("{field}: {}", e.detail())))
}

/// The menu a body describes (defaults as the database columns have).
fn menu_of(name: &str, b: IvrBody) -> ApiResult<IvrMenu> {
    let mut m = IvrMenu::new(name, b.prompt.trim());
    m.label = b.label;
    m.greeting = given(b.greeting);
    if let Some(p) = given(b.invalid_prompt) {
        m.invalid_prompt = p;
    }
    if let Some(p) = given(b.timeout_prompt) {
        m.timeout_prompt = p;
    }
    if let Some(ms) = b.first_digit_ms {
        m.first_digit = Duration::from_millis(ms);
    }
    if let Some(ms) = b.inter_digit_ms {
        m.inter_digit = Duration::from_millis(ms);
    }
    if let Some(n) = b.max_repeats {
        m.max_repeats = n;
    }
    if let Some(f) = given(b.on_failure) {
        m.on_failure = action("on_failure", &f)?;
    }
    m.direct_dial = b.direct_dial;
    for (keys, a) in &b.options {
        ivr::check_keys(keys)?;
        m.options.insert(keys.clone(), action(&format!("option {keys}"), a)?);
    }
    Ok(m)
}

/// Add or replace a menu with all its options. Answers the menu as
/// stored, with `missing_announcements`: prompts it names that are not
/// recorded yet (allowed, so a menu can be built first; a call skips them).
pub async fn put(State(state): State<ApiState>, who: Admin, Path(name): Path<String>, Body(b): Body<IvrBody>) -> ApiResult<Json<Value>> {
    who.require(Resource::Ivr, Access::Write)?;
    let m = menu_of(&name, b)?;
    m.check()?;
    // Checked here first so a loop gets its own status; the store checks
    // again inside its transaction (another admin may save meanwhile).
    match state.store.check_ivr_links(&m).await? {
        Ok(()) => {}
        Err(p @ LinkProblem::Loop(_)) => {
            return Err(ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "loop", ..ApiError::invalid(p.message()) });
        }
        Err(p) => return Err(ApiError::invalid(p.message())),
    }
    let before = state.store.ivr_menu(&name).await?.map(|o| menu_json(&o));
    state.store.put_ivr_menu(&m).await?;
    let after = menu_json(&m);
    audit::change(&state, &who, if before.is_some() { "ivr_changed" } else { "ivr_added" }, &name, before, Some(after.clone())).await;
    state.events.send(Event::change("ivr", &name));
    let mut answer = after;
    answer["missing_announcements"] = json!(state.store.ivr_missing_announcements(&m).await?);
    Ok(Json(answer))
}

pub async fn remove(State(state): State<ApiState>, who: Admin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    who.require(Resource::Ivr, Access::Write)?;
    let Some(before) = state.store.ivr_menu(&name).await? else { return Err(ApiError::not_found(format!("no such IVR menu {name}"))) };
    let used = state.store.ivr_menu_users(&name).await?;
    if !used.is_empty() {
        return Err(ApiError::conflict(format!("IVR menu {name} is still used by {}; change those first", used.join(", "))));
    }
    state.store.remove_ivr_menu(&name).await?;
    audit::change(&state, &who, "ivr_removed", &name, Some(menu_json(&before)), None).await;
    state.events.send(Event::change("ivr", &name));
    Ok(StatusCode::NO_CONTENT)
}
