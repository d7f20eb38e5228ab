//! The PBX's transaction user: checks each new request (RFC 3261 §8.2) and
//! routes it by method. Calls come in a later stage; for now INVITE and
//! friends are refused cleanly.

use super::endpoint::{RequestHandler, Responder};
use crate::registrar::{new_tag, Registrar};
use std::sync::Arc;
use tsunagu_sip::transaction::TxKey;
use tsunagu_sip::validate::{check_request, UasPolicy};
use tsunagu_sip::{response_to, Name, Peer, Rejection, Request, Response};

const ALLOW: &str = "REGISTER, OPTIONS";

pub struct Core {
    pub registrar: Arc<Registrar>,
    pub policy: UasPolicy,
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
            return; // ACK to a 2xx of ours: no dialogs yet
        }
        metrics::counter!("tsunagu_sip_requests_total", "method" => metric_method(&req.method)).increment(1);
        if let Err(rej) = check_request(&req, &self.policy) {
            tracing::info!(source = %peer.addr, method = %req.method, call_id = %req.core.call_id, code = rej.code, reason = %rej.reason, "request refused");
            return responder.respond(key, rejection_response(&req, &rej));
        }
        match req.method.as_str() {
            "REGISTER" => self.registrar.handle_register(req, key, peer, responder),
            "OPTIONS" => {
                let mut resp = response_to(&req, 200, Some(&new_tag()));
                resp.headers.insert(Name::ALLOW, ALLOW);
                resp.headers.insert(Name::ACCEPT, "application/sdp");
                resp.headers.insert(Name::SUPPORTED, "outbound");
                responder.respond(key, resp);
            }
            // No INVITE transaction can be pending yet, so nothing to cancel.
            "CANCEL" => responder.respond(key, response_to(&req, 481, Some(&new_tag()))),
            _ => {
                let mut resp = response_to(&req, 405, Some(&new_tag()));
                resp.headers.insert(Name::ALLOW, ALLOW);
                responder.respond(key, resp);
            }
        }
    }
}

/// Known methods by name; everything else as "other" so a flood of invented
/// methods cannot blow up the metric's label set.
fn metric_method(m: &str) -> &'static str {
    tsunagu_sip::message::KNOWN_METHODS.iter().find(|k| **k == m).copied().unwrap_or("other")
}
