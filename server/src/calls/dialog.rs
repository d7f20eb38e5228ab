//! The PBX's side of SIP dialogs (the dialog itself is
//! `tsunagu_sip::dialog::Dialog`, shared with the phone SDK): the server's
//! own addresses for Via and Contact, the call token carried in every
//! branch it makes (how responses and timeouts find their call, ADR 0004),
//! and the random Call-IDs, tags and first CSeqs the sans-IO dialog takes
//! from its caller.

use bytes::Bytes;
use std::net::SocketAddr;
pub use tsunagu_sip::dialog::{contact_uri, record_routes, strip_tag, Dialog, LocalAddress};
use tsunagu_sip::{Peer, Request, TransportKind};

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
}

impl LocalAddress for LocalAddrs {
    fn via(&self, t: TransportKind, branch: &str) -> String {
        format!("SIP/2.0/{} {};branch={};rport", t.via_name(), self.for_transport(t), branch)
    }

    fn contact(&self, t: TransportKind) -> String {
        let addr = self.for_transport(t);
        match t {
            TransportKind::Udp => format!("<sip:tsunagu@{addr}>"),
            TransportKind::Tcp => format!("<sip:tsunagu@{addr};transport=tcp>"),
            TransportKind::Tls => format!("<sips:tsunagu@{addr};transport=tls>"),
            TransportKind::Ws => format!("<sip:tsunagu@{addr};transport=ws>"),
        }
    }
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

/// The UAS side of a leg from the INVITE received.
pub fn incoming(req: &Request, peer: Peer, local_tag: String) -> Dialog {
    Dialog::from_incoming(req, peer, local_tag, rand::random::<u16>() as u32 + 1)
}

/// The UAC side of a new leg.
pub fn outgoing(local_uri: String, remote_uri: String, target: String, peer: Peer) -> Dialog {
    Dialog::outgoing(local_uri, remote_uri, target, peer, format!("{:032x}@tsunagu", rand::random::<u128>()), format!("{:016x}", rand::random::<u64>()))
}

/// The PBX's way to build requests in a dialog: branches carry the call
/// token, and a request that cannot be built (a peer's URI that does not
/// survive printing) is logged and skipped.
pub trait DialogExt {
    fn request_for(&mut self, local: &LocalAddrs, token: u64, method: &str, cseq: Option<u32>, extra: &[(&str, String)], body: Option<(&str, &[u8])>) -> Option<Request>;
    fn build_or_log(&self, local: &LocalAddrs, branch: &str, method: &str, seq: u32, extra: &[(&str, String)], body: Option<(&str, &[u8])>) -> Option<Request>;
    fn ack_for(&self, local: &LocalAddrs, token: u64, seq: u32, body: Option<(&str, &[u8])>) -> Option<Bytes>;
}

impl DialogExt for Dialog {
    fn request_for(&mut self, local: &LocalAddrs, token: u64, method: &str, cseq: Option<u32>, extra: &[(&str, String)], body: Option<(&str, &[u8])>) -> Option<Request> {
        self.request(local, &new_branch(token), method, cseq, extra, body).map_err(|e| log_build_error(&e, method)).ok()
    }

    fn build_or_log(&self, local: &LocalAddrs, branch: &str, method: &str, seq: u32, extra: &[(&str, String)], body: Option<(&str, &[u8])>) -> Option<Request> {
        self.build(local, branch, method, seq, extra, body).map_err(|e| log_build_error(&e, method)).ok()
    }

    fn ack_for(&self, local: &LocalAddrs, token: u64, seq: u32, body: Option<(&str, &[u8])>) -> Option<Bytes> {
        self.ack_bytes(local, &new_branch(token), seq, body).map_err(|e| log_build_error(&e, "ACK")).ok()
    }
}

fn log_build_error(e: &tsunagu_sip::ParseError, method: &str) {
    tracing::warn!(error = %e, method, "could not build a request (bad URI from a peer?)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_carries_the_call_token() {
        let b = new_branch(0xdead_beef);
        assert!(b.starts_with("z9hG4bK"));
        assert_eq!(token_of_branch(&b), Some(0xdead_beef));
        assert_eq!(token_of_branch("z9hG4bKnothex"), None);
    }
}
