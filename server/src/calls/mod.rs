//! Calls through the PBX. The server is a B2BUA: each call is one task
//! (`call::run`) holding the caller's dialog (leg A), the forks that ring
//! devices or the carrier (legs B), and the anchored media between them.
//! This module routes SIP traffic to the task a message belongs to: new
//! INVITEs start a call; requests by Call-ID, responses and timeouts by the
//! call token in our Via branch (see `dialog::new_branch`).

pub mod call;
pub mod dialog;
pub mod keys;
pub mod negotiate;
pub mod records;

use crate::config::Config;
use crate::media::{PortPool, Relays};
use crate::registrar::Registrar;
use crate::sip::endpoint::{Endpoint, Responder};
use crate::store::{SqliteStore, Trunk};
use dialog::{token_of_branch, LocalAddrs};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::mpsc;
use tsunagu_sip::transaction::TxKey;
use tsunagu_sip::{Peer, Request, Response};

/// A SIP event for a call (or the trunk task).
pub enum SipEvent {
    Request { req: Request, key: TxKey, peer: Peer, responder: Responder },
    Response { key: TxKey, resp: Response },
    Timeout { key: TxKey },
    /// Another extension picks this ringing call up (`**EXT`, `*8`): its
    /// INVITE becomes the call's answered leg, or gets 480 when too late.
    Pickup { req: Request, key: TxKey, peer: Peer, responder: Responder, picker: String },
    /// Another call carries out an attended transfer: this call is to
    /// give up its party that is not on dialog `call_id` (the transferor's
    /// leg here), or the number it still rings, or answer None when it
    /// cannot.
    TakeLeg { call_id: String, reply: tokio::sync::oneshot::Sender<Option<call::Handover>> },
}

/// Who is on a call now, and when each extension's last call ended (for
/// busy checks, skip-busy and longest-idle groups).
#[derive(Default)]
pub struct Presence {
    inner: Mutex<PresenceInner>,
}

#[derive(Default)]
struct PresenceInner {
    active: HashMap<String, u32>,
    last_end: HashMap<String, Instant>,
}

impl Presence {
    pub fn is_busy(&self, ext: &str) -> bool {
        self.inner.lock().map(|p| p.active.get(ext).copied().unwrap_or(0) > 0).unwrap_or(false)
    }
    pub fn last_call_end(&self, ext: &str) -> Option<Instant> {
        self.inner.lock().ok().and_then(|p| p.last_end.get(ext).copied())
    }
    pub fn begin(&self, ext: &str) {
        if let Ok(mut p) = self.inner.lock() {
            *p.active.entry(ext.to_string()).or_default() += 1;
        }
    }
    pub fn end(&self, ext: &str) {
        if let Ok(mut p) = self.inner.lock() {
            if let Some(n) = p.active.get_mut(ext) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    p.active.remove(ext);
                }
            }
            p.last_end.insert(ext.to_string(), Instant::now());
        }
    }
}

/// What every call task needs.
pub struct Services {
    pub endpoint: Arc<Endpoint>,
    pub registrar: Arc<Registrar>,
    pub store: Arc<SqliteStore>,
    pub ports: Arc<PortPool>,
    pub relays: Relays,
    pub local: LocalAddrs,
    pub presence: Presence,
    pub calls: Calls,
    /// Trunks as last read from the store (the trunk task refreshes them
    /// every second): inbound calls from their addresses need no digest.
    pub trunks: RwLock<Vec<Trunk>>,
    pub config: Config,
    /// Call records go to the batching writer (see `records`).
    pub records: mpsc::UnboundedSender<records::RecordMsg>,
    /// Announcements and hold music, cached as 8 kHz samples.
    pub prompts: crate::media::prompts::Prompts,
    /// Starts call recordings (`recorder.begin(..)` gives the relay's tap).
    pub recorder: crate::recording::Recorder,
}

/// A call ringing an extension: its token and its inbox.
type RingingCall = (u64, mpsc::UnboundedSender<SipEvent>);

/// Where SIP events go.
#[derive(Default)]
pub struct Calls {
    by_call_id: Mutex<HashMap<String, mpsc::UnboundedSender<SipEvent>>>,
    by_token: Mutex<HashMap<u64, mpsc::UnboundedSender<SipEvent>>>,
    /// Call tasks running (the trunk task also has a token, so the maps
    /// cannot say this).
    running: Arc<AtomicUsize>,
    /// Calls ringing each extension now, oldest first: who a pick-up takes.
    ringing: Mutex<HashMap<String, Vec<RingingCall>>>,
    /// Parked calls by slot (`*71`..`*79`).
    parked: Mutex<HashMap<u8, RingingCall>>,
}

/// Counts a call in [`Calls::active`] while it lives.
pub struct RunningCall(Arc<AtomicUsize>);

impl Drop for RunningCall {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Calls {
    pub fn register_token(&self, token: u64, tx: mpsc::UnboundedSender<SipEvent>) {
        if let Ok(mut m) = self.by_token.lock() {
            m.insert(token, tx);
        }
    }
    pub fn register_call_id(&self, call_id: &str, tx: mpsc::UnboundedSender<SipEvent>) {
        if let Ok(mut m) = self.by_call_id.lock() {
            m.insert(call_id.to_string(), tx);
        }
    }
    pub fn unregister(&self, token: u64, call_ids: &[String]) {
        if let Ok(mut m) = self.by_token.lock() {
            m.remove(&token);
        }
        if let Ok(mut m) = self.by_call_id.lock() {
            for c in call_ids {
                m.remove(c);
            }
        }
    }
    /// Call `token` rings extension `ext` (once per extension and call).
    pub fn ringing_started(&self, ext: &str, token: u64, tx: &mpsc::UnboundedSender<SipEvent>) {
        if let Ok(mut m) = self.ringing.lock() {
            let list = m.entry(ext.to_string()).or_default();
            if !list.iter().any(|(t, _)| *t == token) {
                list.push((token, tx.clone()));
            }
        }
    }

    /// Call `token` rings nobody any more (answered, cancelled, ended).
    pub fn ringing_ended(&self, token: u64) {
        if let Ok(mut m) = self.ringing.lock() {
            m.retain(|_, list| {
                list.retain(|(t, _)| *t != token);
                !list.is_empty()
            });
        }
    }

    /// The call ringing any of `exts` the longest (first registered).
    pub fn longest_ringing(&self, exts: &[String]) -> Option<RingingCall> {
        let m = self.ringing.lock().ok()?;
        // Tokens do not order by age; each list does, so take the first
        // entry of the first extension that has one, in the order given.
        exts.iter().find_map(|e| m.get(e).and_then(|l| l.first().cloned()))
    }

    /// Park call `token` in `slot`; false when the slot is taken.
    pub fn park(&self, slot: u8, token: u64, tx: &mpsc::UnboundedSender<SipEvent>) -> bool {
        let Ok(mut m) = self.parked.lock() else { return false };
        if m.contains_key(&slot) {
            return false;
        }
        m.insert(slot, (token, tx.clone()));
        true
    }

    /// Call `token` leaves its parking slot (taken, recalled, ended).
    pub fn unpark(&self, token: u64) {
        if let Ok(mut m) = self.parked.lock() {
            m.retain(|_, (t, _)| *t != token);
        }
    }

    /// The call parked in `slot`.
    pub fn parked_call(&self, slot: u8) -> Option<RingingCall> {
        self.parked.lock().ok()?.get(&slot).cloned()
    }

    /// Calls in progress: set up, ringing, connected or draining forks.
    pub fn active(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    pub fn running(&self) -> RunningCall {
        self.running.fetch_add(1, Ordering::Relaxed);
        RunningCall(self.running.clone())
    }
    /// The inbox of the call a dialog belongs to.
    pub fn inbox_of(&self, call_id: &str) -> Option<mpsc::UnboundedSender<SipEvent>> {
        self.by_call_id.lock().ok().and_then(|m| m.get(call_id).cloned())
    }
    pub fn knows_call_id(&self, call_id: &str) -> bool {
        self.by_call_id.lock().map(|m| m.contains_key(call_id)).unwrap_or(false)
    }

    /// Give a request to the call it belongs to; gives it back when there
    /// is none (or the call just ended).
    pub fn dispatch_request(&self, req: Request, key: TxKey, peer: Peer, responder: &Responder) -> Option<Request> {
        let Some(tx) = self.by_call_id.lock().ok().and_then(|m| m.get(&req.core.call_id).cloned()) else { return Some(req) };
        match tx.send(SipEvent::Request { req, key, peer, responder: responder.clone() }) {
            Ok(()) => None,
            Err(e) => match e.0 {
                SipEvent::Request { req, .. } => Some(req),
                _ => None,
            },
        }
    }

    pub fn dispatch_response(&self, key: TxKey, resp: Response) {
        let Some(token) = token_of_branch(&key.branch) else { return };
        let tx = self.by_token.lock().ok().and_then(|m| m.get(&token).cloned());
        if let Some(tx) = tx {
            let _ = tx.send(SipEvent::Response { key, resp });
        }
    }

    pub fn dispatch_timeout(&self, key: TxKey) {
        let Some(token) = token_of_branch(&key.branch) else { return };
        let tx = self.by_token.lock().ok().and_then(|m| m.get(&token).cloned());
        if let Some(tx) = tx {
            let _ = tx.send(SipEvent::Timeout { key });
        }
    }
}

/// Why a new call is refused before it starts.
pub struct Refusal {
    /// For the `tsunagu_calls_refused_total` label.
    pub metric: &'static str,
    pub text: &'static str,
}

impl Services {
    /// Whether a new call may start now: under the call limit, with a
    /// relay thread that keeps up, and media ports for both legs. Checked
    /// before any work is spent on the INVITE, so an overload is answered
    /// with cheap 503s.
    pub fn admission(&self) -> Option<Refusal> {
        let max = self.config.calls.max_calls as usize;
        if max > 0 && self.calls.active() >= max {
            return Some(Refusal { metric: "max_calls", text: "too many calls in progress" });
        }
        if self.relays.overloaded() {
            return Some(Refusal { metric: "media_relay_busy", text: "media relay at capacity" });
        }
        if self.ports.free_pairs() < 2 {
            return Some(Refusal { metric: "media_ports", text: "no media ports free" });
        }
        None
    }

    /// The trunk an inbound request comes from: its exact address, else
    /// its IP address unless a registered device sends from that very
    /// address (a phone on the carrier's network, or everything on one
    /// test machine, is still a phone).
    pub fn trunk_for_source(&self, addr: std::net::SocketAddr) -> Option<Trunk> {
        let trunks = self.trunks.read().ok()?;
        if let Some(t) = trunks.iter().find(|t| t.host == addr) {
            return Some(t.clone());
        }
        let by_ip = trunks.iter().find(|t| t.host.ip() == addr.ip())?;
        if self.registrar.is_device_address(addr) {
            return None;
        }
        Some(by_ip.clone())
    }
}
