//! A raw SIP caller for end-to-end tests that need exact control of what a
//! phone sends (headers, timing, its RTP source address): UDP only, digest
//! with MD5, just enough dialog state for ACK, PRACK and BYE.

use super::{md5_hex, unique, SipMsg};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

pub struct RawCaller {
    pub sip: UdpSocket,
    pub server: SocketAddr,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub cseq: u32,
}

impl RawCaller {
    pub fn recv(&self, timeout: Duration) -> SipMsg {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no SIP message within {timeout:?}");
            self.sip.set_read_timeout(Some(left)).unwrap();
            if let Ok((n, _)) = self.sip.recv_from(&mut buf) {
                if let Some((m, _)) = SipMsg::parse(&buf[..n]) {
                    return m;
                }
            }
        }
    }

    /// Wait for a final response (answering the server's own requests,
    /// e.g. a BYE, with 200 on the way).
    pub fn final_response(&self, timeout: Duration) -> SipMsg {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.recv(deadline.saturating_duration_since(Instant::now()));
            if m.status().is_some_and(|c| c >= 200) {
                return m;
            }
        }
    }

    pub fn invite(&mut self, to: &str, sdp: &str, auth: Option<String>) {
        self.invite_with(to, sdp, auth, "")
    }

    /// An INVITE with extra header lines (each ending in CRLF).
    pub fn invite_with(&mut self, to: &str, sdp: &str, auth: Option<String>, extra: &str) {
        self.cseq += 1;
        let local = self.sip.local_addr().unwrap();
        let auth = auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default();
        let msg = format!(
            "INVITE sip:{to}@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={br};rport\r\nMax-Forwards: 70\r\n\
From: <sip:1001@{srv}>;tag={ft}\r\nTo: <sip:{to}@{srv}>\r\nCall-ID: {cid}\r\nCSeq: {c} INVITE\r\nContact: <sip:1001@{local}>\r\n{auth}{extra}\
Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            srv = self.server,
            br = unique("z9hG4bK"),
            ft = self.from_tag,
            cid = self.call_id,
            c = self.cseq,
            len = sdp.len()
        );
        self.sip.send_to(msg.as_bytes(), self.server).unwrap();
    }

    pub fn in_dialog(&mut self, method: &str, cseq: u32, to: &str) {
        self.in_dialog_with(method, cseq, to, "")
    }

    /// An in-dialog request with extra header lines (each ending in CRLF).
    pub fn in_dialog_with(&mut self, method: &str, cseq: u32, to: &str, extra: &str) {
        // A body (and its length) may come with `extra`.
        let tail = if extra.contains("Content-Length:") { "" } else { "Content-Length: 0\r\n\r\n" };
        let local = self.sip.local_addr().unwrap();
        let msg = format!(
            "{method} sip:{to}@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={br};rport\r\nMax-Forwards: 70\r\n\
From: <sip:1001@{srv}>;tag={ft}\r\nTo: <sip:{to}@{srv}>;tag={tt}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n{extra}{tail}",
            srv = self.server,
            br = unique("z9hG4bK"),
            ft = self.from_tag,
            tt = self.to_tag.clone().unwrap_or_default(),
            cid = self.call_id,
        );
        self.sip.send_to(msg.as_bytes(), self.server).unwrap();
    }
}

/// A Proxy-Authorization value for extension 1001 with `password`.
pub fn digest(challenge: &str, uri: &str, password: &str) -> String {
    let get = |k: &str| {
        let i = challenge.find(&format!("{k}=\"")).unwrap_or_else(|| panic!("{k} in {challenge}")) + k.len() + 2;
        challenge[i..].split('"').next().unwrap().to_string()
    };
    let (realm, nonce) = (get("realm"), get("nonce"));
    let ha1 = md5_hex(&format!("1001:{realm}:{password}"));
    let ha2 = md5_hex(&format!("INVITE:{uri}"));
    let cnonce = "0a4f113b";
    let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
    format!("Digest username=\"1001\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\"")
}

impl RawCaller {
    /// ACK a non-2xx final response to our INVITE (same branch as the INVITE
    /// is what RFC 3261 §17.1.1.3 wants; the server's transaction layer
    /// accepts the To tag of its response).
    pub fn in_dialog_ack_for_failure(&self, resp: &SipMsg) {
        let via = resp.header("via").unwrap();
        let to = resp.header("to").unwrap();
        let msg = format!(
            "ACK sip:1002@{srv} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:1001@{srv}>;tag={ft}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {c} ACK\r\nContent-Length: 0\r\n\r\n",
            srv = self.server,
            ft = self.from_tag,
            cid = self.call_id,
            c = self.cseq
        );
        self.sip.send_to(msg.as_bytes(), self.server).unwrap();
    }
}

impl RawCaller {
    /// An in-dialog request with a body.
    pub fn in_dialog_body(&mut self, method: &str, cseq: u32, to: &str, content_type: &str, body: &str) {
        self.in_dialog_with(method, cseq, to, &format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    }

    /// Answer a request from the server (a BYE) with 200.
    pub fn respond_200(&self, req: &SipMsg) {
        self.respond_200_with_sdp(req, None);
    }

    /// Answer a request from the server with 200, with an SDP answer (a
    /// re-INVITE) when given.
    pub fn respond_200_with_sdp(&self, req: &SipMsg, sdp: Option<&str>) {
        let mut msg = String::from("SIP/2.0 200 OK\r\n");
        for name in ["via", "from", "to", "call-id", "cseq"] {
            for v in req.headers_named(name) {
                msg.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        match sdp {
            Some(body) => msg.push_str(&format!(
                "Contact: <sip:1001@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                self.sip.local_addr().unwrap(),
                body.len()
            )),
            None => msg.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.sip.send_to(msg.as_bytes(), self.server).unwrap();
    }
}
