//! Live events for the dashboard and call-center screens: registrations,
//! calls starting and ending, and configuration changes, sent as JSON over
//! a WebSocket. The PBX's tasks publish on a broadcast channel; a slow
//! browser misses events (and is told how many) rather than slowing calls.

use super::rights::{Access, Resource};
use super::session::Admin;
use super::{ApiResult, ApiState};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use std::collections::HashSet;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Registration { extension: String, device: String, registered: bool },
    Call { id: String, state: String, caller: String, callee: String, did: Option<String>, answered_by: Option<String> },
    Change { resource: String, key: String },
}

impl Event {
    pub fn change(resource: &str, key: &str) -> Self {
        Event::Change { resource: resource.into(), key: key.into() }
    }

    /// A registration event for a change of the location table (None for
    /// the bulk snapshot marker).
    pub fn of_binding(c: &crate::store::BindingChange) -> Option<Event> {
        use crate::store::BindingChange::*;
        match c {
            Upsert(b) => Some(Event::Registration { extension: b.extension.clone(), device: b.device_key.clone(), registered: true }),
            Remove { extension, device_key } => Some(Event::Registration { extension: extension.clone(), device: device_key.clone(), registered: false }),
            ClearAll => None,
        }
    }

    pub fn of_call(r: &crate::store::CallRecord) -> Event {
        let state = if r.ended_at.is_some() {
            "ended"
        } else if r.answered_at.is_some() {
            "answered"
        } else {
            "ringing"
        };
        Event::Call { id: r.id.clone(), state: state.into(), caller: r.caller.clone(), callee: r.callee.clone(), did: r.did.clone(), answered_by: r.answered_by.clone() }
    }

    /// The extensions an event is about, for a scoped admin's filter.
    fn extensions(&self) -> Vec<&str> {
        match self {
            Event::Registration { extension, .. } => vec![extension],
            Event::Call { caller, callee, answered_by, .. } => {
                let mut v = vec![caller.as_str(), callee.as_str()];
                v.extend(answered_by.as_deref());
                v
            }
            Event::Change { .. } => Vec::new(),
        }
    }
}

/// The PBX's event channel. Cheap to clone; sending with nobody
/// listening costs nothing.
#[derive(Clone)]
pub struct EventBus(broadcast::Sender<Event>);

impl Default for EventBus {
    fn default() -> Self {
        // A burst (a registration storm after a power cut) beyond this is
        // reported to each late listener as a count of missed events.
        Self(broadcast::channel(4096).0)
    }
}

impl EventBus {
    pub fn send(&self, e: Event) {
        let _ = self.0.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}

pub async fn websocket(State(state): State<ApiState>, who: Admin, ws: WebSocketUpgrade) -> ApiResult<Response> {
    who.require(Resource::Events, Access::Read)?;
    let scope = super::logs::extensions_in_scope(&state, &who).await?;
    let rx = state.events.subscribe();
    let session = who.session.clone();
    Ok(ws.on_upgrade(move |socket| forward(socket, rx, scope, state, session)))
}

/// How often an open socket checks that its session still stands (one
/// indexed read; a few dozen sockets at most).
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

async fn forward(mut socket: WebSocket, mut rx: broadcast::Receiver<Event>, scope: Option<HashSet<String>>, state: ApiState, session: Option<String>) {
    let mut check = tokio::time::interval(SESSION_CHECK);
    loop {
        tokio::select! {
            _ = check.tick() => {
                // Signed out, expired or idle: the live view ends with the session.
                if let Some(hash) = &session {
                    if !super::session::session_alive(&state, hash).await {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                }
            }
            e = rx.recv() => {
                let text = match e {
                    Ok(e) => {
                        let visible = match &scope {
                            None => true,
                            Some(s) => matches!(e, Event::Change { .. }) || e.extensions().iter().any(|x| s.contains(*x)),
                        };
                        if !visible {
                            continue;
                        }
                        // A scoped admin learns that something changed (to
                        // reload a list), not which extension or number in
                        // another department it was.
                        let e = match (e, &scope) {
                            (Event::Change { resource, .. }, Some(_)) => Event::Change { resource, key: String::new() },
                            (e, _) => e,
                        };
                        serde_json::to_string(&e).unwrap_or_default()
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => format!("{{\"type\":\"missed\",\"count\":{n}}}"),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            m = socket.recv() => match m {
                // The browser says nothing we act on; a close or an error ends it.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Turn call records (written at every state change) into call events,
/// one per change of state.
pub async fn forward_call_records(mut rx: tokio::sync::mpsc::UnboundedReceiver<crate::store::CallRecord>, bus: EventBus) {
    let mut last: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    while let Some(r) = rx.recv().await {
        let e = Event::of_call(&r);
        if let Event::Call { id, state, .. } = &e {
            if last.get(id) == Some(state) {
                continue;
            }
            if state == "ended" {
                last.remove(id);
            } else {
                last.insert(id.clone(), state.clone());
            }
        }
        bus.send(e);
    }
}
