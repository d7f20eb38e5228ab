//! Announcements and hold music: list, speak from text (espeak-ng), upload
//! a recording (WAV, MP3, Ogg Opus; stored as 8 kHz WAV), download, remove.
//! They are organisation-wide like schedules, so the same rights apply:
//! system and organisation admins change them; every admin who reads the
//! PBX configuration lists them. A bad upload is refused (422, naming the
//! problem) before anything stored is touched.

use super::events::Event;
use super::rights::{Access, Resource};
use super::session::Admin;
use super::{audit, ApiError, ApiResult, ApiState, Body, Upload};
use crate::announce::{self, AnnounceError};
use crate::store::{check_media_name, Announcement, AnnouncementSource};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

impl From<AnnounceError> for ApiError {
    fn from(e: AnnounceError) -> Self {
        match e {
            AnnounceError::Audio(m) => ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "unreadable_audio", ..ApiError::invalid(m) },
            AnnounceError::Speech(m) if m.contains("not installed") => ApiError { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", ..ApiError::invalid(m) },
            AnnounceError::Speech(m) => ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "speech", ..ApiError::invalid(m) },
            AnnounceError::Invalid(m) => ApiError::invalid(m),
            AnnounceError::InUse(m) => ApiError::conflict(m),
            AnnounceError::Store(e) => e.into(),
            AnnounceError::Io(m) => {
                tracing::error!(error = %m, "announcement storage");
                ApiError::internal("the audio could not be stored; nothing was changed")
            }
        }
    }
}

fn data_dir(state: &ApiState) -> std::path::PathBuf {
    state.settings.data_dir.clone()
}

fn announcement_json(a: &Announcement) -> Value {
    json!({
        "name": a.name, "label": a.label, "source": a.source.as_str(), "text": a.text, "voice": a.voice,
        "seconds": (a.samples as f64 / f64::from(announce::RATE) * 10.0).round() / 10.0,
        "version": a.version, "updated_at": a.updated_at, "builtin": announce::builtin(&a.name).is_some(),
    })
}

fn check_name(name: &str) -> ApiResult<()> {
    check_media_name("announcement", name).map_err(ApiError::from)
}

pub async fn list(State(state): State<ApiState>, who: Admin) -> ApiResult<Json<Vec<Value>>> {
    who.require(Resource::Schedules, Access::Read)?;
    let mut out = Vec::new();
    for a in state.store.list_announcements().await? {
        let mut v = announcement_json(&a);
        v["used_by"] = json!(state.store.announcement_users(&a.name).await?);
        out.push(v);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct SpeakBody {
    label: Option<String>,
    text: Option<String>,
    voice: Option<String>,
}

/// Speak `text` with espeak-ng into announcement `name` (added or
/// replaced). Without `text`, only the label changes.
pub async fn put(State(state): State<ApiState>, who: Admin, Path(name): Path<String>, Body(b): Body<SpeakBody>) -> ApiResult<Json<Value>> {
    who.require(Resource::Schedules, Access::Write)?;
    check_name(&name)?;
    let before = state.store.announcement(&name).await?;
    let label = b.label.clone().or_else(|| before.as_ref().map(|a| a.label.clone())).unwrap_or_default();
    announce::check_label(&label)?;
    let after = match b.text.as_deref() {
        None => {
            if before.is_none() {
                return Err(ApiError::invalid("text: what to say (a new announcement needs text or an uploaded recording)"));
            }
            state.store.set_announcement_label(&name, &label).await?;
            state.store.announcement(&name).await?.ok_or_else(|| ApiError::not_found(format!("no such announcement {name}")))?
        }
        Some(text) => {
            let voice = b.voice.clone().unwrap_or_else(|| announce::DEFAULT_VOICE.to_string());
            let audio = announce::speak(text, &voice).await?;
            let a = Announcement::new(&name, &label, AnnouncementSource::Tts, Some(text.to_string()), Some(voice));
            announce::save(&state.store, &data_dir(&state), a, &audio).await?
        }
    };
    let after_json = announcement_json(&after);
    audit::change(&state, &who, if before.is_some() { "announcement_changed" } else { "announcement_added" }, &name, before.as_ref().map(announcement_json), Some(after_json.clone())).await;
    state.events.send(Event::change("announcements", &name));
    Ok(Json(after_json))
}

#[derive(Deserialize)]
pub struct UploadQuery {
    label: Option<String>,
}

/// A recording in any supported format as the raw request body.
pub async fn upload(State(state): State<ApiState>, who: Admin, Path(name): Path<String>, Query(q): Query<UploadQuery>, Upload(body): Upload) -> ApiResult<Json<Value>> {
    who.require(Resource::Schedules, Access::Write)?;
    check_name(&name)?;
    let before = state.store.announcement(&name).await?;
    let label = q.label.or_else(|| before.as_ref().map(|a| a.label.clone())).unwrap_or_default();
    announce::check_label(&label)?;
    // Decoding and resampling a long file takes a while: off the async threads.
    let audio = tokio::task::spawn_blocking(move || announce::normalise(&body)).await.map_err(|e| ApiError::internal(format!("decoding stopped: {e}")))??;
    let a = Announcement::new(&name, &label, AnnouncementSource::Upload, None, None);
    let after = announce::save(&state.store, &data_dir(&state), a, &audio).await?;
    let after_json = announcement_json(&after);
    audit::change(&state, &who, if before.is_some() { "announcement_changed" } else { "announcement_added" }, &name, before.as_ref().map(announcement_json), Some(after_json.clone())).await;
    state.events.send(Event::change("announcements", &name));
    Ok(Json(after_json))
}

/// The stored audio: 8 kHz mono 16-bit WAV.
pub async fn audio(State(state): State<ApiState>, who: Admin, Path(name): Path<String>) -> ApiResult<Response> {
    who.require(Resource::Schedules, Access::Read)?;
    check_name(&name)?;
    if state.store.announcement(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("no such announcement {name}")));
    }
    let bytes = announce::read_audio(&data_dir(&state), &name).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "audio/wav".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.wav\"")),
        ],
        bytes,
    )
        .into_response())
}

/// Remove an announcement nothing uses (409 naming who does). A built-in
/// one goes back to its default instead (200 with the default).
pub async fn remove(State(state): State<ApiState>, who: Admin, Path(name): Path<String>) -> ApiResult<Response> {
    who.require(Resource::Schedules, Access::Write)?;
    check_name(&name)?;
    let before = state.store.announcement(&name).await?;
    let restored = announce::remove(&state.store, &data_dir(&state), &name).await?;
    state.events.send(Event::change("announcements", &name));
    match restored {
        Some(a) => {
            let after = announcement_json(&a);
            audit::change(&state, &who, "announcement_restored", &name, before.as_ref().map(announcement_json), Some(after.clone())).await;
            Ok(Json(after).into_response())
        }
        None => {
            audit::change(&state, &who, "announcement_removed", &name, before.as_ref().map(announcement_json), None).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}
