//! Business-hour schedules and disaster mode. Each schedule's answer says
//! where a call would go right now, so admins see the effect at once.

use super::events::Event;
use super::rights::{Access, Resource};
use super::session::Admin;
use super::{audit, ApiError, ApiResult, ApiState, Body};
use crate::schedule::{self, Schedule, Why};
use crate::store::{Dest, SETTING_DISASTER_MODE};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

fn why_text(w: &Why) -> String {
    match w {
        Why::Open => "open".into(),
        Why::Closed => "closed".into(),
        Why::Holiday(name) => format!("holiday:{name}"),
        Why::ClosedDay => "closed_day".into(),
        Why::Disaster => "disaster".into(),
        Why::Override { open: true } => "override_open".into(),
        Why::Override { open: false } => "override_closed".into(),
    }
}

fn schedule_json(s: &Schedule, disaster: bool) -> Value {
    let (to, why) = s.route_at(crate::store::unix_ms() / 1000, disaster);
    // (The setting `schedule_clock` applies to calls; "now" here is now.)
    json!({
        "name": s.name, "label": s.label, "hours": schedule::hours_text(&s.hours),
        "open": s.open.to_string(), "closed": s.closed.to_string(),
        "holiday": s.holiday.as_ref().map(Dest::to_string), "disaster": s.disaster.as_ref().map(Dest::to_string),
        "closed_days": schedule::closed_days_text(&s.closed_days), "use_holidays": s.use_holidays,
        "overrides": schedule::overrides_text(&s.overrides),
        "now": { "to": to.to_string(), "why": why_text(&why) },
    })
}

async fn disaster_on(state: &ApiState) -> ApiResult<bool> {
    Ok(state.store.setting(SETTING_DISASTER_MODE).await? == "on")
}

pub async fn list(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require(Resource::Schedules, Access::Read)?;
    let disaster = disaster_on(&state).await?;
    Ok(Json(state.store.list_schedules().await?.iter().map(|s| schedule_json(s, disaster)).collect()))
}

#[derive(Deserialize)]
pub struct ScheduleBody {
    #[serde(default)]
    label: String,
    hours: String,
    open: String,
    closed: String,
    holiday: Option<String>,
    disaster: Option<String>,
    #[serde(default)]
    closed_days: String,
    #[serde(default = "yes")]
    use_holidays: bool,
    /// Left out: the schedule keeps the one-off dates it has (a client
    /// that does not know the field must not wipe them).
    overrides: Option<String>,
}

fn yes() -> bool {
    true
}

fn dest(field: &str, v: &str) -> ApiResult<Dest> {
    Dest::parse(v).map_err(|e| ApiError::invalid(format!("{field}: {}", e.detail())))
}

fn opt_dest(field: &str, v: &Option<String>) -> ApiResult<Option<Dest>> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(|s| dest(field, s)).transpose()
}

pub async fn put(State(state): State<ApiState>, who: Admin, Path(name): Path<String>, Body(b): Body<ScheduleBody>) -> ApiResult<Json<Value>> {
    who.require(Resource::Schedules, Access::Write)?;
    schedule::check_name(&name)?;
    if b.label.chars().count() > 100 {
        return Err(ApiError::invalid("the label is longer than 100 characters"));
    }
    let s = Schedule {
        name: name.clone(),
        label: b.label,
        hours: schedule::parse_hours(&b.hours).map_err(ApiError::invalid)?,
        open: dest("open", &b.open)?,
        closed: dest("closed", &b.closed)?,
        holiday: opt_dest("holiday", &b.holiday)?,
        disaster: opt_dest("disaster", &b.disaster)?,
        closed_days: schedule::parse_closed_days(&b.closed_days).map_err(ApiError::invalid)?,
        use_holidays: b.use_holidays,
        overrides: Vec::new(),
    };
    let mut s = s;
    s.overrides = match &b.overrides {
        Some(text) => schedule::parse_overrides(text).map_err(ApiError::invalid)?,
        None => state.store.schedule(&name).await?.map(|old| old.overrides).unwrap_or_default(),
    };
    let disaster = disaster_on(&state).await?;
    let before = state.store.schedule(&name).await?.map(|o| schedule_json(&o, disaster));
    state.store.put_schedule(&s).await?;
    let after = schedule_json(&s, disaster);
    audit::change(&state, &who, if before.is_some() { "schedule_changed" } else { "schedule_added" }, &name, before, Some(after.clone())).await;
    state.events.send(Event::change("schedules", &name));
    Ok(Json(after))
}

pub async fn remove(State(state): State<ApiState>, who: Admin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    who.require(Resource::Schedules, Access::Write)?;
    let disaster = disaster_on(&state).await?;
    let before = state.store.schedule(&name).await?.map(|o| schedule_json(&o, disaster));
    state.store.remove_schedule(&name).await?;
    audit::change(&state, &who, "schedule_removed", &name, before, None).await;
    state.events.send(Event::change("schedules", &name));
    Ok(StatusCode::NO_CONTENT)
}

pub async fn disaster(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Value>> {
    who.require(Resource::Schedules, Access::Read)?;
    Ok(Json(json!({ "on": disaster_on(&state).await? })))
}

#[derive(Deserialize)]
pub struct DisasterBody {
    on: bool,
}

/// Disaster mode: every schedule with a disaster destination sends its
/// calls there until it is turned off. Organisation-wide, so system and
/// organisation admins only.
pub async fn set_disaster(State(state): State<ApiState>, who: Admin, Body(b): Body<DisasterBody>) -> ApiResult<Json<Value>> {
    who.require(Resource::Schedules, Access::Write)?;
    let before = disaster_on(&state).await?;
    state.store.set_setting(SETTING_DISASTER_MODE, if b.on { "on" } else { "off" }).await?;
    audit::change(&state, &who, "disaster_mode", "", Some(json!({ "on": before })), Some(json!({ "on": b.on }))).await;
    state.events.send(Event::change("disaster", if b.on { "on" } else { "off" }));
    Ok(Json(json!({ "on": b.on })))
}

/// The public holidays of a year as the schedules see them (what
/// `tsunagu holidays YEAR` prints).
pub async fn holidays(who: Admin, Path(year): Path<i32>) -> ApiResult<Json<Vec<Value>>> {
    who.require(Resource::Schedules, Access::Read)?;
    let list = crate::holidays::holidays(year).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Json(list.iter().map(|h| json!({ "date": h.date.to_string(), "name_ja": h.name_ja, "name_en": h.name_en })).collect()))
}
