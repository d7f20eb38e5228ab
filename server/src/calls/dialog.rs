//! One SIP dialog of a B2BUA leg (RFC 3261 §12) and the requests sent in
//! it: the state is what §12.1 lists (Call-ID, tags, URIs, remote target,
//! route set, CSeq) plus the flow the leg's messages travel on (the
//! registered connection of a device, RFC 5626, or the carrier's address).

use bytes::Bytes;
use std::net::SocketAddr;
use tsunagu_sip::message::parse_name_addr;
use tsunagu_sip::{parse_message, Framing, Limits, Name, Peer, Request, Response, TransportKind};

/// The server's own SIP addresses, for Via and Contact.
#[derive(Debug, Clone, Copy)]
pub struct LocalAddrs {
    /// UDP and TCP.
    pub sip: SocketAddr,
    pub tls: SocketAddr,
}

impl LocalAddrs {
    pub fn for_transport(&self, t: TransportKind) -> SocketAddr {
        match t {
            TransportKind::Tls => self.tls,
            _ => self.sip,
        }
    }

    pub fn via(&self, t: TransportKind, branch: &str) -> String {
        format!("SIP/2.0/{} {};branch={};rport", t.via_name(), self.for_transport(t), branch)
    }

    pub fn contact(&self, t: TransportKind) -> String {
        let addr = self.for_transport(t);
        match t {
            TransportKind::Udp => format!("<sip:tsunagu@{addr}>"),
            TransportKind::Tcp => format!("<sip:tsunagu@{addr};transport=tcp>"),
            TransportKind::Tls => format!("<sips:tsunagu@{addr};transport=tls>"),
            TransportKind::Ws => format!("<sip:tsunagu@{addr};transport=ws>"),
        }
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
pub fn contact_uri(headers: &tsunagu_sip::Headers) -> Option<String> {
    let raw = headers.get_raw(&Name::CONTACT).next()?;
    let first = raw.split(',').next()?.trim();
    parse_name_addr(first).ok().map(|n| n.uri)
}

/// Record-Route values one by one (they may be comma-joined).
pub fn record_routes(headers: &tsunagu_sip::Headers) -> Vec<String> {
    headers
        .get_raw(&Name::RECORD_ROUTE)
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn new_branch(token: u64) -> String {
    format!("z9hG4bK{token:x}x{:x}", rand::random::<u32>())
}

/// The call a branch of ours belongs to.
pub fn token_of_branch(branch: &str) -> Option<u64> {
    let rest = branch.strip_prefix("z9hG4bK")?;
    let (tok, _) = rest.split_once('x')?;
    u64::from_str_radix(tok, 16).ok()
}

impl Dialog {
    /// The UAS side of a dialog from the INVITE we received.
    pub fn from_incoming(req: &Request, peer: Peer, local_tag: String) -> Dialog {
        Dialog {
            call_id: req.core.call_id.clone(),
            local_tag,
            remote_tag: req.core.from.tag.clone(),
            local_uri: strip_tag(&req.core.to.raw),
            remote_uri: strip_tag(&req.core.from.raw),
            remote_target: contact_uri(&req.headers).unwrap_or_else(|| req.core.from.uri.clone()),
            route_set: record_routes(&req.headers),
            local_cseq: rand::random::<u16>() as u32 + 1,
            remote_cseq: Some(req.core.cseq.seq),
            peer,
        }
    }

    /// The UAC side of a new dialog we are about to start.
    pub fn outgoing(local_uri: String, remote_uri: String, target: String, peer: Peer) -> Dialog {
        Dialog {
            call_id: format!("{:032x}@tsunagu", rand::random::<u128>()),
            local_tag: format!("{:016x}", rand::random::<u64>()),
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

    /// Build a request in this dialog. `cseq` None takes the next number.
    pub fn request(&mut self, local: &LocalAddrs, token: u64, method: &str, cseq: Option<u32>, extra: &[(&str, String)], body: Option<(&str, &[u8])>) -> Option<Request> {
        let seq = match cseq {
            Some(s) => s,
            None => {
                self.local_cseq += 1;
                self.local_cseq
            }
        };
        let branch = new_branch(token);
        self.build(local, &branch, method, seq, extra, body)
    }

    pub fn build(&self, local: &LocalAddrs, branch: &str, method: &str, seq: u32, extra: &[(&str, String)], body: Option<(&str, &[u8])>) -> Option<Request> {
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
        let _ = write!(s, "User-Agent: Tsunagu/{}\r\n", env!("CARGO_PKG_VERSION"));
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
        match parse_message(&bytes, Framing::Datagram, &Limits::default()) {
            Ok(tsunagu_sip::Message::Request(r)) => Some(r),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, method, "could not build a request (bad URI from a peer?)");
                None
            }
        }
    }

    /// The ACK for a 2xx to our INVITE with CSeq `seq` (RFC 3261 §13.2.2.4):
    /// a new transaction-less request, same CSeq number.
    pub fn ack_bytes(&self, local: &LocalAddrs, token: u64, seq: u32, body: Option<(&str, &[u8])>) -> Option<Bytes> {
        self.build(local, &new_branch(token), "ACK", seq, &[], body).map(|r| r.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_tag_keeps_other_params() {
        assert_eq!(strip_tag("\"A\" <sip:1@x>;tag=abc"), "\"A\" <sip:1@x>");
        assert_eq!(strip_tag("<sip:1@x>;foo=1;tag=abc"), "<sip:1@x>;foo=1");
        assert_eq!(strip_tag("sip:1@x;tag=abc"), "sip:1@x");
    }

    #[test]
    fn branch_carries_the_call_token() {
        let b = new_branch(0xdead_beef);
        assert!(b.starts_with("z9hG4bK"));
        assert_eq!(token_of_branch(&b), Some(0xdead_beef));
        assert_eq!(token_of_branch("z9hG4bKnothex"), None);
    }
}
