//! One call of the phone, as a sans-IO engine over a `tsunagu_sip` dialog
//! (RFC 3261 §12–§15): an outgoing call (INVITE, digest answer to 407/401,
//! ringing, answer, ACK; CANCEL before an answer, BYE after) or an
//! incoming one (180, 200 with our SDP retransmitted until the ACK
//! arrives, reject; BYE either way). The driver runs the transactions and
//! the sockets; SDP comes from and goes to the media session.
//!
//! Not yet here: re-INVITE/UPDATE (hold, resume, a new address after a
//! network change), session timers, REFER transfers and 100rel: the next
//! steps of issue 4.

use crate::registration::Flow;
use crate::seed::splitmix64 as next;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tsunagu_sip::dialog::{Dialog, LocalAddress};
use tsunagu_sip::digest::{answer_challenge, parse_challenge, Challenge};
use tsunagu_sip::transaction::TxKey;
use tsunagu_sip::{response_to, Name, Peer, Request, Response, TransportKind};

/// How the phone names itself in Via and Contact on its flow.
#[derive(Debug, Clone)]
pub struct PhoneAddress {
    pub user: String,
    pub flow: Flow,
}

impl LocalAddress for PhoneAddress {
    fn via(&self, t: TransportKind, branch: &str) -> String {
        format!("SIP/2.0/{} {};branch={branch};rport", t.via_name(), self.flow.local)
    }
    fn contact(&self, t: TransportKind) -> String {
        match t {
            TransportKind::Udp => format!("<sip:{}@{}>", self.user, self.flow.local),
            TransportKind::Tcp => format!("<sip:{}@{};transport=tcp>", self.user, self.flow.local),
            TransportKind::Tls => format!("<sip:{}@{};transport=tls>", self.user, self.flow.local),
            TransportKind::Ws => format!("<sip:{}@{};transport=ws>", self.user, self.flow.local),
        }
    }
    fn user_agent(&self) -> String {
        concat!("Tsunagu-SDK/", env!("CARGO_PKG_VERSION")).to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallState {
    /// Outgoing, INVITE sent.
    Calling,
    /// Outgoing, the far end rings (180/183).
    Ringing,
    /// Incoming, not answered yet.
    Incoming,
    Connected,
    /// Hanging up (CANCEL or BYE sent).
    Ending,
    Ended { code: u16, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    Ringing,
    /// Early media: the SDP answer in a 183.
    EarlyMedia { sdp: Bytes },
    /// Outgoing: answered, with the SDP answer. Incoming: our answer was
    /// ACKed.
    Connected { sdp: Option<Bytes> },
    Ended { code: u16, reason: String },
    /// The far end sent a new offer in the call (hold, resume, a new
    /// address or codec, RFC 3264 §8): answer it with
    /// [`Call::answer_offer`].
    RemoteOffer { sdp: Bytes },
    /// Our own new offer (hold, resume, [`Call::reinvite`]) was answered.
    OfferAnswered { sdp: Bytes },
    /// Our new offer was refused (491 glare, 488 …); the call goes on as
    /// it was.
    OfferRefused { code: u16 },
    /// The far end asks us to call `target` in this call's place (a REFER,
    /// RFC 3515): a blind transfer, or an attended one when the URI carries
    /// `?Replaces=` (RFC 3891). Report how it goes with
    /// [`Call::notify_transfer`].
    TransferRequested { target: String },
    /// How our transfer of this call goes ([`Call::refer`]): the status of
    /// the transferee's new call (100, 180, 200 …) from its NOTIFYs, or our
    /// REFER's own refusal; `done` on the last one.
    TransferProgress { code: u16, done: bool },
    /// A key the far end pressed, sent as SIP INFO (RFC 4733 digits come
    /// from the media, see `AccountEvent`).
    Dtmf { digit: char },
}

#[derive(Debug, Clone)]
pub enum CallOutput {
    /// Send as a client transaction (INVITE, CANCEL, BYE).
    Request(Box<Request>),
    /// Answer through the server transaction `key`.
    Response { key: TxKey, response: Box<Response> },
    /// Send as they are over the flow: ACKs for 2xx, retransmitted 2xx.
    Raw(Bytes),
    Event(CallEvent),
}

/// Credentials to answer a proxy's challenge with.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

pub struct Call {
    dialog: Dialog,
    local: PhoneAddress,
    state: CallState,
    outgoing: bool,
    creds: Option<Credentials>,
    rng: u64,
    /// Outgoing: the INVITE in flight (for CANCEL) and its offer.
    invite: Option<Request>,
    offer: Bytes,
    auth_tries: u8,
    /// Incoming: the INVITE's server transaction and our 2xx until ACKed.
    uas_key: Option<TxKey>,
    uas_invite: Option<Request>,
    ok_retransmit: Option<(Bytes, Instant, Duration, Instant)>,
    /// A re-INVITE or UPDATE with an offer, waiting for our answer.
    reoffer: Option<(TxKey, Request)>,
    /// Our last SDP, to answer a refresh that carries no offer.
    local_sdp: Bytes,
    /// CSeq of our re-INVITE in flight, and of the last one (its 2xx
    /// retransmissions are ACKed again).
    reinvite_cseq: Option<u32>,
    last_reinvite_cseq: Option<u32>,
    /// CSeq of our REFER while it waits for its answer.
    refer_cseq: Option<u32>,
    /// Headers our INVITE carries besides the usual (Replaces when this
    /// call takes another's place in an attended transfer).
    invite_headers: Vec<(&'static str, String)>,
    out: VecDeque<CallOutput>,
}

const T1: Duration = Duration::from_millis(500);
/// What the phone takes in a call.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO, UPDATE";
const T2: Duration = Duration::from_secs(4);

impl Call {
    /// Start an outgoing call to `target` (a number or extension) at the
    /// PBX `domain`, offering `sdp`.
    pub fn dial(local: PhoneAddress, peer: Peer, domain: &str, target: &str, sdp: Bytes, creds: Option<Credentials>, seed: u64) -> Call {
        Self::dial_with(local, peer, domain, target, sdp, creds, seed, Vec::new())
    }

    /// [`Call::dial`] where `target` may also be a whole SIP URI (a
    /// REFER's Refer-To), with extra headers for the INVITE (Replaces).
    #[allow(clippy::too_many_arguments)]
    pub fn dial_with(local: PhoneAddress, peer: Peer, domain: &str, target: &str, sdp: Bytes, creds: Option<Credentials>, seed: u64, invite_headers: Vec<(&'static str, String)>) -> Call {
        let mut rng = seed | 1;
        let call_id = format!("{:016x}{:016x}", next(&mut rng), next(&mut rng));
        let tag = format!("{:012x}", next(&mut rng) >> 16);
        let from = format!("<sip:{}@{domain}>", local.user);
        let uri = if target.starts_with("sip:") || target.starts_with("sips:") { target.to_string() } else { format!("sip:{target}@{domain}") };
        let dialog = Dialog::outgoing(from, format!("<{uri}>"), uri, peer, call_id, tag);
        let mut c = Call {
            dialog,
            local,
            state: CallState::Calling,
            outgoing: true,
            creds,
            rng,
            invite: None,
            offer: sdp,
            auth_tries: 0,
            uas_key: None,
            uas_invite: None,
            ok_retransmit: None,
            reoffer: None,
            local_sdp: Bytes::new(),
            reinvite_cseq: None,
            last_reinvite_cseq: None,
            refer_cseq: None,
            invite_headers: Vec::new(),
            out: VecDeque::new(),
        };
        c.local_sdp = c.offer.clone();
        c.invite_headers = invite_headers;
        c.send_invite(None);
        c
    }

    /// An incoming call from the INVITE the transaction layer passed up.
    /// Sends 180 at once.
    pub fn incoming(local: PhoneAddress, invite: Request, key: TxKey, peer: Peer, seed: u64) -> Call {
        let mut rng = seed | 1;
        let tag = format!("{:012x}", next(&mut rng) >> 16);
        let dialog = Dialog::from_incoming(&invite, peer, tag, (next(&mut rng) as u16) as u32 + 1);
        let mut c = Call {
            dialog,
            local,
            state: CallState::Incoming,
            outgoing: false,
            creds: None,
            rng,
            invite: None,
            offer: invite.body.clone(),
            auth_tries: 0,
            uas_key: Some(key),
            uas_invite: Some(invite),
            ok_retransmit: None,
            reoffer: None,
            local_sdp: Bytes::new(),
            reinvite_cseq: None,
            last_reinvite_cseq: None,
            refer_cseq: None,
            invite_headers: Vec::new(),
            out: VecDeque::new(),
        };
        c.respond(180, None);
        c
    }

    pub fn state(&self) -> &CallState {
        &self.state
    }

    pub fn call_id(&self) -> &str {
        &self.dialog.call_id
    }

    /// The SDP offer of an incoming call.
    pub fn remote_offer(&self) -> &Bytes {
        &self.offer
    }

    /// Answer an incoming call with our SDP.
    pub fn answer(&mut self, now: Instant, sdp: Bytes) {
        if self.state != CallState::Incoming {
            return;
        }
        self.local_sdp = sdp.clone();
        if let Some(bytes) = self.respond(200, Some(sdp)) {
            self.ok_retransmit = Some((bytes, now + T1, T1, now + 64 * T1));
        }
    }

    /// Refuse an incoming call (486 busy, 603 decline, …).
    pub fn reject(&mut self, code: u16) {
        if self.state == CallState::Incoming {
            self.respond(code, None);
            self.end(code, "rejected");
        }
    }

    /// Hang up: CANCEL before an answer, BYE after.
    pub fn hangup(&mut self) {
        match self.state {
            CallState::Calling | CallState::Ringing => {
                if let Some(inv) = &self.invite {
                    let text = cancel_for(inv);
                    if let Ok(tsunagu_sip::Message::Request(c)) = tsunagu_sip::parse_message(text.as_bytes(), tsunagu_sip::Framing::Datagram, &tsunagu_sip::Limits::default()) {
                        self.out.push_back(CallOutput::Request(Box::new(c)));
                    }
                }
                self.state = CallState::Ending;
            }
            CallState::Connected => {
                self.ok_retransmit = None;
                let branch = self.branch();
                if let Ok(bye) = self.dialog.request(&self.local, &branch, "BYE", None, &[], None) {
                    self.out.push_back(CallOutput::Request(Box::new(bye)));
                }
                self.state = CallState::Ending;
            }
            CallState::Incoming => self.reject(603),
            _ => {}
        }
    }

    /// A response of a client transaction of this call.
    pub fn handle_response(&mut self, resp: &Response) {
        if resp.core.call_id != self.dialog.call_id {
            return;
        }
        match resp.core.cseq.method.as_str() {
            "INVITE" if Some(resp.core.cseq.seq) == self.last_reinvite_cseq => self.on_reinvite_response(resp),
            "INVITE" => self.on_invite_response(resp),
            "BYE" if resp.code >= 200 => self.end(200, "hung up"),
            "REFER" if Some(resp.core.cseq.seq) == self.refer_cseq && resp.code >= 200 => {
                self.refer_cseq = None;
                // 202: the transferee took it on; NOTIFYs tell the rest.
                let done = resp.code >= 300;
                self.out.push_back(CallOutput::Event(CallEvent::TransferProgress { code: resp.code, done }));
            }
            _ => {}
        }
    }

    /// A request in this call's dialog (ACK, BYE, CANCEL; others get 501
    /// for now).
    pub fn handle_request(&mut self, now: Instant, req: &Request, key: TxKey) {
        match req.method.as_str() {
            "ACK" => {
                // For our answer to the INVITE, or to a re-INVITE.
                if self.ok_retransmit.take().is_some() && self.state == CallState::Incoming {
                    self.state = CallState::Connected;
                    self.out.push_back(CallOutput::Event(CallEvent::Connected { sdp: None }));
                }
            }
            "BYE" => {
                self.out.push_back(CallOutput::Response { key, response: Box::new(response_to(req, 200, None)) });
                self.ok_retransmit = None;
                self.end(200, "the other side hung up");
            }
            "CANCEL" => {
                self.out.push_back(CallOutput::Response { key, response: Box::new(response_to(req, 200, None)) });
                // After our 200 the INVITE has its final answer: a CANCEL
                // that crossed it changes nothing (RFC 3261 §9.2); the
                // caller will ACK and BYE.
                if self.state == CallState::Incoming && self.ok_retransmit.is_none() {
                    self.respond(487, None);
                    self.end(487, "the caller hung up");
                }
            }
            "INVITE" | "UPDATE" if self.state == CallState::Connected => {
                if self.reoffer.is_some() || self.ok_retransmit.is_some() {
                    // One offer at a time (RFC 3261 §14.2).
                    self.out.push_back(CallOutput::Response { key, response: Box::new(response_to(req, 491, None)) });
                } else if req.body.is_empty() {
                    // A refresh without an offer (session timer): our SDP
                    // again for an INVITE, nothing for an UPDATE.
                    let sdp = (req.method == "INVITE").then(|| self.local_sdp.clone());
                    self.respond_in_dialog(now, key, req, sdp);
                } else {
                    self.reoffer = Some((key, req.clone()));
                    self.out.push_back(CallOutput::Event(CallEvent::RemoteOffer { sdp: req.body.clone() }));
                }
            }
            "INVITE" | "UPDATE" => self.out.push_back(CallOutput::Response { key, response: Box::new(response_to(req, 491, None)) }),
            "REFER" if self.state == CallState::Connected => match refer_target(req) {
                Some(target) => {
                    self.out.push_back(CallOutput::Response { key, response: Box::new(response_to(req, 202, None)) });
                    self.out.push_back(CallOutput::Event(CallEvent::TransferRequested { target }));
                }
                None => self.out.push_back(CallOutput::Response { key, response: Box::new(response_to(req, 400, None)) }),
            },
            "NOTIFY" => {
                self.out.push_back(CallOutput::Response { key, response: Box::new(response_to(req, 200, None)) });
                let is_refer = req.headers.get_raw(&Name::from("Event")).next().is_some_and(|e| e.trim().to_ascii_lowercase().starts_with("refer"));
                if let (true, Some(code)) = (is_refer, sipfrag_code(&req.body)) {
                    let terminated = req.headers.get_raw(&Name::from("Subscription-State")).next().is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("terminated"));
                    self.out.push_back(CallOutput::Event(CallEvent::TransferProgress { code, done: terminated || code >= 200 }));
                }
            }
            "INFO" => {
                let ctype = req.headers.get_raw(&Name::CONTENT_TYPE).next().map(|v| v.to_string()).unwrap_or_default();
                self.out.push_back(CallOutput::Response { key, response: Box::new(response_to(req, 200, None)) });
                if let Some((digit, _)) = tsunagu_media::dtmf::parse_info(&ctype, &req.body) {
                    self.out.push_back(CallOutput::Event(CallEvent::Dtmf { digit }));
                }
            }
            _ => self.out.push_back(CallOutput::Response { key, response: Box::new(response_to(req, 501, None)) }),
        }
    }

    /// Transfer the far end to `refer_to` (a SIP URI; with `?Replaces=`
    /// for an attended transfer): a REFER in the call. False when the call
    /// is not connected or a REFER is already waiting for its answer.
    pub fn refer(&mut self, refer_to: &str) -> bool {
        if self.state != CallState::Connected || self.refer_cseq.is_some() {
            return false;
        }
        let branch = self.branch();
        let referred_by = self.dialog.local_uri.clone();
        match self.dialog.request(&self.local, &branch, "REFER", None, &[("Refer-To", format!("<{refer_to}>")), ("Referred-By", referred_by)], None) {
            Ok(req) => {
                self.refer_cseq = Some(req.core.cseq.seq);
                self.out.push_back(CallOutput::Request(Box::new(req)));
                true
            }
            Err(_) => false,
        }
    }

    /// Tell the far end, which asked us to transfer this call, how the new
    /// call goes (RFC 3515 §2.4.5: a NOTIFY with the status line as
    /// message/sipfrag); `done` ends the implicit subscription.
    pub fn notify_transfer(&mut self, code: u16, reason: &str, done: bool) {
        if self.state != CallState::Connected {
            return;
        }
        let branch = self.branch();
        let state = if done { "terminated;reason=noresource".to_string() } else { "active;expires=60".to_string() };
        let body = format!("SIP/2.0 {code} {reason}\r\n");
        if let Ok(req) = self.dialog.request(&self.local, &branch, "NOTIFY", None, &[("Event", "refer".to_string()), ("Subscription-State", state)], Some(("message/sipfrag;version=2.0", body.as_bytes()))) {
            self.out.push_back(CallOutput::Request(Box::new(req)));
        }
    }

    /// Ask the PBX to record this call from now on (`on`) or to stop: SIP
    /// INFO with `Record: on|off`, the header desk phones' record keys
    /// send. The PBX answers 200 when it does so, 403 when its policy does
    /// not allow it.
    pub fn request_recording(&mut self, on: bool) {
        if self.state != CallState::Connected {
            return;
        }
        let branch = self.branch();
        let header = [("Record", if on { "on" } else { "off" }.to_string())];
        if let Ok(req) = self.dialog.request(&self.local, &branch, "INFO", None, &header, None) {
            self.out.push_back(CallOutput::Request(Box::new(req)));
        }
    }

    /// Send a key press as SIP INFO (for a far end without RFC 4733).
    pub fn send_info_dtmf(&mut self, digit: char, duration_ms: u32) {
        if self.state != CallState::Connected {
            return;
        }
        let branch = self.branch();
        let (ctype, body) = tsunagu_media::dtmf::info_body(digit, duration_ms);
        if let Ok(req) = self.dialog.request(&self.local, &branch, "INFO", None, &[], Some((ctype, body.as_bytes()))) {
            self.out.push_back(CallOutput::Request(Box::new(req)));
        }
    }

    /// Whether a Replaces header (RFC 3891 §3: `call-id;to-tag=T;from-tag=F`,
    /// where to-tag is our tag and from-tag the far end's) names this
    /// call's dialog.
    pub fn matches_replaces(&self, header: &str) -> bool {
        let mut parts = header.split(';').map(str::trim);
        let Some(call_id) = parts.next() else { return false };
        let (mut to_tag, mut from_tag) = (None, None);
        for p in parts {
            match p.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("to-tag") => to_tag = Some(v.trim()),
                Some((k, v)) if k.trim().eq_ignore_ascii_case("from-tag") => from_tag = Some(v.trim()),
                _ => {}
            }
        }
        call_id == self.dialog.call_id && to_tag == Some(self.dialog.local_tag.as_str()) && from_tag.is_some() && from_tag == self.dialog.remote_tag.as_deref()
    }

    /// What identifies this call's dialog to its far end, for a Replaces
    /// header (RFC 3891: to-tag is the far end's tag, from-tag ours), and
    /// the far end's URI: what an attended transfer's Refer-To is made of.
    pub fn replaces(&self) -> Option<(String, String)> {
        let remote_tag = self.dialog.remote_tag.as_ref()?;
        let id = format!("{};to-tag={remote_tag};from-tag={}", self.dialog.call_id, self.dialog.local_tag);
        let uri = tsunagu_sip::message::parse_name_addr(&self.dialog.remote_uri).ok().map(|n| n.uri).unwrap_or_else(|| self.dialog.remote_uri.clone());
        Some((uri, id))
    }

    /// Whether a new offer of ours could go now (see [`Call::reinvite`]).
    pub fn can_offer(&self) -> bool {
        self.state == CallState::Connected && self.reinvite_cseq.is_none() && self.reoffer.is_none() && self.ok_retransmit.is_none()
    }

    /// Send a new offer in the call (hold, resume, a new address): a
    /// re-INVITE. False when the call is not connected or an offer is
    /// already under way (in either direction).
    pub fn reinvite(&mut self, sdp: Bytes) -> bool {
        if !self.can_offer() {
            return false;
        }
        let branch = self.branch();
        match self.dialog.request(&self.local, &branch, "INVITE", None, &[], Some(("application/sdp", &sdp))) {
            Ok(req) => {
                self.reinvite_cseq = Some(req.core.cseq.seq);
                self.last_reinvite_cseq = Some(req.core.cseq.seq);
                self.local_sdp = sdp;
                self.out.push_back(CallOutput::Request(Box::new(req)));
                true
            }
            Err(_) => false,
        }
    }

    /// The device moved to another network: from now on Via and Contact
    /// name the new flow. An offer of ours still travelling on the old flow
    /// is given up (its transaction can no longer complete), so that the
    /// offer with the new media address can go at once; its late answer,
    /// if one comes, is still ACKed.
    pub fn handover(&mut self, local: PhoneAddress) {
        self.local = local;
        self.reinvite_cseq = None;
    }

    fn on_reinvite_response(&mut self, resp: &Response) {
        match resp.code {
            100..=199 => {}
            200..=299 => {
                // ACK every 2xx, retransmissions too; report the first.
                let branch = self.branch();
                if let Ok(ack) = self.dialog.ack_bytes(&self.local, &branch, resp.core.cseq.seq, None) {
                    self.out.push_back(CallOutput::Raw(ack));
                }
                if self.reinvite_cseq.take().is_some() {
                    self.out.push_back(CallOutput::Event(CallEvent::OfferAnswered { sdp: resp.body.clone() }));
                }
            }
            code => {
                if self.reinvite_cseq.take().is_some() {
                    self.out.push_back(CallOutput::Event(CallEvent::OfferRefused { code }));
                }
            }
        }
    }

    /// Answer the far end's new offer (see [`CallEvent::RemoteOffer`]);
    /// `None` refuses it (488) and the call goes on as it was.
    pub fn answer_offer(&mut self, now: Instant, sdp: Option<Bytes>) {
        let Some((key, req)) = self.reoffer.take() else { return };
        match sdp {
            Some(sdp) => {
                self.local_sdp = sdp.clone();
                self.respond_in_dialog(now, key, &req, Some(sdp));
            }
            None => self.out.push_back(CallOutput::Response { key, response: Box::new(response_to(&req, 488, None)) }),
        }
    }

    /// 200 to a request in the dialog, with `sdp`; a 2xx to a re-INVITE is
    /// retransmitted until its ACK like the first one.
    fn respond_in_dialog(&mut self, now: Instant, key: TxKey, req: &Request, sdp: Option<Bytes>) {
        self.dialog.remote_cseq = Some(req.core.cseq.seq);
        let mut r = response_to(req, 200, None);
        r.headers.insert(Name::CONTACT, self.local.contact(self.dialog.peer.transport));
        if let Some(body) = sdp {
            r.headers.insert(Name::CONTENT_TYPE, "application/sdp".to_string());
            r.body = body;
        }
        if req.method == "INVITE" {
            self.ok_retransmit = Some((r.to_bytes(), now + T1, T1, now + 64 * T1));
        }
        self.out.push_back(CallOutput::Response { key, response: Box::new(r) });
    }

    /// The INVITE's client transaction timed out, or its flow broke.
    pub fn handle_failure(&mut self) {
        if self.reinvite_cseq.take().is_some() {
            // Our re-INVITE got no answer: the far end is gone (RFC 3261
            // §14.1 leaves it to us; a phone hangs up).
            self.out.push_back(CallOutput::Event(CallEvent::OfferRefused { code: 408 }));
            self.hangup();
            return;
        }
        if matches!(self.state, CallState::Calling | CallState::Ringing | CallState::Ending) {
            self.end(408, "no answer from the PBX");
        }
    }

    /// Our 2xx retransmissions (incoming calls).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((bytes, at, interval, give_up)) = self.ok_retransmit.clone() else { return };
        if now >= give_up {
            // No ACK in 64*T1: RFC 3261 §13.3.1.4 says end the call with BYE.
            self.ok_retransmit = None;
            self.state = CallState::Connected;
            self.hangup();
            self.end(408, "no ACK for our answer");
        } else if now >= at {
            self.out.push_back(CallOutput::Raw(bytes.clone()));
            let next = (interval * 2).min(T2);
            self.ok_retransmit = Some((bytes, now + next, next, give_up));
        }
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ok_retransmit.as_ref().map(|(_, at, _, give_up)| (*at).min(*give_up))
    }

    fn on_invite_response(&mut self, resp: &Response) {
        if !self.outgoing || matches!(self.state, CallState::Ended { .. }) {
            return;
        }
        match resp.code {
            100 => {}
            101..=199 => {
                if self.state == CallState::Calling {
                    self.state = CallState::Ringing;
                    self.out.push_back(CallOutput::Event(CallEvent::Ringing));
                }
                if resp.code == 183 && !resp.body.is_empty() {
                    self.out.push_back(CallOutput::Event(CallEvent::EarlyMedia { sdp: resp.body.clone() }));
                }
            }
            200..=299 => {
                self.dialog.confirm_from_response(resp);
                // ACK every 2xx, retransmissions included (RFC 3261 §13.2.2.4).
                let branch = self.branch();
                if let Ok(ack) = self.dialog.ack_bytes(&self.local, &branch, resp.core.cseq.seq, None) {
                    self.out.push_back(CallOutput::Raw(ack));
                }
                match self.state {
                    CallState::Calling | CallState::Ringing => {
                        self.state = CallState::Connected;
                        self.out.push_back(CallOutput::Event(CallEvent::Connected { sdp: Some(resp.body.clone()) }));
                    }
                    // Our CANCEL lost the race: the call is up, so hang it up.
                    CallState::Ending => {
                        self.state = CallState::Connected;
                        self.hangup();
                    }
                    _ => {}
                }
            }
            401 | 407 if self.auth_tries == 0 && self.state != CallState::Ending => {
                let name = if resp.code == 401 { Name::WWW_AUTHENTICATE } else { Name::PROXY_AUTHENTICATE };
                let challenge = resp.headers.get_raw(&name).filter_map(|v| parse_challenge(v)).find(|c| c.algorithm.as_deref().is_none_or(|a| a.eq_ignore_ascii_case("MD5") || a.eq_ignore_ascii_case("SHA-256")));
                match (challenge, self.creds.clone()) {
                    (Some(c), Some(creds)) => {
                        self.auth_tries += 1;
                        self.send_invite(Some((c, resp.code == 407, creds)));
                    }
                    _ => self.end(resp.code, "authentication needed"),
                }
            }
            code => self.end(code, &resp.reason),
        }
    }

    fn send_invite(&mut self, auth: Option<(Challenge, bool, Credentials)>) {
        let uri = self.dialog.remote_target.clone();
        let mut extra = vec![("Allow", ALLOW.to_string())];
        extra.extend(self.invite_headers.iter().cloned());
        if let Some((challenge, proxy, creds)) = auth {
            self.dialog.local_cseq = self.dialog.local_cseq.wrapping_add(1);
            let cnonce = format!("{:016x}", next(&mut self.rng));
            if let Some(v) = answer_challenge(&challenge, "INVITE", &uri, &creds.user, &creds.password, &cnonce, 1) {
                extra.push((if proxy { "Proxy-Authorization" } else { "Authorization" }, v));
            }
        }
        let branch = self.branch();
        let offer = self.offer.clone();
        match self.dialog.build(&self.local, &branch, "INVITE", self.dialog.local_cseq, &extra, Some(("application/sdp", &offer))) {
            Ok(inv) => {
                self.invite = Some(inv.clone());
                self.out.push_back(CallOutput::Request(Box::new(inv)));
            }
            Err(_) => self.end(400, "the number cannot be dialled"),
        }
    }

    /// Answer the incoming INVITE; returns the bytes of a 2xx for
    /// retransmission.
    fn respond(&mut self, code: u16, sdp: Option<Bytes>) -> Option<Bytes> {
        let (Some(key), Some(inv)) = (self.uas_key.clone(), self.uas_invite.as_ref()) else { return None };
        let mut r = response_to(inv, code, Some(&self.dialog.local_tag));
        if (101..300).contains(&code) {
            r.headers.insert(Name::CONTACT, self.local.contact(self.dialog.peer.transport));
        }
        if let Some(body) = sdp {
            r.headers.insert(Name::CONTENT_TYPE, "application/sdp".to_string());
            r.body = body;
        }
        let bytes = (200..300).contains(&code).then(|| r.to_bytes());
        self.out.push_back(CallOutput::Response { key, response: Box::new(r) });
        bytes
    }

    fn end(&mut self, code: u16, reason: &str) {
        if matches!(self.state, CallState::Ended { .. }) {
            return;
        }
        self.state = CallState::Ended { code, reason: reason.to_string() };
        self.out.push_back(CallOutput::Event(CallEvent::Ended { code, reason: reason.to_string() }));
    }

    fn branch(&mut self) -> String {
        format!("z9hG4bK{:016x}", next(&mut self.rng))
    }
}

/// The URI a REFER asks us to call (its Refer-To, without the angle
/// brackets), if it has one we can dial.
fn refer_target(req: &Request) -> Option<String> {
    let name = Name::from("Refer-To");
    let raw = req.headers.get_raw(&name).next()?.to_string();
    let raw = raw.trim();
    let uri = match (raw.find('<'), raw.rfind('>')) {
        (Some(a), Some(b)) if a < b => &raw[a + 1..b],
        _ => raw.split(';').next().unwrap_or(raw),
    };
    (uri.starts_with("sip:") || uri.starts_with("sips:")).then(|| uri.to_string())
}

/// The status code of a message/sipfrag body's status line.
fn sipfrag_code(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("SIP/2.0") {
        return None;
    }
    parts.next()?.parse().ok().filter(|c| (100..700).contains(c))
}

/// Split a Refer-To URI into the URI to dial and the Replaces header its
/// `?Replaces=` carries (percent-decoded), for an attended transfer.
pub fn split_refer_uri(uri: &str) -> (String, Option<String>) {
    let Some((base, headers)) = uri.split_once('?') else { return (uri.to_string(), None) };
    let replaces = headers.split('&').find_map(|h| {
        let (k, v) = h.split_once('=')?;
        k.eq_ignore_ascii_case("Replaces").then(|| percent_decode(v))
    });
    (base.to_string(), replaces)
}

/// `s` with its %XX escapes decoded (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A Refer-To URI for an attended transfer: call `uri`, replacing the
/// dialog `replaces` (RFC 3891), escaped as a URI header (RFC 3261 §19.1.1).
pub fn attended_refer_uri(uri: &str, replaces: &str) -> String {
    let mut escaped = String::new();
    for c in replaces.chars() {
        match c {
            ';' => escaped.push_str("%3B"),
            '=' => escaped.push_str("%3D"),
            '@' => escaped.push_str("%40"),
            '?' => escaped.push_str("%3F"),
            '&' => escaped.push_str("%26"),
            '%' => escaped.push_str("%25"),
            ' ' => escaped.push_str("%20"),
            c => escaped.push(c),
        }
    }
    format!("{uri}?Replaces={escaped}")
}

/// CANCEL for an INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, From,
/// To, CSeq number and top Via (branch included), and its Route headers.
fn cancel_for(inv: &Request) -> String {
    let get = |n: &Name| inv.headers.get_raw(n).next().map(|v| v.to_string()).unwrap_or_default();
    let mut s = format!("CANCEL {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} CANCEL\r\n", inv.uri.raw, get(&Name::VIA), get(&Name::FROM), get(&Name::TO), inv.core.call_id, inv.core.cseq.seq);
    for r in inv.headers.get_raw(&Name::ROUTE) {
        s.push_str(&format!("Route: {r}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tsunagu_sip::digest::{Algorithm, DigestVerifier, StoredCredentials, Verdict};
    use tsunagu_sip::{parse_message, Framing, Limits, Message};

    fn me() -> PhoneAddress {
        PhoneAddress { user: "1001".into(), flow: Flow { transport: TransportKind::Udp, local: SocketAddr::from(([192, 0, 2, 10], 5060)) } }
    }

    fn pbx() -> Peer {
        Peer { addr: SocketAddr::from(([192, 0, 2, 1], 5060)), transport: TransportKind::Udp, flow: 0 }
    }

    fn outputs(c: &mut Call) -> Vec<CallOutput> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn request(outs: &[CallOutput], method: &str) -> Request {
        outs.iter()
            .find_map(|o| match o {
                CallOutput::Request(r) if r.method == method => Some((**r).clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {method} in {outs:?}"))
    }

    fn events(outs: &[CallOutput]) -> Vec<CallEvent> {
        outs.iter()
            .filter_map(|o| match o {
                CallOutput::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn raw_text(outs: &[CallOutput]) -> Vec<String> {
        outs.iter()
            .filter_map(|o| match o {
                CallOutput::Raw(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    fn reply(req: &Request, code: u16, extra: &[(Name, &str)], body: &[u8]) -> Response {
        let mut r = response_to(req, code, if code > 100 { Some("remote") } else { None });
        for (n, v) in extra {
            r.headers.insert(n.clone(), v.to_string());
        }
        r.body = Bytes::copy_from_slice(body);
        r
    }

    fn parse_req(text: &str) -> Request {
        match parse_message(text.as_bytes(), Framing::Datagram, &Limits::default()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_outgoing_call_authenticates_rings_connects_acks_and_hangs_up() {
        let mut c = Call::dial(me(), pbx(), "pbx.example.jp", "1002", Bytes::from_static(b"v=0\r\n"), Some(Credentials { user: "1001".into(), password: "pw".into() }), 9);
        let first = request(&outputs(&mut c), "INVITE");
        assert_eq!(first.uri.raw, "sip:1002@pbx.example.jp");
        assert_eq!(first.body.as_ref(), b"v=0\r\n");
        // The PBX challenges; the second INVITE answers it.
        let mut verifier = DigestVerifier::new("tsunagu", [1; 32], 300, vec![Algorithm::Md5]);
        let mut challenge = reply(&first, 407, &[], b"");
        for v in verifier.challenges(1000, [2; 16], false) {
            challenge.headers.insert(Name::PROXY_AUTHENTICATE, v);
        }
        c.handle_response(&challenge);
        let second = request(&outputs(&mut c), "INVITE");
        assert_eq!(second.core.cseq.seq, first.core.cseq.seq + 1);
        assert_eq!(second.core.call_id, first.core.call_id);
        let creds = second.headers.get_raw(&Name::PROXY_AUTHORIZATION).find_map(|v| tsunagu_sip::digest::parse_authorization(v)).unwrap();
        let stored = StoredCredentials::from_password("1001", "tsunagu", "pw");
        assert!(matches!(verifier.verify(1000, "INVITE", &creds, Some(&stored)), Verdict::Ok));

        c.handle_response(&reply(&second, 180, &[], b""));
        assert_eq!(events(&outputs(&mut c)), vec![CallEvent::Ringing]);
        let ok = reply(&second, 200, &[(Name::CONTACT, "<sip:1002@198.51.100.2:5070>")], b"v=0 answer\r\n");
        c.handle_response(&ok);
        let outs = outputs(&mut c);
        assert_eq!(events(&outs), vec![CallEvent::Connected { sdp: Some(Bytes::from_static(b"v=0 answer\r\n")) }]);
        let acks = raw_text(&outs);
        assert!(acks[0].starts_with("ACK sip:1002@198.51.100.2:5070 SIP/2.0") && acks[0].contains(&format!("CSeq: {} ACK", second.core.cseq.seq)), "{acks:?}");
        // A retransmitted 200 is ACKed again, without a second Connected.
        c.handle_response(&ok);
        let outs = outputs(&mut c);
        assert_eq!(raw_text(&outs).len(), 1);
        assert!(events(&outs).is_empty());

        c.hangup();
        let bye = request(&outputs(&mut c), "BYE");
        assert_eq!(bye.uri.raw, "sip:1002@198.51.100.2:5070");
        assert!(bye.core.to.tag.as_deref() == Some("remote"));
        c.handle_response(&reply(&bye, 200, &[], b""));
        assert!(matches!(events(&outputs(&mut c))[..], [CallEvent::Ended { code: 200, .. }]));
    }

    #[test]
    fn a_cancel_that_loses_the_race_hangs_up_the_answered_call() {
        let mut c = Call::dial(me(), pbx(), "pbx", "1002", Bytes::from_static(b"v=0\r\n"), None, 3);
        let inv = request(&outputs(&mut c), "INVITE");
        c.handle_response(&reply(&inv, 180, &[], b""));
        outputs(&mut c);
        c.hangup();
        let cancel = request(&outputs(&mut c), "CANCEL");
        assert_eq!(cancel.core.top_branch(), inv.core.top_branch(), "CANCEL matches the INVITE's transaction");
        assert_eq!(cancel.core.cseq.seq, inv.core.cseq.seq);
        // The 200 crosses the CANCEL: ACK it, then BYE.
        c.handle_response(&reply(&inv, 200, &[(Name::CONTACT, "<sip:1002@198.51.100.2>")], b"v=0\r\n"));
        let outs = outputs(&mut c);
        assert_eq!(raw_text(&outs).len(), 1, "ACKed");
        let _ = request(&outs, "BYE");
    }

    #[test]
    fn a_busy_callee_ends_the_call_with_its_code() {
        let mut c = Call::dial(me(), pbx(), "pbx", "1002", Bytes::from_static(b"v=0\r\n"), None, 4);
        let inv = request(&outputs(&mut c), "INVITE");
        c.handle_response(&reply(&inv, 486, &[], b""));
        assert_eq!(events(&outputs(&mut c)), vec![CallEvent::Ended { code: 486, reason: "Busy Here".into() }]);
        assert!(matches!(c.state(), CallState::Ended { code: 486, .. }));
    }

    fn incoming_invite() -> Request {
        parse_req(
            "INVITE sip:1001@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKin1\r\nFrom: <sip:1002@pbx>;tag=caller\r\n\
To: <sip:1001@pbx>\r\nCall-ID: in-1\r\nCSeq: 7 INVITE\r\nContact: <sip:tsunagu@192.0.2.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n",
        )
    }

    fn key() -> TxKey {
        TxKey { server: true, branch: "z9hG4bKin1".into(), method: "INVITE".into(), sent_by: "192.0.2.1:5060".into() }
    }

    #[test]
    fn an_incoming_call_rings_is_answered_retransmits_until_ack_and_ends_on_bye() {
        let t0 = Instant::now();
        let mut c = Call::incoming(me(), incoming_invite(), key(), pbx(), 5);
        let outs = outputs(&mut c);
        assert!(matches!(&outs[0], CallOutput::Response { response, .. } if response.code == 180));
        assert_eq!(c.remote_offer().as_ref(), b"v=0\r\n");
        c.answer(t0, Bytes::from_static(b"v=0 mine\r\n"));
        let outs = outputs(&mut c);
        let CallOutput::Response { response, .. } = &outs[0] else { panic!("{outs:?}") };
        assert_eq!(response.code, 200);
        assert_eq!(response.body.as_ref(), b"v=0 mine\r\n");
        assert!(response.headers.get_raw(&Name::CONTACT).next().is_some());
        // No ACK yet: the 200 is sent again at T1, then 2*T1.
        assert_eq!(c.poll_timeout(), Some(t0 + T1));
        c.handle_timeout(t0 + T1);
        assert_eq!(raw_text(&outputs(&mut c)).len(), 1);
        assert_eq!(c.poll_timeout(), Some(t0 + T1 + 2 * T1));
        let ack = parse_req("ACK sip:1001@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack\r\nFrom: <sip:1002@pbx>;tag=caller\r\nTo: <sip:1001@pbx>;tag=x\r\nCall-ID: in-1\r\nCSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n");
        c.handle_request(Instant::now(), &ack, key());
        assert_eq!(events(&outputs(&mut c)), vec![CallEvent::Connected { sdp: None }]);
        assert_eq!(c.poll_timeout(), None, "no more retransmissions");
        let bye = parse_req("BYE sip:1001@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbye\r\nFrom: <sip:1002@pbx>;tag=caller\r\nTo: <sip:1001@pbx>;tag=x\r\nCall-ID: in-1\r\nCSeq: 8 BYE\r\nContent-Length: 0\r\n\r\n");
        c.handle_request(Instant::now(), &bye, key());
        let outs = outputs(&mut c);
        assert!(matches!(&outs[0], CallOutput::Response { response, .. } if response.code == 200));
        assert!(matches!(events(&outs)[..], [CallEvent::Ended { code: 200, .. }]));
    }

    #[test]
    fn an_answer_never_acked_is_hung_up_after_64_t1() {
        let (mut c, t0) = answered_not_acked(6);
        let mut now = t0;
        let mut sent = 0;
        while let Some(at) = c.poll_timeout() {
            now = at;
            c.handle_timeout(now);
            let outs = outputs(&mut c);
            sent += raw_text(&outs).len();
            if outs.iter().any(|o| matches!(o, CallOutput::Request(r) if r.method == "BYE")) {
                break;
            }
        }
        assert!(now >= t0 + 64 * T1 && sent >= 7, "retransmitted {sent} times until {:?}", now - t0);
        assert!(matches!(c.state(), CallState::Ended { code: 408, .. }));
    }

    /// An incoming call we answered at the returned time, not yet ACKed.
    fn answered_not_acked(seed: u64) -> (Call, Instant) {
        let t0 = Instant::now();
        let mut c = Call::incoming(me(), incoming_invite(), key(), pbx(), seed);
        outputs(&mut c);
        c.answer(t0, Bytes::from_static(b"v=0\r\n"));
        outputs(&mut c);
        (c, t0)
    }

    fn connected_incoming() -> Call {
        let t0 = Instant::now();
        let mut c = Call::incoming(me(), incoming_invite(), key(), pbx(), 9);
        c.answer(t0, Bytes::from_static(b"v=0 mine\r\n"));
        let ack = parse_req("ACK sip:1001@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack\r\nFrom: <sip:1002@pbx>;tag=caller\r\nTo: <sip:1001@pbx>;tag=x\r\nCall-ID: in-1\r\nCSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n");
        c.handle_request(Instant::now(), &ack, key());
        outputs(&mut c);
        c
    }

    fn in_dialog(method: &str, cseq: u32, body: &str) -> Request {
        let ctype = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".to_string() };
        parse_req(&format!(
            "{method} sip:1001@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{method}{cseq}\r\nFrom: <sip:1002@pbx>;tag=caller\r\nTo: <sip:1001@pbx>;tag=x\r\nCall-ID: in-1\r\nCSeq: {cseq} {method}\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    #[test]
    fn a_re_invite_with_an_offer_is_passed_up_and_answered_then_acked() {
        let t0 = Instant::now();
        let mut c = connected_incoming();
        let hold = in_dialog("INVITE", 8, "v=0 hold\r\n");
        c.handle_request(Instant::now(), &hold, key());
        assert_eq!(events(&outputs(&mut c)), vec![CallEvent::RemoteOffer { sdp: Bytes::from_static(b"v=0 hold\r\n") }]);
        // A second offer before we answered the first: 491.
        c.handle_request(Instant::now(), &in_dialog("UPDATE", 9, "v=0 x\r\n"), key());
        assert!(matches!(&outputs(&mut c)[0], CallOutput::Response { response, .. } if response.code == 491));
        c.answer_offer(t0, Some(Bytes::from_static(b"v=0 recvonly\r\n")));
        let outs = outputs(&mut c);
        let CallOutput::Response { response, .. } = &outs[0] else { panic!("{outs:?}") };
        assert_eq!((response.code, response.body.as_ref()), (200, b"v=0 recvonly\r\n".as_ref()));
        assert!(c.poll_timeout().is_some(), "the 200 is retransmitted until the ACK");
        c.handle_request(Instant::now(), &in_dialog("ACK", 8, ""), key());
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.state(), &CallState::Connected);
    }

    fn in_dialog_with(method: &str, cseq: u32, headers: &str, ctype: &str, body: &str) -> Request {
        parse_req(&format!(
            "{method} sip:1001@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{method}{cseq}\r\nFrom: <sip:1002@pbx>;tag=caller\r\nTo: <sip:1001@pbx>;tag=x\r\nCall-ID: in-1\r\nCSeq: {cseq} {method}\r\n{headers}{}Content-Length: {}\r\n\r\n{body}",
            if ctype.is_empty() { String::new() } else { format!("Content-Type: {ctype}\r\n") },
            body.len()
        ))
    }

    fn response_code(outs: &[CallOutput]) -> Vec<u16> {
        outs.iter()
            .filter_map(|o| match o {
                CallOutput::Response { response, .. } => Some(response.code),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn our_refer_reports_its_answer_and_the_notified_progress() {
        let mut c = connected_incoming();
        assert!(c.refer("sip:1003@pbx"));
        let refer = request(&outputs(&mut c), "REFER");
        assert_eq!(refer.headers.get_raw(&Name::from("Refer-To")).next().map(|v| v.to_string()).as_deref(), Some("<sip:1003@pbx>"));
        assert!(refer.headers.get_raw(&Name::from("Referred-By")).next().is_some_and(|v| v.contains("1001")));
        assert!(!c.refer("sip:1004@pbx"), "one REFER at a time");
        c.handle_response(&reply(&refer, 202, &[], b""));
        assert_eq!(events(&outputs(&mut c)), vec![CallEvent::TransferProgress { code: 202, done: false }]);
        // NOTIFYs with the transferee's new call's status lines.
        let notify = |cseq, state: &str, frag: &str| in_dialog_with("NOTIFY", cseq, &format!("Event: refer\r\nSubscription-State: {state}\r\n"), "message/sipfrag;version=2.0", frag);
        c.handle_request(Instant::now(), &notify(20, "active;expires=60", "SIP/2.0 180 Ringing\r\n"), key());
        let outs = outputs(&mut c);
        assert_eq!((response_code(&outs), events(&outs)), (vec![200], vec![CallEvent::TransferProgress { code: 180, done: false }]));
        c.handle_request(Instant::now(), &notify(21, "terminated;reason=noresource", "SIP/2.0 200 OK\r\n"), key());
        assert_eq!(events(&outputs(&mut c)), vec![CallEvent::TransferProgress { code: 200, done: true }]);
        // A NOTIFY with a body that is no status line is answered, not reported.
        c.handle_request(Instant::now(), &notify(22, "active", "garbage"), key());
        let outs = outputs(&mut c);
        assert_eq!((response_code(&outs), events(&outs).len()), (vec![200], 0));
        // A refused REFER ends the transfer.
        assert!(c.refer("sip:1003@pbx"));
        let refer = request(&outputs(&mut c), "REFER");
        c.handle_response(&reply(&refer, 403, &[], b""));
        assert_eq!(events(&outputs(&mut c)), vec![CallEvent::TransferProgress { code: 403, done: true }]);
    }

    #[test]
    fn a_refer_from_the_far_end_is_accepted_reported_and_answered_by_notify() {
        let mut c = connected_incoming();
        let target = "sip:1003@pbx?Replaces=abc%40host%3Bto-tag%3Dt1%3Bfrom-tag%3Df1";
        c.handle_request(Instant::now(), &in_dialog_with("REFER", 30, &format!("Refer-To: <{target}>\r\n"), "", ""), key());
        let outs = outputs(&mut c);
        assert_eq!(response_code(&outs), vec![202]);
        assert_eq!(events(&outs), vec![CallEvent::TransferRequested { target: target.to_string() }]);
        let (uri, replaces) = split_refer_uri(target);
        assert_eq!((uri.as_str(), replaces.as_deref()), ("sip:1003@pbx", Some("abc@host;to-tag=t1;from-tag=f1")));
        c.notify_transfer(180, "Ringing", false);
        let n = request(&outputs(&mut c), "NOTIFY");
        assert_eq!(n.headers.get_raw(&Name::from("Event")).next().map(|v| v.to_string()).as_deref(), Some("refer"));
        assert!(n.headers.get_raw(&Name::from("Subscription-State")).next().is_some_and(|v| v.starts_with("active")));
        assert_eq!(n.body.as_ref(), b"SIP/2.0 180 Ringing\r\n");
        c.notify_transfer(200, "OK", true);
        let n = request(&outputs(&mut c), "NOTIFY");
        assert!(n.headers.get_raw(&Name::from("Subscription-State")).next().is_some_and(|v| v.starts_with("terminated")));
        // A REFER without a usable Refer-To is refused.
        c.handle_request(Instant::now(), &in_dialog_with("REFER", 31, "Refer-To: <mailto:x@y>\r\n", "", ""), key());
        assert_eq!(response_code(&outputs(&mut c)), vec![400]);
        c.handle_request(Instant::now(), &in_dialog_with("REFER", 32, "", "", ""), key());
        assert_eq!(response_code(&outputs(&mut c)), vec![400]);
    }

    #[test]
    fn an_attended_transfer_names_the_other_dialog_and_survives_escaping() {
        let c = connected_incoming();
        let (uri, id) = c.replaces().unwrap();
        assert_eq!(uri, "sip:1002@pbx");
        assert_eq!(id, format!("in-1;to-tag=caller;from-tag={}", c.dialog.local_tag));
        let refer_to = attended_refer_uri(&uri, &id);
        assert!(!refer_to[refer_to.find('?').unwrap()..].contains(';'), "escaped: {refer_to}");
        assert_eq!(split_refer_uri(&refer_to), (uri, Some(id)));
        // A dialed call takes the Replaces header into its INVITE.
        let mut d = Call::dial_with(me(), pbx(), "pbx", "sip:1003@pbx", Bytes::from_static(b"v=0\r\n"), None, 5, vec![("Replaces", "in-1;to-tag=a;from-tag=b".into())]);
        let inv = request(&outputs(&mut d), "INVITE");
        assert_eq!(inv.headers.get_raw(&Name::from("Replaces")).next().map(|v| v.to_string()).as_deref(), Some("in-1;to-tag=a;from-tag=b"));
        assert!(inv.to_bytes().starts_with(b"INVITE sip:1003@pbx SIP/2.0"));
    }

    #[test]
    fn a_replaces_header_names_our_dialog_by_its_tags() {
        let c = connected_incoming();
        let ours = c.dialog.local_tag.clone();
        assert!(c.matches_replaces(&format!("in-1;to-tag={ours};from-tag=caller")));
        assert!(c.matches_replaces(&format!("in-1; from-tag=caller ;to-tag={ours};early-only")));
        assert!(!c.matches_replaces(&format!("in-1;to-tag=caller;from-tag={ours}")), "tags the wrong way round");
        assert!(!c.matches_replaces(&format!("other;to-tag={ours};from-tag=caller")));
        assert!(!c.matches_replaces("in-1"));
        assert!(!c.matches_replaces(""));
    }

    #[test]
    fn a_recording_request_is_an_info_with_a_record_header() {
        let mut c = connected_incoming();
        c.request_recording(true);
        let info = request(&outputs(&mut c), "INFO");
        assert_eq!(info.headers.get_raw(&Name::from("Record")).next().map(|v| v.to_string()).as_deref(), Some("on"));
        assert!(info.body.is_empty());
        c.request_recording(false);
        let info = request(&outputs(&mut c), "INFO");
        assert_eq!(info.headers.get_raw(&Name::from("Record")).next().map(|v| v.to_string()).as_deref(), Some("off"));
    }

    #[test]
    fn digits_come_and_go_as_sip_info() {
        let mut c = connected_incoming();
        c.handle_request(Instant::now(), &in_dialog_with("INFO", 40, "", "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"), key());
        let outs = outputs(&mut c);
        assert_eq!((response_code(&outs), events(&outs)), (vec![200], vec![CallEvent::Dtmf { digit: '5' }]));
        // An INFO of another kind is answered and not reported.
        c.handle_request(Instant::now(), &in_dialog_with("INFO", 41, "", "application/x-other", "hello"), key());
        let outs = outputs(&mut c);
        assert_eq!((response_code(&outs), events(&outs).len()), (vec![200], 0));
        c.send_info_dtmf('#', 160);
        let info = request(&outputs(&mut c), "INFO");
        assert_eq!(info.body.as_ref(), b"Signal=#\r\nDuration=160\r\n");
    }

    #[test]
    fn a_handover_names_the_new_flow_and_gives_up_the_offer_on_the_old_one() {
        let mut c = connected_incoming();
        assert!(c.reinvite(Bytes::from_static(b"v=0 old address\r\n")));
        outputs(&mut c);
        assert!(!c.can_offer(), "an offer is under way");
        let moved = PhoneAddress { user: "1001".into(), flow: Flow { transport: TransportKind::Udp, local: SocketAddr::from(([198, 51, 100, 7], 40000)) } };
        c.handover(moved);
        assert!(c.can_offer(), "the old flow's offer is given up");
        assert!(c.reinvite(Bytes::from_static(b"v=0 new address\r\n")));
        let inv = request(&outputs(&mut c), "INVITE");
        let text = String::from_utf8_lossy(&inv.to_bytes()).into_owned();
        assert!(text.contains("Contact: <sip:1001@198.51.100.7:40000>") && text.contains("SIP/2.0/UDP 198.51.100.7:40000"), "{text}");
        assert_eq!(c.state(), &CallState::Connected);
    }

    #[test]
    fn our_own_re_invite_is_acked_and_reported_once() {
        let mut c = connected_incoming();
        assert!(c.reinvite(Bytes::from_static(b"v=0 sendonly\r\n")));
        let req = request(&outputs(&mut c), "INVITE");
        assert_eq!(req.core.to.tag.as_deref(), Some("caller"), "in the dialog");
        assert!(!c.reinvite(Bytes::from_static(b"v=0 again\r\n")), "one offer at a time");
        let ok = reply(&req, 200, &[], b"v=0 recvonly\r\n");
        c.handle_response(&ok);
        let outs = outputs(&mut c);
        assert_eq!(raw_text(&outs).len(), 1, "ACKed");
        assert_eq!(events(&outs), vec![CallEvent::OfferAnswered { sdp: Bytes::from_static(b"v=0 recvonly\r\n") }]);
        c.handle_response(&ok);
        let outs = outputs(&mut c);
        assert_eq!((raw_text(&outs).len(), events(&outs).len()), (1, 0), "a retransmitted 200 is ACKed again, not reported");
        // Glare: 491 is reported and the call goes on.
        assert!(c.reinvite(Bytes::from_static(b"v=0 sendrecv\r\n")));
        let req = request(&outputs(&mut c), "INVITE");
        c.handle_response(&reply(&req, 491, &[], b""));
        assert_eq!(events(&outputs(&mut c)), vec![CallEvent::OfferRefused { code: 491 }]);
        assert_eq!(c.state(), &CallState::Connected);
    }

    #[test]
    fn a_refresh_without_an_offer_gets_our_last_sdp_or_a_plain_200() {
        let mut c = connected_incoming();
        c.handle_request(Instant::now(), &in_dialog("UPDATE", 8, ""), key());
        let outs = outputs(&mut c);
        assert!(matches!(&outs[0], CallOutput::Response { response, .. } if response.code == 200 && response.body.is_empty()));
        c.handle_request(Instant::now(), &in_dialog("INVITE", 9, ""), key());
        let outs = outputs(&mut c);
        assert!(matches!(&outs[0], CallOutput::Response { response, .. } if response.code == 200 && response.body.as_ref() == b"v=0 mine\r\n"));
        // An offer we cannot take is refused and the call goes on.
        c.handle_request(Instant::now(), &in_dialog("ACK", 9, ""), key());
        c.handle_request(Instant::now(), &in_dialog("UPDATE", 10, "v=0 video only\r\n"), key());
        outputs(&mut c);
        c.answer_offer(Instant::now(), None);
        assert!(matches!(&outputs(&mut c)[0], CallOutput::Response { response, .. } if response.code == 488));
        assert_eq!(c.state(), &CallState::Connected);
    }

    #[test]
    fn a_cancel_after_our_answer_changes_nothing() {
        let (mut c, _) = answered_not_acked(8);
        let cancel = parse_req("CANCEL sip:1001@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKin1\r\nFrom: <sip:1002@pbx>;tag=caller\r\nTo: <sip:1001@pbx>\r\nCall-ID: in-1\r\nCSeq: 7 CANCEL\r\nContent-Length: 0\r\n\r\n");
        c.handle_request(Instant::now(), &cancel, key());
        let outs = outputs(&mut c);
        let codes: Vec<u16> = outs.iter().filter_map(|o| if let CallOutput::Response { response, .. } = o { Some(response.code) } else { None }).collect();
        assert_eq!(codes, vec![200], "only the CANCEL is answered");
        assert!(events(&outs).is_empty());
        assert_eq!(c.state(), &CallState::Incoming, "still waiting for the ACK");
    }

    #[test]
    fn a_cancelled_incoming_call_gets_487_and_ends() {
        let mut c = Call::incoming(me(), incoming_invite(), key(), pbx(), 7);
        outputs(&mut c);
        let cancel = parse_req("CANCEL sip:1001@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKin1\r\nFrom: <sip:1002@pbx>;tag=caller\r\nTo: <sip:1001@pbx>\r\nCall-ID: in-1\r\nCSeq: 7 CANCEL\r\nContent-Length: 0\r\n\r\n");
        c.handle_request(Instant::now(), &cancel, key());
        let outs = outputs(&mut c);
        let codes: Vec<u16> = outs.iter().filter_map(|o| if let CallOutput::Response { response, .. } = o { Some(response.code) } else { None }).collect();
        assert_eq!(codes, vec![200, 487]);
        assert!(matches!(events(&outs)[..], [CallEvent::Ended { code: 487, .. }]));
    }
}
