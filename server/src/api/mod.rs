//! The admin API (REST under /api/v1, live events over a WebSocket) and the
//! web app's files. Every handler takes a signed-in [`session::Admin`],
//! checks its role and scope with [`rights`], changes the store in one
//! transaction, writes the audit log, and announces the change; the
//! running PBX reads the store at each call and reloads users at once, so
//! what is saved is live.

pub mod accounts;
pub mod admins;
pub mod announcements;
pub mod audit;
pub mod directory;
pub mod events;
pub mod ivr;
pub mod logs;
pub mod openapi;
pub mod pbx;
pub mod rights;
pub mod schedules;
pub mod session;
pub mod tokens;
pub mod users;
mod web;

use crate::phonebook::Phonebook;
use crate::registrar::Registrar;
use crate::store::{SqliteStore, StoreError};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// What every handler reaches.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<SqliteStore>,
    /// The running registrar (registered devices); None for a store-only
    /// API (tests, tools).
    pub registrar: Option<Arc<Registrar>>,
    pub events: events::EventBus,
    pub phonebook: Arc<Phonebook>,
    pub settings: Arc<ApiSettings>,
    /// Where call recordings are kept (None: a store-only API).
    pub objects: Option<Arc<dyn object_store::ObjectStore>>,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// A session unused this long is over.
    pub idle_secs: i64,
    /// A session is over this long after sign-in, used or not.
    pub max_session_secs: i64,
    /// The web app's built files (index.html, assets/).
    pub web_dir: Option<PathBuf>,
    /// The SIP domain and address phones are given when provisioned.
    pub sip_domain: String,
    pub sip_server: String,
    /// Shown in authenticator apps next to the admin's name.
    pub totp_issuer: String,
    /// The data directory (announcement audio lives under it).
    pub data_dir: PathBuf,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            idle_secs: 30 * 60,
            max_session_secs: 12 * 3600,
            web_dir: None,
            sip_domain: "tsunagu.local".into(),
            sip_server: "127.0.0.1:5060".into(),
            totp_issuer: "Tsunagu".into(),
            data_dir: PathBuf::from("."),
        }
    }
}

/// One bad row of a CSV import.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RowError {
    pub row: usize,
    pub message: String,
}

/// Every error the API answers: a status, a stable code and a message
/// that names the problem.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub rows: Vec<RowError>,
    pub retry_after_secs: Option<i64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), rows: Vec::new(), retry_after_secs: None }
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", m)
    }
    pub fn unauthenticated(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn duplicate(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "duplicate", m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", m)
    }
    pub fn rows(m: impl Into<String>, rows: Vec<RowError>) -> Self {
        Self { rows, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "rows", m) }
    }
    pub fn locked(secs: i64) -> Self {
        Self {
            retry_after_secs: Some(secs),
            ..Self::new(StatusCode::LOCKED, "locked", format!("too many failed sign-ins: this account is locked for {} more minutes", (secs + 59) / 60))
        }
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(ext) => ApiError::duplicate(format!("extension {ext} already exists")),
            StoreError::NotFound(what) => ApiError::not_found(format!("no such {what}")),
            StoreError::Invalid(m) => ApiError::invalid(m),
            e => {
                tracing::error!(error = %e, "store error in the API");
                ApiError::internal("the database could not do this; nothing was changed")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message, "code": self.code });
        if !self.rows.is_empty() {
            body["rows"] = serde_json::to_value(&self.rows).unwrap_or_default();
        }
        if let Some(s) = self.retry_after_secs {
            body["retry_after_secs"] = s.into();
        }
        (self.status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body whose errors are answered in the API's own shape (axum's
/// own rejection is plain text).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// The largest CSV upload: 100,000 phonebook entries with long notes fit.
pub const MAX_UPLOAD_BYTES: usize = 32 << 20;

/// An uploaded file (a CSV import), with errors in the API's own shape.
pub struct Upload(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Upload {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => Ok(Upload(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..ApiError::invalid(format!("the file is larger than {} MiB", MAX_UPLOAD_BYTES >> 20))
            }),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// A CSV answer, downloaded under `filename`.
pub fn csv_response(filename: &str, text: String) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        text,
    )
        .into_response()
}

/// The API's routes, the phonebook for desk phones, and the web app.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/session", post(session::sign_in).get(session::current).delete(session::sign_out))
        .route("/session/totp", post(session::totp))
        .route("/me/totp", post(session::enrol_begin))
        .route("/me/totp/confirm", post(session::enrol_confirm))
        .route("/me/password", post(session::change_password))
        .route("/me/tokens", get(tokens::list).post(tokens::create))
        .route("/me/tokens/{id}", delete(tokens::revoke))
        .route("/dashboard", get(logs::dashboard))
        .route("/departments", get(pbx::list_departments).post(pbx::add_department))
        .route("/departments/{id}", put(pbx::rename_department).delete(pbx::remove_department))
        .route("/users", get(users::list).post(users::add))
        .route("/users/import", post(users::import).layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .route("/users/export", get(users::export))
        .route("/users/{ext}", get(users::get_one).put(users::update).delete(users::remove))
        .route("/users/{ext}/forwarding", put(users::set_forwarding))
        .route("/users/{ext}/sip-password", post(users::reset_sip_password))
        .route("/users/{ext}/provisioning", get(users::provisioning).post(users::provisioning_with_password))
        .route("/users/{ext}/devices/{device}", delete(users::remove_device))
        .route("/groups", get(pbx::list_groups))
        .route("/groups/{number}", put(pbx::put_group).delete(pbx::remove_group))
        .route("/dids", get(pbx::list_dids))
        .route("/dids/import", post(pbx::import_dids).layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .route("/dids/export", get(pbx::export_dids))
        .route("/dids/{number}", put(pbx::put_did).delete(pbx::remove_did))
        .route("/schedules", get(schedules::list))
        .route("/schedules/{name}", put(schedules::put).delete(schedules::remove))
        .route("/ivr", get(ivr::list))
        .route("/ivr/{name}", get(ivr::get_one).put(ivr::put).delete(ivr::remove))
        .route("/disaster", get(schedules::disaster).put(schedules::set_disaster))
        .route("/holidays/{year}", get(schedules::holidays))
        .route("/announcements", get(announcements::list))
        .route("/announcements/{name}", put(announcements::put).delete(announcements::remove))
        .route(
            "/announcements/{name}/audio",
            get(announcements::audio).post(announcements::upload).layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/trunks", get(pbx::list_trunks))
        .route("/trunks/{name}", put(pbx::put_trunk).delete(pbx::remove_trunk))
        .route("/settings", get(pbx::list_settings))
        .route("/settings/{key}", put(pbx::put_setting))
        .route("/recording-policy", get(pbx::recording_policy))
        .route("/recording-policy/{kind}/{key}", put(pbx::put_recording_policy))
        .route("/phonebook", get(directory::list).post(directory::add))
        .route("/phonebook/import", post(directory::import).layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .route("/phonebook/export", get(directory::export))
        .route("/phonebook/{id}", put(directory::update).delete(directory::remove))
        .route("/calls", get(logs::calls))
        .route("/calls/export", get(logs::calls_export))
        .route("/audit", get(audit::list))
        .route("/audit/export", get(audit::export))
        .route("/admins", get(admins::list).post(admins::add))
        .route("/admins/{name}", put(admins::update).delete(admins::remove))
        .route("/admins/{name}/reset-mfa", post(admins::reset_mfa))
        .route("/admins/{name}/unlock", post(admins::unlock))
        .route("/admins/{name}/reset-password", post(admins::reset_password))
        .route("/recordings", get(logs::recordings))
        .route("/recordings/access-log", get(logs::recording_access))
        .route("/recordings/{id}/audio", get(logs::recording_audio))
        .route("/recordings/{id}/download", get(logs::recording_download))
        .route("/events", get(events::websocket))
        .fallback(|| async { ApiError::not_found("no such API path") });
    Router::new()
        .nest("/api/v1", v1)
        .route("/api/openapi.json", get(openapi::document))
        .route("/phonebook.xml", get(directory::desk_phone_xml))
        .fallback(web::serve)
        .with_state(state)
}
