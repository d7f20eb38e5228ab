//! RFC 3581 / RFC 3261 §18.2: stamping `received`/`rport` on the top Via of
//! an incoming request, and where a response must go.

use crate::message::Request;
use crate::transaction::Peer;
use ezk_sip_types::host::Host;
use ezk_sip_types::print::AppendCtx;
use crate::headers::Name;
use std::net::{IpAddr, SocketAddr};

/// Add `received` when the sent-by host is not the source address, and fill
/// `rport` when the client asked for it. The raw header is rewritten so the
/// response copies the stamped value.
pub fn stamp_received(req: &mut Request, source: SocketAddr) {
    let Some(via) = req.core.vias.first_mut() else { return };
    let sent_ip = match &via.sent_by.host {
        Host::IP4(ip) => Some(IpAddr::V4(*ip)),
        Host::IP6(ip) => Some(IpAddr::V6(*ip)),
        Host::Name(_) => None,
    };
    let mut changed = false;
    if sent_ip != Some(source.ip()) {
        via.params.push_or_edit("received", source.ip().to_string());
        changed = true;
    }
    if via.params.get("rport").is_some() {
        via.params.push_or_edit("rport", source.port().to_string());
        changed = true;
    }
    if !changed {
        return;
    }
    let printed = via.default_print_ctx().to_string();
    // Replace the first Via value; a comma-joined line is split so the rest
    // survive unchanged.
    let raws: Vec<String> = req.headers.get_raw(&Name::VIA).map(|v| v.to_string()).collect();
    req.headers.remove(&Name::VIA);
    let mut first = true;
    for raw in raws {
        if first {
            first = false;
            req.headers.insert(Name::VIA, printed.clone());
            if let Some((_, rest)) = split_first_value(&raw) {
                req.headers.insert(Name::VIA, rest.to_string());
            }
        } else {
            req.headers.insert(Name::VIA, raw);
        }
    }
}

/// Split `a, b, c` at the first comma outside quotes.
fn split_first_value(raw: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in raw.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => return Some((raw[..i].trim(), raw[i + 1..].trim())),
            _ => {}
        }
    }
    None
}

/// Where the response to a request from `peer` goes (RFC 3261 §18.2.2 with
/// RFC 3581): on connection transports, back on the same flow; on UDP to the
/// source address when rport was asked for, else the source IP and the
/// sent-by port.
pub fn response_target(req: &Request, peer: Peer) -> Peer {
    if peer.transport.is_reliable() {
        return peer;
    }
    let Some(via) = req.core.vias.first() else { return peer };
    if via.params.get("rport").is_some() {
        return peer;
    }
    let port = via.sent_by.port.unwrap_or(5060);
    Peer { addr: SocketAddr::new(peer.addr.ip(), port), ..peer }
}
