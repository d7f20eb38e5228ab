//! A fake SIP phone for the end-to-end tests: a tiny user agent on one UDP
//! socket on 127.0.0.1 that registers an extension (digest), answers the
//! INVITEs the PBX sends it the way the test says (answer after a delay,
//! ring, busy, reject, stay silent, or let its 200 cross the CANCEL), and
//! can place calls of its own (INVITE, 407, INVITE with Proxy-Authorization,
//! ACK, BYE).
//!
//! Everything it receives and sends is recorded with a timestamp, so tests
//! can say "1002 was rung", "was CANCELled", "got ACK and BYE", "its
//! INVITEs came 2 s apart". A background thread serves the socket; it
//! stops (bounded) when the `Phone` is dropped. Every wait is bounded.

use super::{
    digest_authorization, parse_challenge, udp_register, unique, wait_for, SipMsg, UdpClient,
    LOCALHOST,
};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How the phone treats an INVITE from the PBX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// 180 at once, then 200 with a G.711 answer after this long. (With
    /// any ringing behaviour, an offer without PCMU/PCMA is refused with
    /// 488 at once, as a real phone does.)
    AnswerAfter(Duration),
    /// 180 and nothing more: rings until CANCELled.
    Ring,
    /// 486 Busy Here at once.
    Busy,
    /// This final status at once (e.g. 603, 480).
    Reject(u16),
    /// Never says anything.
    Silent,
    /// 180; when the CANCEL comes the phone first sends 200 OK for the INVITE
    /// and only then answers the CANCEL (200, no 487): exactly what the PBX
    /// sees when the phone's answer crossed its CANCEL on the wire.
    AnswerOnCancel,
}

/// One message the phone received or sent.
#[derive(Clone, Debug)]
pub struct Event {
    pub at: Instant,
    /// Received (true) or sent by the phone (false).
    pub incoming: bool,
    pub peer: SocketAddr,
    pub msg: SipMsg,
}

impl Event {
    /// The method of a request, None for a response.
    pub fn method(&self) -> Option<&str> {
        if self.msg.status().is_some() {
            return None;
        }
        self.msg.start_line.split(' ').next()
    }
    pub fn call_id(&self) -> &str {
        self.msg.call_id().unwrap_or("")
    }
}

/// An INVITE dialog the PBX started with this phone.
struct InCall {
    invite: SipMsg,
    src: SocketAddr,
    to_tag: String,
    behaviour: Behaviour,
    /// When to send the 200 (AnswerAfter).
    answer_at: Option<Instant>,
    /// Bytes of the last response to the INVITE (resent on retransmission).
    last_response: Option<Vec<u8>>,
    final_code: Option<u16>,
    /// Retransmission of the final response until the ACK (timer G / 2xx).
    retrans_next: Option<Instant>,
    retrans_interval: Duration,
    retrans_until: Option<Instant>,
    acked: bool,
    byed: bool,
}

struct Shared {
    behaviour: Behaviour,
    log: Vec<Event>,
    calls: HashMap<String, InCall>,
    /// ACKs of our own calls' 2xx, by Call-ID: resent on a retransmitted 2xx.
    out_acks: HashMap<String, Vec<u8>>,
}

/// A registered fake phone. Dropping it stops its thread.
pub struct Phone {
    pub ext: String,
    password: String,
    pub local: SocketAddr,
    pub server: SocketAddr,
    /// The RTP port it announces (a bound socket that is never read).
    pub rtp_port: u16,
    pub started: Instant,
    sock: UdpSocket,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _rtp: UdpSocket,
}

/// How long a phone waits for the PBX's answers to its own requests.
pub const PHONE_DEADLINE: Duration = Duration::from_secs(8);

impl Phone {
    /// Bind on 127.0.0.1, REGISTER `ext` (digest) with the PBX, start
    /// serving. Panics when the registration does not get 200.
    pub fn register(server: SocketAddr, ext: &str, password: &str, behaviour: Behaviour) -> Phone {
        let sock = UdpSocket::bind((LOCALHOST, 0)).expect("bind phone socket");
        let local = sock.local_addr().unwrap();
        let rtp = UdpSocket::bind((LOCALHOST, 0)).expect("bind phone RTP socket");
        let rtp_port = rtp.local_addr().unwrap().port();
        let client = UdpClient {
            sock: sock.try_clone().unwrap(),
            server,
            local,
        };
        let contact = format!("sip:{ext}@{local}");
        let r = udp_register(&client, ext, password, Some(&contact), Some(3600));
        assert_eq!(
            r.status(),
            Some(200),
            "phone {ext}: REGISTER answered:\n{}",
            r.text()
        );
        let shared = Arc::new(Mutex::new(Shared {
            behaviour,
            log: Vec::new(),
            calls: HashMap::new(),
            out_acks: HashMap::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut ua = Ua {
            ext: ext.to_string(),
            sock: sock.try_clone().unwrap(),
            local,
            rtp_port,
            shared: shared.clone(),
        };
        let stop2 = stop.clone();
        let thread = thread::Builder::new()
            .name(format!("phone-{ext}"))
            .spawn(move || ua.serve(&stop2))
            .unwrap();
        Phone {
            ext: ext.to_string(),
            password: password.to_string(),
            local,
            server,
            rtp_port,
            started: Instant::now(),
            sock,
            shared,
            stop,
            thread: Some(thread),
            _rtp: rtp,
        }
    }

    /// Change how the next INVITEs are treated.
    pub fn set_behaviour(&self, b: Behaviour) {
        self.shared.lock().unwrap().behaviour = b;
    }

    /// Everything received and sent so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.lock().unwrap().log.clone()
    }

    /// Requests of `method` the phone received (retransmissions included).
    pub fn requests(&self, method: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.incoming && e.method() == Some(method))
            .collect()
    }

    /// `method` requests received in the dialog `call_id`.
    pub fn requests_in(&self, method: &str, call_id: &str) -> Vec<Event> {
        self.requests(method)
            .into_iter()
            .filter(|e| e.call_id() == call_id)
            .collect()
    }

    /// The first transmission of each new (out-of-dialog) INVITE, in order:
    /// one per time the PBX rang this phone.
    pub fn invites(&self) -> Vec<Event> {
        let mut seen = std::collections::HashSet::new();
        self.requests("INVITE")
            .into_iter()
            .filter(|e| !has_to_tag(&e.msg))
            .filter(|e| seen.insert(e.call_id().to_string()))
            .collect()
    }

    /// Wait until the PBX has rung this phone `n` times; returns the INVITEs.
    pub fn wait_invites(&self, n: usize, timeout: Duration) -> Vec<Event> {
        wait_for(
            &format!("{n} INVITE(s) at phone {}\n{}", self.ext, self.transcript()),
            timeout,
            || {
                let v = self.invites();
                (v.len() >= n).then_some(v)
            },
        )
    }

    /// Wait for a `method` request in dialog `call_id`.
    pub fn wait_request_in(&self, method: &str, call_id: &str, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.requests_in(method, call_id).into_iter().next() {
                return e;
            }
            if Instant::now() >= deadline {
                panic!(
                    "phone {}: no {method} in dialog {call_id} within {timeout:?}; transcript:\n{}",
                    self.ext,
                    self.transcript()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Final responses the phone sent to the INVITE of `call_id`.
    pub fn finals_sent(&self, call_id: &str) -> Vec<u16> {
        self.events()
            .iter()
            .filter(|e| !e.incoming && e.call_id() == call_id)
            .filter(|e| e.msg.cseq_method() == Some("INVITE"))
            .filter_map(|e| e.msg.status())
            .filter(|c| *c >= 200)
            .collect()
    }

    /// Dialogs this phone answered (200 sent) that are still up: neither a
    /// BYE came nor did the phone hang up. Used to show no leg is left
    /// hanging after a call.
    pub fn open_dialogs(&self) -> Vec<String> {
        let s = self.shared.lock().unwrap();
        s.calls
            .iter()
            .filter(|(_, c)| c.final_code == Some(200) && !c.byed)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether the phone got the ACK for its answer in `call_id`.
    pub fn acked(&self, call_id: &str) -> bool {
        self.shared
            .lock()
            .unwrap()
            .calls
            .get(call_id)
            .map(|c| c.acked)
            .unwrap_or(false)
    }

    /// Whether the phone's answer in `call_id` was ACKed and the dialog then
    /// ended by a BYE from the PBX: a leg that was closed properly.
    pub fn acked_and_hung_up(&self, call_id: &str) -> bool {
        self.acked(call_id) && !self.requests_in("BYE", call_id).is_empty()
    }

    /// One line per message, relative to the phone's start, for failures.
    pub fn transcript(&self) -> String {
        transcript(&self.ext, self.started, &self.events())
    }

    fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.sock.send_to(bytes, to).expect("phone send");
        let (msg, _) = SipMsg::parse(bytes).expect("own message parses");
        self.shared.lock().unwrap().log.push(Event {
            at: Instant::now(),
            incoming: false,
            peer: to,
            msg,
        });
    }

    /// Wait for the final response to (call_id, cseq, method), resending
    /// `req` like timer A until a provisional or final response arrives.
    fn transact(
        &self,
        req: &str,
        call_id: &str,
        cseq: u32,
        method: &str,
        timeout: Duration,
    ) -> SipMsg {
        let deadline = Instant::now() + timeout;
        let mut interval = Duration::from_millis(500);
        let mut next_send = Instant::now();
        let mut provisional = false;
        loop {
            let got = {
                let s = self.shared.lock().unwrap();
                let mut prov = false;
                let mut fin = None;
                for e in s.log.iter().filter(|e| e.incoming) {
                    let Some(code) = e.msg.status() else { continue };
                    if e.call_id() != call_id || e.msg.cseq_method() != Some(method) {
                        continue;
                    }
                    let seq = e
                        .msg
                        .header("cseq")
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<u32>().ok());
                    if seq != Some(cseq) {
                        continue;
                    }
                    if code >= 200 {
                        fin = Some(e.msg.clone());
                        break;
                    }
                    prov = true;
                }
                (prov, fin)
            };
            if let Some(f) = got.1 {
                return f;
            }
            provisional |= got.0;
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "phone {}: no final response to {method} (CSeq {cseq}) within {timeout:?}; transcript:\n{}",
                    self.ext,
                    self.transcript()
                );
            }
            if !provisional && now >= next_send {
                self.send(req.as_bytes(), self.server);
                next_send = now + interval;
                interval = (interval * 2).min(Duration::from_secs(4));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Place a call: dial `number` at the PBX (answering its 407 with
    /// digest), ACK the final answer. Returns the call, answered or not.
    pub fn dial(&self, number: &str, timeout: Duration) -> OutCall {
        let call_id = unique("phonecall-") + "@e2e";
        let from_tag = unique("pt");
        let ruri = format!("sip:{number}@{}", self.server);
        let to = format!("<sip:{number}@{}>", self.server.ip());
        let from = format!("<sip:{}@{}>;tag={from_tag}", self.ext, self.server.ip());
        let sdp = offer_sdp(self.rtp_port);
        let build = |branch: &str, cseq: u32, auth: Option<&str>| {
            let mut s = format!(
                "INVITE {ruri} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: {from}\r\n\
                 To: {to}\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq} INVITE\r\n\
                 Contact: <sip:{ext}@{local}>\r\n\
                 Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO\r\n\
                 User-Agent: tsunagu-e2e-phone\r\n",
                local = self.local,
                ext = self.ext,
            );
            if let Some(a) = auth {
                let _ = write!(s, "Proxy-Authorization: {a}\r\n");
            }
            let _ = write!(
                s,
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            );
            s
        };
        let b1 = format!("z9hG4bK{}", unique("pi"));
        let r1 = self.transact(&build(&b1, 1, None), &call_id, 1, "INVITE", timeout);
        let (resp, branch, cseq) = if r1.status() == Some(407) {
            self.ack_error(&r1, &ruri, &b1, 1);
            let ch = r1
                .headers_named("proxy-authenticate")
                .into_iter()
                .map(parse_challenge)
                .find(|c| c.scheme.eq_ignore_ascii_case("digest") && c.algorithm() == "MD5")
                .unwrap_or_else(|| panic!("no Digest MD5 challenge in the 407:\n{}", r1.text()));
            let auth = digest_authorization(&ch, &self.ext, &self.password, "INVITE", &ruri);
            let b2 = format!("z9hG4bK{}", unique("pi"));
            let r2 = self.transact(&build(&b2, 2, Some(&auth)), &call_id, 2, "INVITE", timeout);
            (r2, b2, 2)
        } else {
            (r1, b1, 1)
        };
        let code = resp.status().unwrap();
        let to_tag = resp.header("to").and_then(tag_of).map(str::to_string);
        let remote_target = resp
            .header("contact")
            .and_then(uri_in_brackets)
            .unwrap_or_else(|| ruri.clone());
        if (200..300).contains(&code) {
            let ack = format!(
                "ACK {remote_target} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: {from}\r\n\
                 To: {to};tag={tag}\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq} ACK\r\n\
                 Content-Length: 0\r\n\r\n",
                local = self.local,
                b = unique("pa"),
                tag = to_tag.clone().unwrap_or_default(),
            );
            self.send(ack.as_bytes(), self.server);
            self.shared
                .lock()
                .unwrap()
                .out_acks
                .insert(call_id.clone(), ack.into_bytes());
        } else {
            self.ack_error(&resp, &ruri, &branch, cseq);
        }
        OutCall {
            call_id,
            from,
            to,
            to_tag,
            remote_target,
            cseq,
            response: resp,
        }
    }

    /// ACK for a non-2xx final response: the INVITE's branch, the
    /// response's To.
    fn ack_error(&self, resp: &SipMsg, ruri: &str, branch: &str, cseq: u32) {
        let ack = format!(
            "ACK {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} ACK\r\n\
             Content-Length: 0\r\n\r\n",
            local = self.local,
            from = resp.header("from").unwrap_or(""),
            to = resp.header("to").unwrap_or(""),
            cid = resp.call_id().unwrap_or(""),
        );
        self.send(ack.as_bytes(), self.server);
    }

    /// Hang up an answered call of ours: BYE, wait for its final answer.
    pub fn hangup(&self, call: &OutCall) -> SipMsg {
        let cseq = call.cseq + 1;
        let bye = format!(
            "BYE {target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to};tag={tag}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} BYE\r\n\
             Content-Length: 0\r\n\r\n",
            target = call.remote_target,
            local = self.local,
            b = unique("pb"),
            from = call.from,
            to = call.to,
            tag = call.to_tag.clone().unwrap_or_default(),
            cid = call.call_id,
        );
        self.transact(&bye, &call.call_id, cseq, "BYE", PHONE_DEADLINE)
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The thread looks at the flag at least every 10 ms.
            let _ = t.join();
        }
        if thread::panicking() {
            eprintln!(
                "[e2e] phone {} transcript:\n{}",
                self.ext,
                self.transcript()
            );
        }
    }
}

/// A call the phone placed.
#[derive(Debug, Clone)]
pub struct OutCall {
    pub call_id: String,
    from: String,
    to: String,
    pub to_tag: Option<String>,
    remote_target: String,
    cseq: u32,
    /// The final response to the (authenticated) INVITE.
    pub response: SipMsg,
}

impl OutCall {
    pub fn status(&self) -> u16 {
        self.response.status().unwrap_or(0)
    }
}

/// The serving side, on its own thread.
struct Ua {
    ext: String,
    sock: UdpSocket,
    local: SocketAddr,
    rtp_port: u16,
    shared: Arc<Mutex<Shared>>,
}

impl Ua {
    fn serve(&mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            // Wake for the next answer or retransmission on time, and at
            // least every 10 ms to see the stop flag. Socket timeouts are
            // rounded up to the kernel tick (1-4 ms), too coarse for the race
            // tests, which time answers to a tenth of a millisecond: when a
            // timer is that close, poll without blocking and sleep briefly.
            let left = self
                .next_timer()
                .map(|t| t.saturating_duration_since(Instant::now()));
            let near = left.is_some_and(|l| l < Duration::from_millis(5));
            if near {
                let _ = self.sock.set_nonblocking(true);
            } else {
                let _ = self.sock.set_nonblocking(false);
                let wait = left
                    .unwrap_or(Duration::from_millis(10))
                    .clamp(Duration::from_millis(1), Duration::from_millis(10));
                let _ = self.sock.set_read_timeout(Some(wait));
            }
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Some((msg, _)) = SipMsg::parse(&buf[..n]) {
                        self.on_message(msg, from);
                    }
                }
                Err(ref e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if near {
                        thread::sleep(Duration::from_micros(20));
                    }
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
            self.on_tick();
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let s = self.shared.lock().unwrap();
        s.calls
            .values()
            .flat_map(|c| {
                [
                    c.answer_at.filter(|_| c.final_code.is_none()),
                    c.retrans_next.filter(|_| !c.acked),
                ]
            })
            .flatten()
            .min()
    }

    fn send(&self, s: &mut Shared, bytes: &[u8], to: SocketAddr) {
        let _ = self.sock.send_to(bytes, to);
        if let Some((msg, _)) = SipMsg::parse(bytes) {
            s.log.push(Event {
                at: Instant::now(),
                incoming: false,
                peer: to,
                msg,
            });
        }
    }

    fn on_message(&mut self, msg: SipMsg, from: SocketAddr) {
        let shared = self.shared.clone();
        let mut guard = shared.lock().unwrap();
        let s = &mut *guard;
        s.log.push(Event {
            at: Instant::now(),
            incoming: true,
            peer: from,
            msg: msg.clone(),
        });
        if let Some(code) = msg.status() {
            // A retransmitted 2xx of our own call: ACK it again.
            if (200..300).contains(&code) && msg.cseq_method() == Some("INVITE") {
                if let Some(ack) = msg.call_id().and_then(|c| s.out_acks.get(c)).cloned() {
                    self.send(s, &ack, from);
                }
            }
            return;
        }
        let method = msg.start_line.split(' ').next().unwrap_or("").to_string();
        let call_id = msg.call_id().unwrap_or("").to_string();
        match method.as_str() {
            "INVITE" if !has_to_tag(&msg) => self.on_invite(s, msg, from, call_id),
            "ACK" => {
                if let Some(c) = s.calls.get_mut(&call_id) {
                    c.acked = true;
                    c.retrans_next = None;
                }
            }
            "CANCEL" => self.on_cancel(s, msg, from, call_id),
            "BYE" => {
                let known = s.calls.contains_key(&call_id) || s.out_acks.contains_key(&call_id);
                if let Some(c) = s.calls.get_mut(&call_id) {
                    c.byed = true;
                    c.retrans_next = None;
                }
                let r = response(
                    &msg,
                    if known { 200 } else { 481 },
                    None,
                    None,
                    &self.ext,
                    self.local,
                );
                self.send(s, r.as_bytes(), from);
            }
            "INVITE" | "UPDATE" => {
                // A refresh or re-offer in an answered dialog: same answer.
                let body = answer_sdp(&msg, self.rtp_port).ok();
                let r = response(&msg, 200, None, body.as_deref(), &self.ext, self.local);
                self.send(s, r.as_bytes(), from);
            }
            _ => {
                let r = response(&msg, 200, None, None, &self.ext, self.local);
                self.send(s, r.as_bytes(), from);
            }
        }
    }

    fn on_invite(&self, s: &mut Shared, msg: SipMsg, from: SocketAddr, call_id: String) {
        if let Some(c) = s.calls.get(&call_id) {
            // A retransmission: say the last thing again.
            if let Some(b) = c.last_response.clone() {
                self.send(s, &b, from);
            }
            return;
        }
        let behaviour = s.behaviour.clone();
        let to_tag = unique("ph");
        let mut c = InCall {
            invite: msg.clone(),
            src: from,
            to_tag: to_tag.clone(),
            behaviour: behaviour.clone(),
            answer_at: None,
            last_response: None,
            final_code: None,
            retrans_next: None,
            retrans_interval: Duration::from_millis(500),
            retrans_until: None,
            acked: false,
            byed: false,
        };
        match behaviour {
            Behaviour::Silent => {}
            Behaviour::Busy => self.final_response(s, &mut c, 486),
            Behaviour::Reject(code) => self.final_response(s, &mut c, code),
            // Like a real phone: an offer it cannot take is refused at once,
            // before it alerts anyone.
            Behaviour::Ring | Behaviour::AnswerOnCancel | Behaviour::AnswerAfter(_)
                if answer_sdp(&msg, self.rtp_port).is_err() =>
            {
                self.final_response(s, &mut c, 488)
            }
            Behaviour::Ring | Behaviour::AnswerOnCancel | Behaviour::AnswerAfter(_) => {
                let r = response(&msg, 180, Some(&to_tag), None, &self.ext, self.local);
                self.send(s, r.as_bytes(), from);
                c.last_response = Some(r.into_bytes());
                if let Behaviour::AnswerAfter(d) = behaviour {
                    c.answer_at = Some(Instant::now() + d);
                }
            }
        }
        s.calls.insert(call_id, c);
        self.on_tick_locked(s);
    }

    fn on_cancel(&self, s: &mut Shared, msg: SipMsg, from: SocketAddr, call_id: String) {
        let Some(mut c) = s.calls.remove(&call_id) else {
            let r = response(&msg, 481, None, None, &self.ext, self.local);
            self.send(s, r.as_bytes(), from);
            return;
        };
        let tag = c.to_tag.clone();
        if c.final_code.is_none() {
            if c.behaviour == Behaviour::AnswerOnCancel {
                // Our 200 "was already on the wire" when the CANCEL came.
                self.final_response(s, &mut c, 200);
                let r = response(&msg, 200, Some(&tag), None, &self.ext, self.local);
                self.send(s, r.as_bytes(), from);
            } else {
                let r = response(&msg, 200, Some(&tag), None, &self.ext, self.local);
                self.send(s, r.as_bytes(), from);
                self.final_response(s, &mut c, 487);
            }
        } else {
            // Too late: the INVITE has its final answer; the CANCEL does nothing.
            let r = response(&msg, 200, Some(&tag), None, &self.ext, self.local);
            self.send(s, r.as_bytes(), from);
        }
        s.calls.insert(call_id, c);
    }

    /// Send the final response to an INVITE and start retransmitting it
    /// until the ACK (at most 32 s, like timers G/H and the 2xx rule).
    fn final_response(&self, s: &mut Shared, c: &mut InCall, code: u16) {
        let (code, body) = if code == 200 {
            match answer_sdp(&c.invite, self.rtp_port) {
                Ok(b) => (200, Some(b)),
                Err(()) => (488, None),
            }
        } else {
            (code, None)
        };
        let r = response(
            &c.invite,
            code,
            Some(&c.to_tag),
            body.as_deref(),
            &self.ext,
            self.local,
        );
        self.send(s, r.as_bytes(), c.src);
        c.last_response = Some(r.into_bytes());
        c.final_code = Some(code);
        c.answer_at = None;
        let now = Instant::now();
        c.retrans_interval = Duration::from_millis(500);
        c.retrans_next = Some(now + c.retrans_interval);
        c.retrans_until = Some(now + Duration::from_secs(32));
    }

    fn on_tick(&mut self) {
        let shared = self.shared.clone();
        let mut guard = shared.lock().unwrap();
        self.on_tick_locked(&mut guard);
    }

    fn on_tick_locked(&self, s: &mut Shared) {
        let now = Instant::now();
        let ids: Vec<String> = s.calls.keys().cloned().collect();
        for id in ids {
            let mut c = s.calls.remove(&id).unwrap();
            if c.final_code.is_none() && c.answer_at.is_some_and(|t| now >= t) {
                self.final_response(s, &mut c, 200);
            }
            if !c.acked && c.retrans_next.is_some_and(|t| now >= t) {
                if c.retrans_until.is_some_and(|u| now >= u) {
                    c.retrans_next = None;
                } else if let Some(b) = c.last_response.clone() {
                    self.send(s, &b, c.src);
                    c.retrans_interval = (c.retrans_interval * 2).min(Duration::from_secs(4));
                    c.retrans_next = Some(now + c.retrans_interval);
                }
            }
            s.calls.insert(id, c);
        }
    }
}

fn has_to_tag(m: &SipMsg) -> bool {
    m.header("to").and_then(tag_of).is_some()
}

/// The `tag` parameter of a From/To value.
pub fn tag_of(v: &str) -> Option<&str> {
    let params = match v.rfind('>') {
        Some(i) => &v[i + 1..],
        None => v,
    };
    params
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .filter(|t| !t.is_empty())
}

/// `sip:...` inside `<...>` (or the whole value).
fn uri_in_brackets(v: &str) -> Option<String> {
    let v = v.split(',').next()?.trim();
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if b > a => Some(v[a + 1..b].to_string()),
        _ => Some(v.split(';').next()?.trim().to_string()),
    }
}

/// A response to `req`: Via, From, Call-ID, CSeq copied; To with our tag.
fn response(
    req: &SipMsg,
    code: u16,
    tag: Option<&str>,
    sdp: Option<&str>,
    ext: &str,
    local: SocketAddr,
) -> String {
    let reason = match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        _ => "Answer",
    };
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.headers_named("via") {
        let _ = write!(s, "Via: {v}\r\n");
    }
    let _ = write!(s, "From: {}\r\n", req.header("from").unwrap_or(""));
    let to = req.header("to").unwrap_or("");
    match tag {
        Some(t) if tag_of(to).is_none() => {
            let _ = write!(s, "To: {to};tag={t}\r\n");
        }
        _ => {
            let _ = write!(s, "To: {to}\r\n");
        }
    }
    let _ = write!(s, "Call-ID: {}\r\n", req.call_id().unwrap_or(""));
    let _ = write!(s, "CSeq: {}\r\n", req.header("cseq").unwrap_or(""));
    if (101..300).contains(&code) && req.cseq_method() == Some("INVITE") {
        let _ = write!(s, "Contact: <sip:{ext}@{local}>\r\n");
    }
    s.push_str("User-Agent: tsunagu-e2e-phone\r\n");
    match sdp {
        Some(b) => {
            let _ = write!(
                s,
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
        }
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
    s
}

/// The phone's own offer: PCMU, PCMA, telephone-event.
fn offer_sdp(rtp_port: u16) -> String {
    format!(
        "v=0\r\no=phone 1 1 IN IP4 {LOCALHOST}\r\ns=-\r\nc=IN IP4 {LOCALHOST}\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// The payload types of the audio m= line of an SDP, with their rtpmap
/// encodings (static 0 and 8 known without one).
pub fn audio_formats(sdp: &str) -> Vec<(String, String)> {
    let mut fmts: Vec<String> = Vec::new();
    let mut in_audio = false;
    let mut maps: HashMap<String, String> = HashMap::new();
    for line in sdp.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
            if in_audio {
                fmts = m.split_whitespace().skip(3).map(str::to_string).collect();
            }
        } else if in_audio {
            if let Some(r) = line.strip_prefix("a=rtpmap:") {
                if let Some((pt, enc)) = r.split_once(' ') {
                    let name = enc.split('/').next().unwrap_or("").to_string();
                    maps.insert(pt.trim().to_string(), name);
                }
            }
        }
    }
    fmts.into_iter()
        .map(|pt| {
            let enc = maps.get(&pt).cloned().unwrap_or_else(|| match pt.as_str() {
                "0" => "PCMU".into(),
                "8" => "PCMA".into(),
                _ => String::new(),
            });
            (pt, enc)
        })
        .collect()
}

/// The answer to the PBX's offer: PCMU (else PCMA) and telephone-event when
/// offered; Err when the offer has neither G.711 codec.
fn answer_sdp(invite: &SipMsg, rtp_port: u16) -> Result<String, ()> {
    let offer = String::from_utf8_lossy(&invite.body).into_owned();
    let fmts = audio_formats(&offer);
    let codec = fmts
        .iter()
        .find(|(_, e)| e.eq_ignore_ascii_case("PCMU"))
        .or_else(|| fmts.iter().find(|(_, e)| e.eq_ignore_ascii_case("PCMA")))
        .cloned()
        .ok_or(())?;
    let te = fmts
        .iter()
        .find(|(_, e)| e.eq_ignore_ascii_case("telephone-event"))
        .cloned();
    let mut pts = vec![codec.0.clone()];
    let mut attrs = format!("a=rtpmap:{} {}/8000\r\n", codec.0, codec.1);
    if let Some((pt, _)) = te {
        pts.push(pt.clone());
        let _ = write!(
            attrs,
            "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"
        );
    }
    Ok(format!(
        "v=0\r\no=phone 2 2 IN IP4 {LOCALHOST}\r\ns=-\r\nc=IN IP4 {LOCALHOST}\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP {}\r\n{attrs}a=ptime:20\r\na=sendrecv\r\n",
        pts.join(" ")
    ))
}

/// Lines like `+1234ms <- INVITE sip:... (Call-ID ...)` for failure output.
pub fn transcript(name: &str, start: Instant, events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        let ms = e.at.saturating_duration_since(start).as_millis();
        let _ = writeln!(
            out,
            "  [{name}] +{ms:>6}ms {} {} | CSeq {} | Call-ID {}",
            if e.incoming { "<-" } else { "->" },
            e.msg.start_line,
            e.msg.header("cseq").unwrap_or("?"),
            e.call_id()
        );
    }
    if out.is_empty() {
        out.push_str(&format!("  [{name}] (no messages)\n"));
    }
    out
}
