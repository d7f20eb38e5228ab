//! The OpenAPI 3.1 document at /api/openapi.json, built from one table of
//! endpoints. A test walks the same table against the running router, so
//! the document cannot name a path the server does not serve.

use axum::Json;
use serde_json::{json, Map, Value};

/// Method, path, tag, summary, who may call it, request body kind.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub who: &'static str,
    pub body: Body,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Json,
    Csv,
    /// Raw audio (WAV, MP3, Ogg Opus).
    Audio,
}

macro_rules! ep {
    ($m:literal, $p:literal, $t:literal, $s:literal, $w:literal, $b:ident) => {
        Endpoint { method: $m, path: $p, tag: $t, summary: $s, who: $w, body: Body::$b }
    };
}

pub const ENDPOINTS: &[Endpoint] = &[
    ep!("post", "/api/v1/session", "session", "Sign in with name and password; answers the next step (mfa, enrol, password or ok)", "anyone", Json),
    ep!("get", "/api/v1/session", "session", "The current session, its CSRF token and admin", "a session", None),
    ep!("delete", "/api/v1/session", "session", "Sign out", "a session", None),
    ep!("post", "/api/v1/session/totp", "session", "Send the TOTP or a recovery code", "a session at step mfa", Json),
    ep!("post", "/api/v1/me/totp", "session", "Start TOTP enrolment: a secret and its otpauth URL", "a session at step enrol or ok", None),
    ep!("post", "/api/v1/me/totp/confirm", "session", "Confirm enrolment with the first code; answers 10 recovery codes", "a session at step enrol or ok", Json),
    ep!("post", "/api/v1/me/password", "session", "Change one's own password", "a session at step password or ok", Json),
    ep!("get", "/api/v1/me/tokens", "session", "One's own API tokens (not the tokens themselves)", "any admin", None),
    ep!("post", "/api/v1/me/tokens", "session", "Make an API token for scripts (shown once; acts with one's rights; from a browser session only)", "any admin", Json),
    ep!("delete", "/api/v1/me/tokens/{id}", "session", "Revoke one of one's API tokens", "any admin", None),
    ep!("get", "/api/v1/dashboard", "dashboard", "Registered devices, calls now, trunk states", "all but auditor", None),
    ep!("get", "/api/v1/departments", "departments", "Departments with their user counts", "all but auditor", None),
    ep!("post", "/api/v1/departments", "departments", "Add a department", "system, org", Json),
    ep!("put", "/api/v1/departments/{id}", "departments", "Rename a department", "system, org", Json),
    ep!("delete", "/api/v1/departments/{id}", "departments", "Remove an empty department", "system, org", None),
    ep!("get", "/api/v1/users", "users", "Users (extensions), filtered by department or text", "all but auditor; group: granted departments", None),
    ep!("post", "/api/v1/users", "users", "Add a user; a SIP password is generated when none is given", "system, org, group (granted departments)", Json),
    ep!("post", "/api/v1/users/import", "users", "Add users from CSV (UTF-8 or Shift_JIS), all or none; ?dry_run=true checks only", "system, org, group", Csv),
    ep!("get", "/api/v1/users/export", "users", "Users as CSV", "all but auditor", None),
    ep!("get", "/api/v1/users/{ext}", "users", "A user with forwarding (and devices, with the devices right)", "all but auditor", None),
    ep!("put", "/api/v1/users/{ext}", "users", "Change name, department, caller ID", "system, org, group", Json),
    ep!("delete", "/api/v1/users/{ext}", "users", "Remove a user and its registrations", "system, org, group", None),
    ep!("put", "/api/v1/users/{ext}/forwarding", "users", "Forwarding: always, busy, no answer (after N s), unregistered", "system, org, group", Json),
    ep!("post", "/api/v1/users/{ext}/sip-password", "devices", "Set a new generated SIP password", "right devices", None),
    ep!("get", "/api/v1/users/{ext}/provisioning", "devices", "The app's provisioning link (no password)", "right devices", None),
    ep!("post", "/api/v1/users/{ext}/provisioning", "devices", "A provisioning link with a fresh SIP password", "right devices", None),
    ep!("delete", "/api/v1/users/{ext}/devices/{device}", "devices", "Remove a registered device", "right devices", None),
    ep!("get", "/api/v1/groups", "groups", "Ring groups", "all but auditor", None),
    ep!("put", "/api/v1/groups/{number}", "groups", "Add or change a ring group", "system, org, group (granted departments)", Json),
    ep!("delete", "/api/v1/groups/{number}", "groups", "Remove a ring group", "system, org, group", None),
    ep!("get", "/api/v1/dids", "dids", "Public numbers and where they ring", "all but auditor; group: granted numbers", None),
    ep!("post", "/api/v1/dids/import", "dids", "Numbers from CSV number,dest,label; all or none", "system, org, group (granted numbers)", Csv),
    ep!("get", "/api/v1/dids/export", "dids", "Numbers as CSV", "all but auditor", None),
    ep!("put", "/api/v1/dids/{number}", "dids", "Route a public number", "system, org, group (granted numbers)", Json),
    ep!("delete", "/api/v1/dids/{number}", "dids", "Remove a public number", "system, org, group (granted numbers)", None),
    ep!("get", "/api/v1/schedules", "schedules", "Business-hour schedules, each with where a call would go now", "all but auditor", None),
    ep!("put", "/api/v1/schedules/{name}", "schedules", "Add or change a schedule: hours, open/closed/holiday/disaster destinations, closed days", "system, org", Json),
    ep!("delete", "/api/v1/schedules/{name}", "schedules", "Remove a schedule", "system, org", None),
    ep!("get", "/api/v1/ivr", "ivr", "IVR menus (voice menus) with their options", "all but auditor", None),
    ep!("get", "/api/v1/ivr/{name}", "ivr", "One IVR menu with its options", "all but auditor", None),
    ep!("put", "/api/v1/ivr/{name}", "ivr", "Add or replace an IVR menu with all its options, all or nothing; a loop of sub-menus is refused (422, the loop named)", "system, org", Json),
    ep!("delete", "/api/v1/ivr/{name}", "ivr", "Remove an IVR menu nothing uses (409 naming what still does)", "system, org", None),
    ep!("get", "/api/v1/disaster", "schedules", "Whether disaster mode is on", "all but auditor", None),
    ep!("put", "/api/v1/disaster", "schedules", "Turn disaster mode on or off", "system, org", Json),
    ep!("get", "/api/v1/holidays/{year}", "schedules", "Japanese public holidays of a year (1980-2099), as schedules compute them", "all but auditor", None),
    ep!("get", "/api/v1/announcements", "announcements", "Announcements and hold music (recorded, spoken or built-in), each with who uses it", "all but auditor", None),
    ep!("put", "/api/v1/announcements/{name}", "announcements", "Speak text into an announcement with espeak-ng ({label, text, voice}; voice ja by default); without text, only the label changes", "system, org", Json),
    ep!("delete", "/api/v1/announcements/{name}", "announcements", "Remove an unused announcement (409 names its users); a built-in one goes back to its default", "system, org", None),
    ep!("post", "/api/v1/announcements/{name}/audio", "announcements", "Upload a recording as the body (WAV, MP3 or Ogg Opus, at most 32 MiB; ?label=); stored as 8 kHz WAV; 422 names an unreadable file", "system, org", Audio),
    ep!("get", "/api/v1/announcements/{name}/audio", "announcements", "The stored audio (8 kHz mono 16-bit WAV)", "all but auditor", None),
    ep!("get", "/api/v1/trunks", "trunks", "Carrier trunks and their state (passwords never read back)", "system, org, readonly", None),
    ep!("put", "/api/v1/trunks/{name}", "trunks", "Add or change a trunk", "system", Json),
    ep!("delete", "/api/v1/trunks/{name}", "trunks", "Remove a trunk", "system", None),
    ep!("get", "/api/v1/settings", "settings", "PBX settings with their defaults", "system, org, readonly", None),
    ep!("put", "/api/v1/settings/{key}", "settings", "Change a PBX setting", "system", Json),
    ep!("get", "/api/v1/recording-policy", "settings", "recording_mode and the extensions, ring groups and numbers marked to be recorded", "system, org, readonly", None),
    ep!("put", "/api/v1/recording-policy/{kind}/{key}", "settings", "Mark an extension (kind user), ring group (group) or number (did) to be recorded or not: { record }", "system", Json),
    ep!("get", "/api/v1/phonebook", "phonebook", "Search (?q=) or a delta since a version (?since=)", "all but auditor", None),
    ep!("post", "/api/v1/phonebook", "phonebook", "Add an entry", "system, org", Json),
    ep!("post", "/api/v1/phonebook/import", "phonebook", "Replace the phonebook from CSV name,kana,number,department,note; all or none", "system, org", Csv),
    ep!("get", "/api/v1/phonebook/export", "phonebook", "The phonebook as CSV", "all but auditor", None),
    ep!("put", "/api/v1/phonebook/{id}", "phonebook", "Change an entry", "system, org", Json),
    ep!("delete", "/api/v1/phonebook/{id}", "phonebook", "Remove an entry", "system, org", None),
    ep!("get", "/api/v1/calls", "calls", "Call logs (?user=, ?from=, ?to= in Unix ms)", "all but auditor; group: its users' calls", None),
    ep!("get", "/api/v1/calls/export", "calls", "Call logs as CSV, same filters", "all but auditor", None),
    ep!("get", "/api/v1/audit", "audit", "The audit log (?from=, ?to=, ?actor=)", "system, org", None),
    ep!("get", "/api/v1/audit/export", "audit", "The audit log as CSV", "system, org", None),
    ep!("get", "/api/v1/admins", "admins", "Admins, roles, rights and grants", "system, org", None),
    ep!("post", "/api/v1/admins", "admins", "Add an admin; answers a one-time password", "system; org for lower ranks without rights", Json),
    ep!("put", "/api/v1/admins/{name}", "admins", "Change an admin's role, rights and grants", "system; org for lower ranks", Json),
    ep!("delete", "/api/v1/admins/{name}", "admins", "Remove an admin", "system; org for lower ranks", None),
    ep!("post", "/api/v1/admins/{name}/reset-mfa", "admins", "Make an admin enrol TOTP again", "system; org for lower ranks", None),
    ep!("post", "/api/v1/admins/{name}/reset-password", "admins", "Give an admin a new one-time password (answered once); unlocks it and ends its sessions", "system; org for lower ranks", None),
    ep!("post", "/api/v1/admins/{name}/unlock", "admins", "Unlock an admin locked by failed sign-ins", "system; org for lower ranks", None),
    ep!("get", "/api/v1/recordings", "recordings", "Recordings with state, size, hash and the call's parties (the listing is itself logged)", "right recordings", None),
    ep!("get", "/api/v1/recordings/access-log", "recordings", "Who listed, played or downloaded which recording", "right recordings", None),
    ep!("get", "/api/v1/recordings/{id}/audio", "recordings", "Play a recording: 16-bit PCM stereo WAV (caller left, callee right), with Range; logged as play", "right recordings", None),
    ep!("get", "/api/v1/recordings/{id}/download", "recordings", "Download the stored file (stereo µ-law WAV, X-Content-SHA256); logged as download", "right recordings and role auditor", None),
    ep!("get", "/api/v1/events", "events", "WebSocket of live events: registration, call, change", "all but auditor", None),
    ep!("get", "/phonebook.xml", "phonebook", "Remote phonebook XML for desk phones (HTTP Basic: extension and SIP password)", "a SIP user", None),
];

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect()
}

pub fn build() -> Value {
    let mut paths = Map::new();
    for e in ENDPOINTS {
        let mut op = json!({
            "tags": [e.tag],
            "summary": e.summary,
            "description": format!("Who may: {}.", e.who),
            "parameters": path_params(e.path),
            "responses": {
                "200": { "description": "done" },
                "400": { "$ref": "#/components/responses/Error" },
                "401": { "$ref": "#/components/responses/Error" },
                "403": { "$ref": "#/components/responses/Error" },
            },
        });
        match e.body {
            Body::Json => op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "type": "object" } } } }),
            Body::Csv => op["requestBody"] = json!({ "required": true, "content": { "text/csv": { "schema": { "type": "string" } } } }),
            Body::Audio => {
                let bin = json!({ "schema": { "type": "string", "format": "binary" } });
                op["requestBody"] = json!({ "required": true, "content": { "audio/wav": bin, "audio/mpeg": bin, "audio/ogg": bin } })
            }
            Body::None => {}
        }
        if e.method != "get" && !e.path.starts_with("/api/v1/session") {
            if let Some(p) = op["parameters"].as_array_mut() {
                p.push(json!({ "name": "X-CSRF-Token", "in": "header", "required": false, "description": "the session's CSRF token (not with an API token)", "schema": { "type": "string" } }));
            }
        }
        let entry = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        entry[e.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Tsunagu admin API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "The REST API the admin web app and scripts use. Sign in with POST /api/v1/session; the session is a cookie; changing requests carry X-CSRF-Token. See docs/api.md." },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": {
            "securitySchemes": { "session": { "type": "apiKey", "in": "cookie", "name": super::session::COOKIE },
                                 "token": { "type": "http", "scheme": "bearer", "description": "an API token (tsu_…) from POST /api/v1/me/tokens" } },
            "responses": { "Error": { "description": "An error naming the problem",
                "content": { "application/json": { "schema": { "type": "object", "required": ["error", "code"],
                    "properties": { "error": { "type": "string" }, "code": { "type": "string" },
                                    "rows": { "type": "array", "items": { "type": "object", "properties": { "row": { "type": "integer" }, "message": { "type": "string" } } } },
                                    "retry_after_secs": { "type": "integer" } } } } } } },
        },
        "security": [{ "session": [] }, { "token": [] }],
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}
