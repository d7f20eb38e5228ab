//! The PBX's transaction user: checks each new request (RFC 3261 §8.2) and
//! routes it by method: REGISTER to the registrar, new INVITEs to a call
//! task (after digest or trunk recognition), everything in a dialog (ACK,
//! BYE, CANCEL, re-INVITE, UPDATE, INFO, PRACK) to the call it belongs to,
//! responses and client timeouts to the task that sent the request.

use super::endpoint::{RequestHandler, Responder};
use crate::calls::call::{self, Origin};
use crate::calls::Services;
use crate::registrar::{new_tag, CallAuth, Registrar};
use std::sync::Arc;
use tsunagu_sip::transaction::TxKey;
use tsunagu_sip::validate::{check_request, UasPolicy};
use tsunagu_sip::{response_to, Name, Peer, Rejection, Request, Response};

pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY, REGISTER";

pub struct Core {
    pub registrar: Arc<Registrar>,
    pub policy: UasPolicy,
    /// For requests inside a dialog that are passed to the other leg.
    pub in_dialog_policy: UasPolicy,
    /// Calls (set once the endpoint they need exists).
    pub services: std::sync::OnceLock<Arc<Services>>,
}

/// The response a [`Rejection`] describes.
pub fn rejection_response(req: &Request, rej: &Rejection) -> Response {
    let mut resp = response_to(req, rej.code, Some(&new_tag()));
    resp.reason = rej.reason.chars().filter(|c| !c.is_control()).collect();
    for (n, v) in &rej.headers {
        resp.headers.insert(Name::from(n.clone()), v.clone());
    }
    resp
}

impl RequestHandler for Core {
    fn on_request(&self, req: Request, key: TxKey, peer: Peer, responder: &Responder) {
        if req.method == "ACK" {
            // An ACK for a 2xx of ours belongs to its call; others are strays.
            if let Some(svc) = self.services.get() {
                let _ = svc.calls.dispatch_request(req, key, peer, responder);
            }
            return;
        }
        metrics::counter!("tsunagu_sip_requests_total", "method" => metric_method(&req.method)).increment(1);
        // In a dialog the B2BUA passes bodies across (INFO with DTMF,
        // MESSAGE, NOTIFY): more body types are acceptable there.
        let in_dialog_passthrough = req.core.to.tag.is_some() && !matches!(req.method.as_str(), "INVITE" | "UPDATE" | "PRACK");
        let policy = if in_dialog_passthrough { &self.in_dialog_policy } else { &self.policy };
        if let Err(rej) = check_request(&req, policy) {
            tracing::info!(source = %peer.addr, method = %req.method, call_id = %req.core.call_id, code = rej.code, reason = %rej.reason, "request refused");
            return responder.respond(key, rejection_response(&req, &rej));
        }
        let in_dialog = req.core.to.tag.is_some();
        match req.method.as_str() {
            "REGISTER" => self.registrar.handle_register(req, key, peer, responder),
            "OPTIONS" if !in_dialog => {
                let mut resp = response_to(&req, 200, Some(&new_tag()));
                resp.headers.insert(Name::ALLOW, ALLOW);
                resp.headers.insert(Name::ACCEPT, "application/sdp");
                resp.headers.insert(Name::SUPPORTED, "outbound, timer, 100rel");
                responder.respond(key, resp);
            }
            "INVITE" if !in_dialog => self.new_call(req, key, peer, responder),
            _ => {
                let Some(svc) = self.services.get() else {
                    return responder.respond(key, response_to(&req, 481, Some(&new_tag())));
                };
                if let Some(req) = svc.calls.dispatch_request(req, key.clone(), peer, responder) {
                    match req.method.as_str() {
                        "ACK" => {}
                        "CANCEL" | "BYE" | "INVITE" | "UPDATE" | "INFO" | "PRACK" | "OPTIONS" | "NOTIFY" | "MESSAGE" => {
                            responder.respond(key, response_to(&req, 481, Some(&new_tag())))
                        }
                        _ if in_dialog => responder.respond(key, response_to(&req, 481, Some(&new_tag()))),
                        _ => {
                            let mut resp = response_to(&req, 405, Some(&new_tag()));
                            resp.headers.insert(Name::ALLOW, ALLOW);
                            responder.respond(key, resp);
                        }
                    }
                }
            }
        }
    }

    fn on_response(&self, key: TxKey, response: Response) {
        if let Some(svc) = self.services.get() {
            svc.calls.dispatch_response(key, response);
        }
    }

    fn on_client_timeout(&self, key: TxKey) {
        if let Some(svc) = self.services.get() {
            svc.calls.dispatch_timeout(key);
        }
    }
}

impl Core {
    /// A new INVITE: from a carrier trunk (by source address) or from an
    /// extension (digest, 407), then a call task takes it.
    fn new_call(&self, req: Request, key: TxKey, peer: Peer, responder: &Responder) {
        let Some(svc) = self.services.get() else {
            return responder.respond(key, response_to(&req, 503, Some(&new_tag())));
        };
        if svc.calls.knows_call_id(&req.core.call_id) {
            // The same call again on another path (a fork loop, RFC 3261 §8.2.2.2).
            return responder.respond(key, response_to(&req, 482, Some(&new_tag())));
        }
        if let Some(why) = svc.admission() {
            // Refused before any work is spent on it; a carrier or phone
            // tries again later (or its next server).
            metrics::counter!("tsunagu_calls_refused_total", "reason" => why.metric).increment(1);
            tracing::warn!(call_id = %req.core.call_id, reason = why.text, "call refused: server at its limit");
            let mut resp = response_to(&req, 503, Some(&new_tag()));
            resp.headers.insert(Name::RETRY_AFTER, "5".to_string());
            resp.headers.insert(Name::WARNING, format!("399 tsunagu \"{}\"", why.text));
            return responder.respond(key, resp);
        }
        let origin = match svc.trunk_for_source(peer.addr) {
            Some(t) => Origin::Trunk(t),
            None => match self.registrar.authenticate_request(&req, &peer) {
                CallAuth::Ok(ext) => Origin::Extension(ext),
                CallAuth::Respond(resp) => return responder.respond(key, resp),
                CallAuth::Uncached(creds) => {
                    // A user added a moment ago: ask the store without
                    // holding up the receiving thread.
                    let (registrar, svc, responder) = (self.registrar.clone(), svc.clone(), responder.clone());
                    tokio::spawn(async move {
                        match registrar.authenticate_uncached(&req, &peer, creds).await {
                            Ok(ext) => call::start(svc, req, key, peer, responder, Origin::Extension(ext)),
                            Err(resp) => responder.respond(key, resp),
                        }
                    });
                    return;
                }
            },
        };
        call::start(svc.clone(), req, key, peer, responder.clone(), origin);
    }
}

/// Known methods by name; everything else as "other" so a flood of invented
/// methods cannot blow up the metric's label set.
fn metric_method(m: &str) -> &'static str {
    tsunagu_sip::message::KNOWN_METHODS.iter().find(|k| **k == m).copied().unwrap_or("other")
}
