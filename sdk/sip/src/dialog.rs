//! One SIP dialog (RFC 3261 §12) and the requests sent in it, for both the
//! PBX's call legs and the phone SDK's calls. The state is what §12.1
//! lists (Call-ID, tags, URIs, remote target, route set, CSeq) plus the
//! flow its messages travel on (a registered connection, RFC 5626, or an
//! address).
//!
//! Sans-IO: the caller supplies the random parts (Call-ID, tags, first
//! CSeq, branches) and its own addresses through [`LocalAddress`].

use crate::error::ParseError;
use crate::headers::{Headers, Name};
use crate::message::parse_name_addr;
use crate::transaction::{Peer, TransportKind};
use crate::{parse_message, Framing, Limits, Message, Request, Response};
use bytes::Bytes;

/// How the sender names itself in Via and Contact on a transport.
pub trait LocalAddress {
    /// A whole Via value for `branch`, e.g.
    /// `SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK…;rport`.
    fn via(&self, transport: TransportKind, branch: &str) -> String;
    /// A whole Contact value, e.g. `<sip:1001@192.0.2.1:5060>`.
    fn contact(&self, transport: TransportKind) -> String;
    /// The User-Agent header value.
    fn user_agent(&self) -> String {
        concat!("Tsunagu/", env!("CARGO_PKG_VERSION")).to_string()
    }
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Our From (UAC) or To (UAS) without its tag.
    pub local_uri: String,
    pub remote_uri: String,
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
    pub peer: Peer,
}

/// A header value without its `;tag=` parameter.
pub fn strip_tag(raw: &str) -> String {
    // The tag sits after the URI (after '>' when there is one).
    let cut = raw.rfind('>').map_or(0, |i| i + 1);
    let (head, params) = raw.split_at(cut);
    let kept: Vec<&str> = params.split(';').filter(|p| !p.trim().to_ascii_lowercase().starts_with("tag=")).collect();
    format!("{head}{}", kept.join(";")).trim().to_string()
}

/// The URI of the first Contact, if it parses.
pub fn contact_uri(headers: &Headers) -> Option<String> {
    let raw = headers.get_raw(&Name::CONTACT).next()?;
    let first = raw.split(',').next()?.trim();
    parse_name_addr(first).ok().map(|n| n.uri)
}

/// Record-Route values one by one (they may be comma-joined).
pub fn record_routes(headers: &Headers) -> Vec<String> {
    headers
        .get_raw(&Name::RECORD_ROUTE)
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Dialog {
    /// The UAS side of a dialog from the INVITE we received. `local_cseq`
    /// is where our own requests in it start (random, RFC 3261 §8.1.1.5).
    pub fn from_incoming(req: &Request, peer: Peer, local_tag: String, local_cseq: u32) -> Dialog {
        Dialog {
            call_id: req.core.call_id.clone(),
            local_tag,
            remote_tag: req.core.from.tag.clone(),
            local_uri: strip_tag(&req.core.to.raw),
            remote_uri: strip_tag(&req.core.from.raw),
            remote_target: contact_uri(&req.headers).unwrap_or_else(|| req.core.from.uri.clone()),
            route_set: record_routes(&req.headers),
            local_cseq,
            remote_cseq: Some(req.core.cseq.seq),
            peer,
        }
    }

    /// The UAC side of a new dialog we are about to start.
    pub fn outgoing(local_uri: String, remote_uri: String, target: String, peer: Peer, call_id: String, local_tag: String) -> Dialog {
        Dialog {
            call_id,
            local_tag,
            remote_tag: None,
            local_uri,
            remote_uri,
            remote_target: target,
            route_set: Vec::new(),
            local_cseq: 1,
            remote_cseq: None,
            peer,
        }
    }

    /// Learn the remote tag, target and route set from a 2xx or 1xx of
    /// our INVITE (route set reversed, RFC 3261 §12.1.2).
    pub fn confirm_from_response(&mut self, resp: &Response) {
        if self.remote_tag.is_none() {
            self.remote_tag = resp.core.to.tag.clone();
        }
        if let Some(t) = contact_uri(&resp.headers) {
            self.remote_target = t;
        }
        let mut rr = record_routes(&resp.headers);
        rr.reverse();
        if !rr.is_empty() {
            self.route_set = rr;
        }
    }

    /// Build a request in this dialog with the next CSeq (or `cseq`).
    pub fn request(&mut self, local: &impl LocalAddress, branch: &str, method: &str, cseq: Option<u32>, extra: &[(&str, String)], body: Option<(&str, &[u8])>) -> Result<Request, ParseError> {
        let seq = match cseq {
            Some(s) => s,
            None => {
                self.local_cseq = self.local_cseq.wrapping_add(1);
                self.local_cseq
            }
        };
        self.build(local, branch, method, seq, extra, body)
    }

    /// Build a request in this dialog as it stands (no CSeq change). Text
    /// first, then parsed: a URI or tag a peer sent that does not survive
    /// the round trip is an error, not a malformed message on the wire.
    pub fn build(&self, local: &impl LocalAddress, branch: &str, method: &str, seq: u32, extra: &[(&str, String)], body: Option<(&str, &[u8])>) -> Result<Request, ParseError> {
        use std::fmt::Write as _;
        let t = self.peer.transport;
        let mut s = String::with_capacity(768);
        let _ = write!(s, "{method} {} SIP/2.0\r\n", self.remote_target);
        let _ = write!(s, "Via: {}\r\n", local.via(t, branch));
        let _ = write!(s, "Max-Forwards: 70\r\n");
        let _ = write!(s, "From: {};tag={}\r\n", self.local_uri, self.local_tag);
        match &self.remote_tag {
            Some(tag) => {
                let _ = write!(s, "To: {};tag={}\r\n", self.remote_uri, tag);
            }
            None => {
                let _ = write!(s, "To: {}\r\n", self.remote_uri);
            }
        }
        let _ = write!(s, "Call-ID: {}\r\n", self.call_id);
        let _ = write!(s, "CSeq: {seq} {method}\r\n");
        for r in &self.route_set {
            let _ = write!(s, "Route: {r}\r\n");
        }
        if matches!(method, "INVITE" | "UPDATE" | "SUBSCRIBE" | "NOTIFY" | "REFER") {
            let _ = write!(s, "Contact: {}\r\n", local.contact(t));
        }
        let _ = write!(s, "User-Agent: {}\r\n", local.user_agent());
        for (n, v) in extra {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        let mut bytes = Vec::with_capacity(s.len() + 600);
        match body {
            Some((ctype, b)) => {
                let _ = write!(s, "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n", b.len());
                bytes.extend_from_slice(s.as_bytes());
                bytes.extend_from_slice(b);
            }
            None => {
                s.push_str("Content-Length: 0\r\n\r\n");
                bytes.extend_from_slice(s.as_bytes());
            }
        }
        match parse_message(&bytes, Framing::Datagram, &Limits::default())? {
            Message::Request(r) => Ok(r),
            Message::Response(_) => Err(ParseError::malformed("built a response instead of a request")),
        }
    }

    /// The ACK for a 2xx to our INVITE with CSeq `seq` (RFC 3261 §13.2.2.4):
    /// a new transaction-less request, same CSeq number.
    pub fn ack_bytes(&self, local: &impl LocalAddress, branch: &str, seq: u32, body: Option<(&str, &[u8])>) -> Result<Bytes, ParseError> {
        self.build(local, branch, "ACK", seq, &[], body).map(|r| r.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    struct Me;
    impl LocalAddress for Me {
        fn via(&self, t: TransportKind, branch: &str) -> String {
            format!("SIP/2.0/{} 192.0.2.1:5060;branch={branch};rport", t.via_name())
        }
        fn contact(&self, _: TransportKind) -> String {
            "<sip:1001@192.0.2.1:5060>".into()
        }
    }

    #[test]
    fn strip_tag_keeps_other_params() {
        assert_eq!(strip_tag("\"A\" <sip:1@x>;tag=abc"), "\"A\" <sip:1@x>");
        assert_eq!(strip_tag("<sip:1@x>;foo=1;tag=abc"), "<sip:1@x>;foo=1");
        assert_eq!(strip_tag("sip:1@x;tag=abc"), "sip:1@x");
    }

    #[test]
    fn a_uac_dialog_learns_tag_target_and_routes_and_numbers_its_requests() {
        let peer = Peer { addr: SocketAddr::from(([192, 0, 2, 9], 5060)), transport: TransportKind::Udp, flow: 0 };
        let mut d = Dialog::outgoing("<sip:1001@pbx>".into(), "<sip:1002@pbx>".into(), "sip:1002@pbx".into(), peer, "cid-1".into(), "lt".into());
        let invite = d.build(&Me, "z9hG4bK1", "INVITE", 1, &[], Some(("application/sdp", b"v=0\r\n"))).unwrap();
        assert_eq!(invite.core.call_id, "cid-1");
        assert!(invite.headers.get_raw(&Name::CONTACT).next().is_some());
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nFrom: <sip:1001@pbx>;tag=lt\r\nTo: <sip:1002@pbx>;tag=rt\r\n\
Call-ID: cid-1\r\nCSeq: 1 INVITE\r\nContact: <sip:1002@198.51.100.7:5062>\r\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\r\nContent-Length: 0\r\n\r\n";
        let Ok(Message::Response(ok)) = parse_message(text.as_bytes(), Framing::Datagram, &Limits::default()) else { panic!() };
        d.confirm_from_response(&ok);
        assert_eq!(d.remote_tag.as_deref(), Some("rt"));
        assert_eq!(d.remote_target, "sip:1002@198.51.100.7:5062");
        assert_eq!(d.route_set, vec!["<sip:p2;lr>", "<sip:p1;lr>"]);
        let bye = d.request(&Me, "z9hG4bK2", "BYE", None, &[], None).unwrap();
        assert_eq!(bye.core.cseq.seq, 2);
        assert_eq!(bye.uri.raw, "sip:1002@198.51.100.7:5062");
        let ack = String::from_utf8(d.ack_bytes(&Me, "z9hG4bK3", 1, None).unwrap().to_vec()).unwrap();
        assert!(ack.starts_with("ACK sip:1002@198.51.100.7:5062 SIP/2.0") && ack.contains("CSeq: 1 ACK") && ack.contains("Route: <sip:p2;lr>"), "{ack}");
    }

    #[test]
    fn a_target_that_does_not_survive_the_round_trip_is_an_error() {
        let peer = Peer { addr: SocketAddr::from(([192, 0, 2, 9], 5060)), transport: TransportKind::Udp, flow: 0 };
        let d = Dialog::outgoing("<sip:1001@pbx>".into(), "<sip:1002@pbx>".into(), "sip:bad target\r\nX: y".into(), peer, "c".into(), "t".into());
        assert!(d.build(&Me, "z9hG4bK1", "BYE", 2, &[], None).is_err());
    }
}
