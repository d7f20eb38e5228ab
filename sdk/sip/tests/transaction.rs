//! The RFC 3261 §17 transaction layer (with the RFC 6026 Accepted states),
//! driven on virtual time: one real `Instant` is taken as the origin and
//! every later instant is that origin plus a Duration. Nothing sleeps.
//!
//! Every timer firing goes through [`Harness::step`], which also checks that
//! `poll_timeout()` is the earliest deadline: nothing happens one millisecond
//! before it, something always happens at it, and time never runs backwards.

use bytes::Bytes;
use ezk_sip_types::print::AppendCtx;
use std::time::{Duration, Instant};
use tsunagu_sip::transaction::server_key;
use tsunagu_sip::{
    parse_message, response_to, Framing, Input, Limits, Message, Name, Output, Peer, Request, Response,
    TimerConfig, TransactionLayer, TransportKind, TxEvent, TxKey,
};

// ---------------------------------------------------------------------------
// Timer values (RFC 3261 defaults, which TimerConfig::default() must give)

const T1: u64 = 500;
const T2: u64 = 4_000;
const T4: u64 = 5_000;
const T64: u64 = 64 * T1;

// ---------------------------------------------------------------------------
// Messages

const UDP: TransportKind = TransportKind::Udp;
const TCP: TransportKind = TransportKind::Tcp;

fn peer(transport: TransportKind) -> Peer {
    let flow = if transport.is_reliable() { 7 } else { 0 };
    Peer { addr: "192.0.2.1:5060".parse().unwrap(), transport, flow }
}

fn parse(text: &str) -> Message {
    parse_message(text.as_bytes(), Framing::Datagram, &Limits::default())
        .unwrap_or_else(|e| panic!("test message does not parse: {e:?}\n{text}"))
}

fn parse_request(bytes: &[u8]) -> Request {
    match parse_message(bytes, Framing::Datagram, &Limits::default()).expect("request parses") {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {} {}", r.code, r.reason),
    }
}

fn parse_response(bytes: &[u8]) -> Response {
    match parse_message(bytes, Framing::Datagram, &Limits::default()).expect("response parses") {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method),
    }
}

/// What varies between the requests of these tests.
#[derive(Clone)]
struct Req {
    method: &'static str,
    /// `None`: an RFC 2543 request with no branch parameter.
    branch: Option<String>,
    sent_by: &'static str,
    transport: TransportKind,
    cseq: u32,
    cseq_method: Option<&'static str>,
    uri: &'static str,
    to_tag: Option<&'static str>,
    call_id: &'static str,
    /// Extra Via values after the top one, on the same header line.
    more_vias: &'static str,
}

impl Req {
    fn new(method: &'static str, branch: &str) -> Self {
        Req {
            method,
            branch: Some(branch.to_string()),
            sent_by: "192.0.2.1:5060",
            transport: UDP,
            cseq: 314159,
            cseq_method: None,
            uri: "sip:bob@example.com",
            to_tag: None,
            call_id: "a84b4c76e66710@pc33.atlanta.example.com",
            more_vias: "",
        }
    }
    fn rfc2543(method: &'static str) -> Self {
        Req { branch: None, ..Req::new(method, "unused") }
    }
    fn over(mut self, transport: TransportKind) -> Self {
        self.transport = transport;
        self
    }
    fn text(&self) -> String {
        let branch = self.branch.as_ref().map(|b| format!(";branch={b}")).unwrap_or_default();
        let to_tag = self.to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{tp} {sent_by}{branch}{more}\r\n\
             Route: <sip:proxy.example.com;lr>\r\n\
             Max-Forwards: 70\r\n\
             From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
             To: Bob <sip:bob@example.com>{to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {cseq_method}\r\n\
             Contact: <sip:alice@192.0.2.1>\r\n\
             Content-Length: 0\r\n\r\n",
            method = self.method,
            uri = self.uri,
            tp = self.transport.via_name(),
            sent_by = self.sent_by,
            more = self.more_vias,
            call_id = self.call_id,
            cseq = self.cseq,
            cseq_method = self.cseq_method.unwrap_or(self.method),
        )
    }
    fn build(&self) -> Request {
        match parse(&self.text()) {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }
}

/// A response to `req` as the far end would send it (printed, then parsed
/// back like anything off the wire).
fn reply(req: &Request, code: u16, to_tag: Option<&str>) -> Response {
    parse_response(&response_to(req, code, to_tag).to_bytes())
}

/// The client-side key `send_request` gives `req` (branch, method, sent-by).
fn client_key_of(req: &Request) -> TxKey {
    TxKey {
        server: false,
        branch: req.core.top_branch().unwrap_or_default().to_string(),
        method: req.method.clone(),
        sent_by: req.core.vias[0].sent_by.default_print_ctx().to_string(),
    }
}

// ---------------------------------------------------------------------------
// Virtual-time harness

struct Harness {
    layer: TransactionLayer,
    base: Instant,
    now: Duration,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(TimerConfig::default())
    }
    fn with_config(config: TimerConfig) -> Self {
        Harness { layer: TransactionLayer::new(config), base: Instant::now(), now: Duration::ZERO }
    }
    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.base).as_millis()).unwrap()
    }
    fn now_ms(&self) -> u64 {
        u64::try_from(self.now.as_millis()).unwrap()
    }
    fn advance_to(&mut self, ms: u64) {
        let t = Duration::from_millis(ms);
        assert!(t >= self.now, "virtual time must not run backwards ({} ms → {ms} ms)", self.now_ms());
        self.now = t;
    }
    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.layer.poll_output()).collect()
    }
    /// Give `input` at `ms` and return everything it produced.
    fn input(&mut self, ms: u64, input: Input) -> Vec<Output> {
        self.advance_to(ms);
        self.layer.handle_input(self.base + self.now, input);
        self.drain()
    }
    fn request(&mut self, ms: u64, request: Request, transport: TransportKind) -> Vec<Output> {
        self.input(ms, Input::Request { request, peer: peer(transport) })
    }
    fn response(&mut self, ms: u64, response: Response, transport: TransportKind) -> Vec<Output> {
        self.input(ms, Input::Response { response, peer: peer(transport) })
    }
    fn send_request(&mut self, ms: u64, request: Request, transport: TransportKind) -> Vec<Output> {
        self.input(ms, Input::SendRequest { request, peer: peer(transport) })
    }
    fn send_response(&mut self, ms: u64, key: &TxKey, response: Response) -> Vec<Output> {
        self.input(ms, Input::SendResponse { key: key.clone(), response })
    }
    /// Give Input::Timeout at `ms` (not necessarily a deadline).
    fn tick(&mut self, ms: u64) -> Vec<Output> {
        self.input(ms, Input::Timeout)
    }
    /// The next deadline, in ms since the origin.
    fn next_ms(&self) -> Option<u64> {
        self.layer.poll_timeout().map(|t| self.ms(t))
    }
    /// Fire the earliest timer. Checks that the deadline is not in the past,
    /// that a wake-up one millisecond early does nothing and leaves the
    /// deadline alone, and that the wake-up at the deadline does something.
    fn step(&mut self) -> Option<(u64, Vec<Output>)> {
        let deadline = self.layer.poll_timeout()?;
        let at = self.ms(deadline);
        assert_eq!(self.base + Duration::from_millis(at), deadline, "deadlines fall on whole milliseconds here");
        assert!(at >= self.now_ms(), "poll_timeout() {at} ms is before the last input at {} ms", self.now_ms());
        if at > self.now_ms() {
            let early = self.tick(at - 1);
            assert!(early.is_empty(), "a wake-up before poll_timeout() ({at} ms) did something: {early:?}");
            assert_eq!(self.next_ms(), Some(at), "an early wake-up moved the deadline");
        }
        let out = self.tick(at);
        assert!(!out.is_empty(), "poll_timeout() said {at} ms but nothing was due then");
        if let Some(next) = self.next_ms() {
            assert!(next >= at, "the next deadline {next} ms is before the one just run ({at} ms)");
        }
        Some((at, out))
    }
    /// Run every timer due at or before `ms`, then move the clock to `ms`.
    fn run_until(&mut self, ms: u64) -> Vec<(u64, Output)> {
        let mut log = Vec::new();
        while self.next_ms().is_some_and(|t| t <= ms) {
            let (at, out) = self.step().unwrap();
            log.extend(out.into_iter().map(|o| (at, o)));
            assert!(log.len() < 10_000, "timers never settle");
        }
        let idle = self.tick(ms);
        assert!(idle.is_empty(), "{idle:?}");
        log
    }
    /// Run every timer until none is left; the layer must be empty then.
    fn run_to_end(&mut self) -> Vec<(u64, Output)> {
        let mut log = Vec::new();
        while let Some((at, out)) = self.step() {
            log.extend(out.into_iter().map(|o| (at, o)));
            assert!(log.len() < 10_000, "timers never settle");
        }
        assert_eq!(self.layer.poll_timeout(), None);
        assert!(self.layer.is_empty(), "transactions left with no timer: {}", self.layer.len());
        assert_eq!(self.layer.len(), 0);
        log
    }
}

// ---------------------------------------------------------------------------
// Looking at outputs

fn transmits(out: &[Output]) -> Vec<(Peer, Bytes)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit { peer, bytes } => Some((*peer, bytes.clone())),
            Output::Event(_) => None,
        })
        .collect()
}

fn events(out: &[Output]) -> Vec<&TxEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            Output::Transmit { .. } => None,
        })
        .collect()
}

/// Times at which something was transmitted.
fn transmit_times(log: &[(u64, Output)]) -> Vec<u64> {
    log.iter().filter(|(_, o)| matches!(o, Output::Transmit { .. })).map(|(t, _)| *t).collect()
}

fn timed_events(log: &[(u64, Output)]) -> Vec<(u64, &TxEvent)> {
    log.iter()
        .filter_map(|(t, o)| match o {
            Output::Event(e) => Some((*t, e)),
            Output::Transmit { .. } => None,
        })
        .collect()
}

/// The single transmission in `out`, which must hold nothing else.
fn only_transmit(out: &[Output]) -> (Peer, Bytes) {
    assert_eq!(out.len(), 1, "expected one transmission: {out:?}");
    transmits(out).pop().expect("a transmission")
}

/// The single event in `out`, which must hold nothing else.
fn only_event(out: &[Output]) -> &TxEvent {
    assert_eq!(out.len(), 1, "expected one event: {out:?}");
    events(out)[0]
}

fn assert_response_event(e: &TxEvent, key: &TxKey, code: u16) {
    match e {
        TxEvent::Response { key: k, response } => {
            assert_eq!(k, key);
            assert_eq!(response.code, code);
        }
        other => panic!("expected Response {code}, got {other:?}"),
    }
}

fn assert_request_event(e: &TxEvent, method: &str) -> (TxKey, Peer) {
    match e {
        TxEvent::Request { key, request, peer } => {
            assert_eq!(request.method, method);
            (key.clone(), *peer)
        }
        other => panic!("expected a {method} request, got {other:?}"),
    }
}

fn assert_timeout_then_terminated(events: &[(u64, &TxEvent)], at: u64, key: &TxKey) {
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(events[0], (t, TxEvent::Timeout { key: k }) if t == at && k == key), "{events:?}");
    assert!(matches!(events[1], (t, TxEvent::Terminated { key: k }) if t == at && k == key), "{events:?}");
}

fn assert_terminated(events: &[(u64, &TxEvent)], at: u64, key: &TxKey) {
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(events[0], (t, TxEvent::Terminated { key: k }) if t == at && k == key), "{events:?}");
}

/// Start a server transaction for `req` at `ms` and return its key (the
/// 100 Trying an INVITE gets is checked and dropped).
fn start_server(h: &mut Harness, ms: u64, req: &Request, transport: TransportKind) -> TxKey {
    let out = h.request(ms, req.clone(), transport);
    let evs = events(&out);
    assert_eq!(evs.len(), 1, "{out:?}");
    let (key, from) = assert_request_event(evs[0], &req.method);
    assert_eq!(from, peer(transport));
    assert!(key.server);
    assert_eq!(key, server_key(req));
    let sent = transmits(&out);
    if req.method == "INVITE" {
        assert_eq!(sent.len(), 1, "an INVITE is answered 100 Trying at once");
        assert_eq!(parse_response(&sent[0].1).code, 100);
    } else {
        assert!(sent.is_empty(), "{out:?}");
    }
    key
}

// ===========================================================================
// Timer configuration

#[test]
fn default_timers_are_rfc3261_values() {
    let c = TimerConfig::default();
    assert_eq!(c.t1, Duration::from_millis(T1));
    assert_eq!(c.t2, Duration::from_millis(T2));
    assert_eq!(c.t4, Duration::from_millis(T4));
    assert!(!UDP.is_reliable());
    assert!(TCP.is_reliable() && TransportKind::Tls.is_reliable() && TransportKind::Ws.is_reliable());
}

#[test]
fn idle_layer_has_no_deadline() {
    let mut h = Harness::new();
    assert_eq!(h.layer.poll_timeout(), None);
    assert!(h.layer.is_empty());
    assert!(h.tick(1_000).is_empty());
    assert!(h.layer.poll_output().is_none());
}

// ===========================================================================
// Client INVITE (RFC 3261 §17.1.1, RFC 6026 §8.4)

#[test]
fn client_invite_udp_timer_a_doubles_until_timer_b() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "z9hG4bKa1").build();
    let key = client_key_of(&invite);
    let (to, first) = only_transmit(&h.send_request(0, invite.clone(), UDP));
    assert_eq!(to, peer(UDP));
    assert_eq!(parse_request(&first).method, "INVITE");
    assert_eq!(h.layer.len(), 1);
    assert_eq!(h.next_ms(), Some(T1), "timer A starts at T1");

    let log = h.run_to_end();
    // Intervals T1, 2T1, 4T1, 8T1, 16T1, 32T1: sent at 0 (above), then:
    assert_eq!(transmit_times(&log), vec![500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    for (_, o) in &log {
        if let Output::Transmit { peer: p, bytes } = o {
            assert_eq!(*p, peer(UDP));
            assert_eq!(bytes, &first, "a retransmission is the request unchanged");
        }
    }
    assert_timeout_then_terminated(&timed_events(&log), T64, &key);
}

#[test]
fn client_invite_tcp_no_retransmission_timer_b() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "z9hG4bKa2").over(TCP).build();
    let key = client_key_of(&invite);
    let (to, _) = only_transmit(&h.send_request(0, invite, TCP));
    assert_eq!(to, peer(TCP));
    assert_eq!(h.next_ms(), Some(T64), "no timer A on a reliable transport; B at 64*T1");
    let log = h.run_to_end();
    assert!(transmit_times(&log).is_empty());
    assert_timeout_then_terminated(&timed_events(&log), T64, &key);
}

#[test]
fn client_invite_provisional_stops_timer_a_and_is_passed_up() {
    for tp in [UDP, TCP] {
        let mut h = Harness::new();
        let invite = Req::new("INVITE", "z9hG4bKa3").over(tp).build();
        let key = client_key_of(&invite);
        h.send_request(0, invite.clone(), tp);
        let log = h.run_until(700);
        assert_eq!(transmit_times(&log), if tp == UDP { vec![500] } else { vec![] });

        let out = h.response(700, reply(&invite, 100, None), tp);
        assert_response_event(only_event(&out), &key, 100);
        let out = h.response(900, reply(&invite, 180, Some("b1")), tp);
        assert_response_event(only_event(&out), &key, 180);
        let out = h.response(950, reply(&invite, 180, Some("b1")), tp);
        assert_response_event(only_event(&out), &key, 180);

        // Proceeding: no retransmission, and timer B is a Calling-state
        // timer only (§17.1.1.2), so a long ringing phase does not time out.
        assert_eq!(h.next_ms(), None, "{tp:?}: no timer runs in Proceeding");
        let log = h.run_until(10 * T64);
        assert!(log.is_empty(), "{tp:?}: {log:?}");
        assert_eq!(h.layer.len(), 1);

        // The call is still answerable much later.
        let at = 10 * T64 + 1;
        let out = h.response(at, reply(&invite, 200, Some("b1")), tp);
        assert_response_event(only_event(&out), &key, 200);
        let log = h.run_to_end();
        assert_terminated(&timed_events(&log), at + T64, &key);
    }
}

#[test]
fn client_invite_2xx_accepted_passes_retransmissions_up_until_timer_m() {
    for tp in [UDP, TCP] {
        for provisional_first in [false, true] {
            let mut h = Harness::new();
            let invite = Req::new("INVITE", "z9hG4bKa4").over(tp).build();
            let key = client_key_of(&invite);
            h.send_request(0, invite.clone(), tp);
            h.run_until(600);
            if provisional_first {
                let out = h.response(600, reply(&invite, 180, Some("b2")), tp);
                assert_response_event(only_event(&out), &key, 180);
            }

            let ok = reply(&invite, 200, Some("b2"));
            let out = h.response(1_000, ok.clone(), tp);
            assert_response_event(only_event(&out), &key, 200);
            // The ACK for a 2xx is the TU's; the transaction sends nothing.
            assert!(transmits(&out).is_empty());
            assert_eq!(h.next_ms(), Some(1_000 + T64), "timer M = 64*T1, on every transport");

            // 2xx retransmissions, and a 2xx from another fork, go up too.
            let log = h.run_until(3_000);
            assert!(log.is_empty(), "timer A stops in Accepted: {log:?}");
            let out = h.response(3_000, ok.clone(), tp);
            assert_response_event(only_event(&out), &key, 200);
            let out = h.response(5_000, reply(&invite, 200, Some("fork2")), tp);
            assert_response_event(only_event(&out), &key, 200);
            // Anything else is absorbed.
            assert!(h.response(5_100, reply(&invite, 180, Some("b2")), tp).is_empty());
            assert!(h.response(5_200, reply(&invite, 486, Some("b2")), tp).is_empty());
            assert_eq!(h.next_ms(), Some(1_000 + T64), "retransmissions do not restart timer M");

            let log = h.run_to_end();
            assert!(transmit_times(&log).is_empty());
            assert_terminated(&timed_events(&log), 1_000 + T64, &key);

            // After M the transaction is gone: a late 2xx is stray.
            let out = h.response(1_000 + T64 + 1, ok, tp);
            assert!(matches!(only_event(&out), TxEvent::StrayResponse { .. }));
        }
    }
}

/// The ACK a client INVITE transaction built for a non-2xx final response
/// (RFC 3261 §17.1.1.3).
fn check_ack(ack: &Bytes, invite: &Request, response: &Response) {
    let ack_text = std::str::from_utf8(ack).unwrap();
    let ack = parse_request(ack);
    assert_eq!(ack.method, "ACK");
    assert_eq!(ack.uri.raw, invite.uri.raw, "ACK Request-URI = the INVITE's");
    assert_eq!(ack.core.vias.len(), 1, "one Via only:\n{ack_text}");
    let (v, iv) = (&ack.core.vias[0], &invite.core.vias[0]);
    assert_eq!(ack.core.top_branch(), invite.core.top_branch(), "same branch as the INVITE");
    assert_eq!(v.default_print_ctx().to_string(), iv.default_print_ctx().to_string(), "Via = the INVITE's top Via");
    assert_eq!(ack.core.from, invite.core.from);
    assert_eq!(ack.core.to.uri, invite.core.to.uri);
    assert_eq!(ack.core.to.tag, response.core.to.tag, "To carries the response's tag");
    assert!(ack.core.to.tag.is_some());
    assert_eq!(ack.core.call_id, invite.core.call_id);
    assert_eq!(ack.core.cseq.seq, invite.core.cseq.seq);
    assert_eq!(ack.core.cseq.method, "ACK");
    let routes: Vec<_> = ack.headers.get_raw(&Name::ROUTE).map(|r| r.to_string()).collect();
    let invite_routes: Vec<_> = invite.headers.get_raw(&Name::ROUTE).map(|r| r.to_string()).collect();
    assert_eq!(routes, invite_routes, "the ACK follows the INVITE's route set");
    assert!(ack.body.is_empty());
}

#[test]
fn client_invite_non2xx_final_acks_and_waits_timer_d() {
    for tp in [UDP, TCP] {
        for code in [300, 404, 486, 503, 603] {
            let mut h = Harness::new();
            let invite = Req::new("INVITE", "z9hG4bKa5").over(tp).build();
            let key = client_key_of(&invite);
            h.send_request(0, invite.clone(), tp);
            let log = h.run_until(2_000);
            assert_eq!(transmit_times(&log), if tp == UDP { vec![500, 1_500] } else { vec![] });
            let out = h.response(2_000, reply(&invite, 180, Some("b5")), tp);
            assert_response_event(only_event(&out), &key, 180);

            let busy = reply(&invite, code, Some("b5"));
            let out = h.response(2_500, busy.clone(), tp);
            assert_eq!(out.len(), 2, "{out:?}");
            let sent = transmits(&out);
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].0, peer(tp), "the ACK goes where the INVITE went");
            let ack = sent[0].1.clone();
            check_ack(&ack, &invite, &busy);
            let evs = events(&out);
            assert_eq!(evs.len(), 1);
            assert_response_event(evs[0], &key, code);

            // Timer D: 32 s on UDP, zero on reliable transports.
            let d = if tp == UDP { 32_000 } else { 0 };
            assert_eq!(h.next_ms(), Some(2_500 + d));

            if tp == UDP {
                // A retransmitted final: the same ACK again, nothing for the TU.
                for at in [3_000, 6_000, 20_000] {
                    let out = h.response(at, busy.clone(), tp);
                    let (to, again) = only_transmit(&out);
                    assert_eq!(to, peer(tp));
                    assert_eq!(again, ack);
                }
                // Other responses are absorbed; D is not restarted.
                assert!(h.response(20_100, reply(&invite, 180, Some("b5")), tp).is_empty());
                assert!(h.response(20_200, reply(&invite, 200, Some("b5")), tp).is_empty());
                assert_eq!(h.next_ms(), Some(2_500 + d));
            }
            let log = h.run_to_end();
            assert!(transmit_times(&log).is_empty(), "no INVITE retransmission after a final: {log:?}");
            assert_terminated(&timed_events(&log), 2_500 + d, &key);
        }
    }
}

#[test]
fn client_invite_non2xx_in_calling_stops_timer_a() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "z9hG4bKa6").build();
    let key = client_key_of(&invite);
    h.send_request(0, invite.clone(), UDP);
    h.run_until(1_000);
    let busy = reply(&invite, 486, Some("x"));
    let out = h.response(1_000, busy.clone(), UDP);
    check_ack(&transmits(&out)[0].1, &invite, &busy);
    assert_response_event(events(&out)[0], &key, 486);
    let log = h.run_to_end();
    assert!(transmit_times(&log).is_empty());
    assert_terminated(&timed_events(&log), 1_000 + 32_000, &key);
}

#[test]
fn client_invite_ack_has_only_the_top_via() {
    // The INVITE as a stateful proxy forwards it: its own Via on top, the
    // previous hop's on the same header line.
    let mut r = Req::new("INVITE", "z9hG4bKproxy1");
    r.more_vias = ", SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKuac1";
    let invite = r.build();
    assert_eq!(invite.core.vias.len(), 2);
    let mut h = Harness::new();
    h.send_request(0, invite.clone(), UDP);
    let busy = reply(&invite, 404, Some("nf"));
    let out = h.response(100, busy.clone(), UDP);
    check_ack(&transmits(&out)[0].1, &invite, &busy);
}

// ===========================================================================
// Client non-INVITE (RFC 3261 §17.1.2)

#[test]
fn client_non_invite_udp_timer_e_caps_at_t2_until_timer_f() {
    let mut h = Harness::new();
    let options = Req::new("OPTIONS", "z9hG4bKn1").build();
    let key = client_key_of(&options);
    let (_, first) = only_transmit(&h.send_request(0, options, UDP));
    assert_eq!(h.next_ms(), Some(T1));
    let log = h.run_to_end();
    // Intervals T1, 2T1, 4T1, then T2 (4 s) each time.
    let mut expected = vec![500, 1_500, 3_500];
    let mut t = 3_500;
    while t + T2 < T64 {
        t += T2;
        expected.push(t);
    }
    assert_eq!(expected.last(), Some(&31_500));
    assert_eq!(transmit_times(&log), expected);
    assert!(log.iter().all(|(_, o)| !matches!(o, Output::Transmit { bytes, .. } if *bytes != first)));
    assert_timeout_then_terminated(&timed_events(&log), T64, &key);
}

#[test]
fn client_non_invite_udp_timer_e_is_t2_in_proceeding() {
    let mut h = Harness::new();
    let register = Req::new("REGISTER", "z9hG4bKn2").build();
    let key = client_key_of(&register);
    h.send_request(0, register.clone(), UDP);
    let log = h.run_until(700);
    assert_eq!(transmit_times(&log), vec![500]);
    let out = h.response(700, reply(&register, 100, None), UDP);
    assert_response_event(only_event(&out), &key, 100);
    // E was armed for 1.5 s in Trying; from then on it is T2.
    assert_eq!(h.next_ms(), Some(1_500));
    let log = h.run_to_end();
    let expected: Vec<u64> = (0..).map(|i| 1_500 + i * T2).take_while(|t| *t < T64).collect();
    assert_eq!(expected, vec![1_500, 5_500, 9_500, 13_500, 17_500, 21_500, 25_500, 29_500]);
    assert_eq!(transmit_times(&log), expected);
    // Timer F still runs in Proceeding.
    assert_timeout_then_terminated(&timed_events(&log), T64, &key);
}

#[test]
fn client_non_invite_udp_final_completes_and_waits_timer_k() {
    for provisional_first in [false, true] {
        let mut h = Harness::new();
        let bye = Req::new("BYE", "z9hG4bKn3").build();
        let key = client_key_of(&bye);
        h.send_request(0, bye.clone(), UDP);
        h.run_until(600);
        if provisional_first {
            let out = h.response(600, reply(&bye, 100, None), UDP);
            assert_response_event(only_event(&out), &key, 100);
        }
        let ok = reply(&bye, 200, Some("t"));
        let out = h.response(1_000, ok.clone(), UDP);
        assert_response_event(only_event(&out), &key, 200);
        assert_eq!(h.next_ms(), Some(1_000 + T4), "timer K = T4 on UDP");
        // Retransmitted finals and late provisionals are absorbed.
        assert!(h.response(1_200, ok.clone(), UDP).is_empty());
        assert!(h.response(1_300, reply(&bye, 481, Some("t")), UDP).is_empty());
        assert!(h.response(1_400, reply(&bye, 180, Some("t")), UDP).is_empty());
        let log = h.run_to_end();
        assert!(transmit_times(&log).is_empty(), "no retransmission in Completed: {log:?}");
        assert_terminated(&timed_events(&log), 1_000 + T4, &key);
    }
}

#[test]
fn client_non_invite_error_final_is_passed_up() {
    let mut h = Harness::new();
    let register = Req::new("REGISTER", "z9hG4bKn4").build();
    let key = client_key_of(&register);
    h.send_request(0, register.clone(), UDP);
    let out = h.response(300, reply(&register, 401, Some("r")), UDP);
    assert_response_event(only_event(&out), &key, 401);
    assert_eq!(h.next_ms(), Some(300 + T4));
}

#[test]
fn client_non_invite_tcp_no_timer_e_and_k_is_zero() {
    let mut h = Harness::new();
    let options = Req::new("OPTIONS", "z9hG4bKn5").over(TCP).build();
    let key = client_key_of(&options);
    h.send_request(0, options.clone(), TCP);
    assert_eq!(h.next_ms(), Some(T64), "only timer F");
    let out = h.response(400, reply(&options, 100, None), TCP);
    assert_response_event(only_event(&out), &key, 100);
    assert_eq!(h.next_ms(), Some(T64), "timer F still runs in Proceeding");
    let out = h.response(800, reply(&options, 200, Some("o")), TCP);
    assert_response_event(only_event(&out), &key, 200);
    assert_eq!(h.next_ms(), Some(800), "timer K is zero on TCP");
    let log = h.run_to_end();
    assert_terminated(&timed_events(&log), 800, &key);

    // And F on TCP.
    let options = Req::new("OPTIONS", "z9hG4bKn6").over(TCP).build();
    let key = client_key_of(&options);
    h.send_request(1_000, options, TCP);
    let log = h.run_to_end();
    assert!(transmit_times(&log).is_empty());
    assert_timeout_then_terminated(&timed_events(&log), 1_000 + T64, &key);
}

#[test]
fn client_ack_is_sent_but_is_no_transaction() {
    let mut h = Harness::new();
    let mut r = Req::new("ACK", "z9hG4bKack1");
    r.to_tag = Some("b");
    let out = h.send_request(0, r.build(), UDP);
    only_transmit(&out);
    assert!(h.layer.is_empty());
    assert_eq!(h.layer.poll_timeout(), None);
}

// ===========================================================================
// Server INVITE (RFC 3261 §17.2.1, RFC 6026 §8.5–8.7)

#[test]
fn server_invite_answers_100_trying_at_once() {
    for tp in [UDP, TCP] {
        let mut h = Harness::new();
        let invite = Req::new("INVITE", "z9hG4bKs1").over(tp).build();
        let out = h.request(0, invite.clone(), tp);
        assert_eq!(out.len(), 2, "{out:?}");
        let (to, trying) = match &out[0] {
            Output::Transmit { peer, bytes } => (*peer, parse_response(bytes)),
            other => panic!("100 Trying first, got {other:?}"),
        };
        assert_eq!(to, peer(tp));
        assert_eq!(trying.code, 100);
        assert_eq!(trying.core.top_branch(), Some("z9hG4bKs1"));
        assert_eq!(trying.core.cseq, invite.core.cseq);
        assert_eq!(trying.core.call_id, invite.core.call_id);
        assert_eq!(trying.core.to.tag, None, "100 Trying carries no To tag");
        let (key, from) = assert_request_event(events(&out)[0], "INVITE");
        assert_eq!(from, peer(tp));
        assert_eq!(key, server_key(&invite));
        assert_eq!(key.method, "INVITE");
        assert_eq!(key.branch, "z9hG4bKs1");
        assert_eq!(key.sent_by, "192.0.2.1:5060");
        assert_eq!(h.layer.len(), 1);
        assert_eq!(h.layer.poll_timeout(), None, "Proceeding waits for the TU without a timer");
    }
}

#[test]
fn server_invite_retransmission_replays_last_provisional() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "z9hG4bKs2").build();
    let key = start_server(&mut h, 0, &invite, UDP);

    let (to, again) = only_transmit(&h.request(500, invite.clone(), UDP));
    assert_eq!(to, peer(UDP));
    assert_eq!(parse_response(&again).code, 100, "the 100 Trying replayed; the TU does not see the INVITE again");

    let ringing = response_to(&invite, 180, Some("s2"));
    let (_, sent) = only_transmit(&h.send_response(800, &key, ringing.clone()));
    assert_eq!(sent, ringing.to_bytes());
    let (_, again) = only_transmit(&h.request(1_500, invite.clone(), UDP));
    assert_eq!(again, ringing.to_bytes(), "the latest provisional is replayed");

    let progress = response_to(&invite, 183, Some("s2"));
    h.send_response(2_000, &key, progress.clone());
    let (_, again) = only_transmit(&h.request(3_500, invite.clone(), UDP));
    assert_eq!(again, progress.to_bytes());
    assert_eq!(h.layer.poll_timeout(), None);
    assert_eq!(h.layer.len(), 1);
}

#[test]
fn server_invite_udp_non2xx_timer_g_until_timer_h() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "z9hG4bKs3").build();
    let key = start_server(&mut h, 0, &invite, UDP);
    h.send_response(100, &key, response_to(&invite, 180, Some("s3")));

    let busy = response_to(&invite, 486, Some("s3"));
    let (to, sent) = only_transmit(&h.send_response(1_000, &key, busy.clone()));
    assert_eq!(to, peer(UDP));
    assert_eq!(sent, busy.to_bytes());
    assert_eq!(h.next_ms(), Some(1_000 + T1), "timer G starts at T1");

    // A retransmitted INVITE in Completed gets the final again.
    let (_, again) = only_transmit(&h.request(1_200, invite.clone(), UDP));
    assert_eq!(again, sent);
    // The TU cannot send a second final.
    assert!(h.send_response(1_300, &key, response_to(&invite, 200, Some("s3"))).is_empty());

    let log = h.run_to_end();
    // G: T1, 2T1, 4T1, then capped at T2.
    let mut expected = vec![1_500, 2_500, 4_500];
    let mut t = 4_500;
    while t + T2 < 1_000 + T64 {
        t += T2;
        expected.push(t);
    }
    assert_eq!(&expected[3..5], &[8_500, 12_500]);
    assert_eq!(transmit_times(&log), expected);
    assert!(log.iter().all(|(_, o)| !matches!(o, Output::Transmit { bytes, .. } if *bytes != sent)));
    // H: no ACK within 64*T1.
    assert_timeout_then_terminated(&timed_events(&log), 1_000 + T64, &key);
}

#[test]
fn server_invite_g_interval_caps_at_t2_with_small_t2() {
    // With T2 = 2*T1 the cap shows after the first doubling.
    let config = TimerConfig { t1: Duration::from_millis(100), t2: Duration::from_millis(200), t4: Duration::from_millis(1_000) };
    let mut h = Harness::with_config(config);
    let invite = Req::new("INVITE", "z9hG4bKs4").build();
    let key = start_server(&mut h, 0, &invite, UDP);
    h.send_response(0, &key, response_to(&invite, 500, Some("s4")));
    let log = h.run_to_end();
    let expected: Vec<u64> = std::iter::once(100).chain((1..).map(|i| 100 + i * 200)).take_while(|t| *t < 6_400).collect();
    assert_eq!(transmit_times(&log), expected);
    assert_timeout_then_terminated(&timed_events(&log), 6_400, &key);
}

#[test]
fn server_invite_udp_ack_confirms_and_waits_timer_i() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "z9hG4bKs5").build();
    let key = start_server(&mut h, 0, &invite, UDP);
    let busy = response_to(&invite, 486, Some("s5"));
    h.send_response(0, &key, busy);
    let log = h.run_until(1_000);
    assert_eq!(transmit_times(&log), vec![500]);

    let mut ack = Req::new("ACK", "z9hG4bKs5");
    ack.to_tag = Some("s5");
    ack.cseq_method = Some("ACK");
    let ack = ack.build();
    assert_eq!(server_key(&ack), key, "the ACK for a non-2xx matches its INVITE");
    let out = h.request(1_000, ack.clone(), UDP);
    assert!(out.is_empty(), "the ACK is absorbed: {out:?}");
    assert_eq!(h.next_ms(), Some(1_000 + T4), "timer I = T4; G and H are gone");

    // Confirmed absorbs ACK and INVITE retransmissions.
    assert!(h.request(2_000, ack, UDP).is_empty());
    assert!(h.request(2_100, invite.clone(), UDP).is_empty());
    assert_eq!(h.next_ms(), Some(1_000 + T4));
    let log = h.run_to_end();
    assert!(transmit_times(&log).is_empty(), "no retransmission after the ACK: {log:?}");
    assert_terminated(&timed_events(&log), 1_000 + T4, &key);
}

#[test]
fn server_invite_tcp_no_timer_g_and_i_is_zero() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "z9hG4bKs6").over(TCP).build();
    let key = start_server(&mut h, 0, &invite, TCP);
    let (to, _) = only_transmit(&h.send_response(200, &key, response_to(&invite, 603, Some("s6"))));
    assert_eq!(to, peer(TCP), "responses go back on the request's flow");
    assert_eq!(h.next_ms(), Some(200 + T64), "no timer G, only H");
    let mut ack = Req::new("ACK", "z9hG4bKs6").over(TCP);
    ack.to_tag = Some("s6");
    ack.cseq_method = Some("ACK");
    assert!(h.request(700, ack.build(), TCP).is_empty());
    assert_eq!(h.next_ms(), Some(700), "timer I is zero on TCP");
    let log = h.run_to_end();
    assert_terminated(&timed_events(&log), 700, &key);

    // H runs on TCP too.
    let invite = Req::new("INVITE", "z9hG4bKs7").over(TCP).build();
    let key = start_server(&mut h, 1_000, &invite, TCP);
    h.send_response(1_000, &key, response_to(&invite, 404, Some("s7")));
    let log = h.run_to_end();
    assert!(transmit_times(&log).is_empty());
    assert_timeout_then_terminated(&timed_events(&log), 1_000 + T64, &key);
}

#[test]
fn server_invite_2xx_accepted_until_timer_l() {
    for tp in [UDP, TCP] {
        let mut h = Harness::new();
        let invite = Req::new("INVITE", "z9hG4bKs8").over(tp).build();
        let key = start_server(&mut h, 0, &invite, tp);
        h.send_response(100, &key, response_to(&invite, 180, Some("s8")));
        let ok = response_to(&invite, 200, Some("s8"));
        let (to, sent) = only_transmit(&h.send_response(1_000, &key, ok.clone()));
        assert_eq!(to, peer(tp));
        assert_eq!(sent, ok.to_bytes());
        assert_eq!(h.next_ms(), Some(1_000 + T64), "timer L = 64*T1 on every transport");

        // The transaction never retransmits a 2xx itself.
        let log = h.run_until(3_000);
        assert!(log.is_empty(), "{log:?}");
        // INVITE retransmissions are absorbed (the TU's 2xx timer answers).
        assert!(h.request(3_000, invite.clone(), tp).is_empty());
        // The TU's own 2xx retransmissions go out through the transaction.
        let (to, again) = only_transmit(&h.send_response(3_500, &key, ok.clone()));
        assert_eq!(to, peer(tp));
        assert_eq!(again, sent);
        // A provisional or another final after the 2xx is not sent.
        assert!(h.send_response(3_600, &key, response_to(&invite, 180, Some("s8"))).is_empty());
        assert!(h.send_response(3_700, &key, response_to(&invite, 486, Some("s8"))).is_empty());

        // The ACK for a 2xx is its own transaction (new branch): to the TU.
        let mut ack = Req::new("ACK", "z9hG4bKs8ack").over(tp);
        ack.to_tag = Some("s8");
        ack.cseq_method = Some("ACK");
        ack.uri = "sip:bob@192.0.2.9";
        let out = h.request(4_000, ack.build(), tp);
        let (ack_key, _) = assert_request_event(only_event(&out), "ACK");
        assert_ne!(ack_key, key);
        // An ACK that reuses the INVITE's branch matches the transaction in
        // Accepted and reaches the TU as well (RFC 6026 §8.7).
        let mut ack = Req::new("ACK", "z9hG4bKs8").over(tp);
        ack.to_tag = Some("s8");
        ack.cseq_method = Some("ACK");
        let out = h.request(4_500, ack.build(), tp);
        let (ack_key, _) = assert_request_event(only_event(&out), "ACK");
        assert_eq!(ack_key, key);
        assert_eq!(h.next_ms(), Some(1_000 + T64), "the ACK does not end Accepted early");

        let log = h.run_to_end();
        assert!(transmit_times(&log).is_empty());
        assert_terminated(&timed_events(&log), 1_000 + T64, &key);
        // Gone: a late INVITE retransmission would be a new transaction.
        assert!(h.send_response(1_000 + T64 + 1, &key, ok).is_empty());
    }
}

#[test]
fn server_invite_2xx_straight_from_proceeding_with_only_100() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "z9hG4bKs9").build();
    let key = start_server(&mut h, 0, &invite, UDP);
    h.send_response(50, &key, response_to(&invite, 200, Some("s9")));
    let log = h.run_to_end();
    assert_terminated(&timed_events(&log), 50 + T64, &key);
}

// ===========================================================================
// Server non-INVITE (RFC 3261 §17.2.2)

#[test]
fn server_non_invite_trying_absorbs_retransmissions() {
    let mut h = Harness::new();
    let options = Req::new("OPTIONS", "z9hG4bKt1").build();
    let key = start_server(&mut h, 0, &options, UDP);
    assert_eq!(key.method, "OPTIONS");
    assert_eq!(h.layer.poll_timeout(), None);
    for at in [500, 1_500, 3_500] {
        assert!(h.request(at, options.clone(), UDP).is_empty(), "silently absorbed in Trying");
    }
    assert_eq!(h.layer.len(), 1);
}

#[test]
fn server_non_invite_proceeding_replays_provisional() {
    let mut h = Harness::new();
    let register = Req::new("REGISTER", "z9hG4bKt2").build();
    let key = start_server(&mut h, 0, &register, UDP);
    let trying = response_to(&register, 100, None);
    let (_, sent) = only_transmit(&h.send_response(100, &key, trying));
    let (to, again) = only_transmit(&h.request(500, register.clone(), UDP));
    assert_eq!(to, peer(UDP));
    assert_eq!(again, sent);
    assert_eq!(h.layer.poll_timeout(), None, "no timer in Proceeding");
}

#[test]
fn server_non_invite_final_replayed_until_timer_j() {
    for tp in [UDP, TCP] {
        for provisional_first in [false, true] {
            let mut h = Harness::new();
            let bye = Req::new("BYE", "z9hG4bKt3").over(tp).build();
            let key = start_server(&mut h, 0, &bye, tp);
            if provisional_first {
                h.send_response(100, &key, response_to(&bye, 100, None));
            }
            let ok = response_to(&bye, 200, None);
            let (to, sent) = only_transmit(&h.send_response(1_000, &key, ok));
            assert_eq!(to, peer(tp));
            let j = if tp == UDP { T64 } else { 0 };
            assert_eq!(h.next_ms(), Some(1_000 + j), "timer J is 64*T1 on UDP, 0 on TCP");
            if tp == UDP {
                // No retransmission on its own, only in answer.
                let log = h.run_until(9_000);
                assert!(log.is_empty(), "{log:?}");
                for at in [9_000, 20_000] {
                    let (_, again) = only_transmit(&h.request(at, bye.clone(), tp));
                    assert_eq!(again, sent);
                }
                assert!(h.send_response(20_100, &key, response_to(&bye, 500, None)).is_empty());
                assert_eq!(h.next_ms(), Some(1_000 + j));
            }
            let log = h.run_to_end();
            assert!(transmit_times(&log).is_empty());
            assert_terminated(&timed_events(&log), 1_000 + j, &key);
            // After J the same request is new again.
            let out = h.request(1_000 + j + 1, bye.clone(), tp);
            assert_request_event(only_event(&out), "BYE");
        }
    }
}

#[test]
fn send_response_to_unknown_or_client_key_is_ignored() {
    let mut h = Harness::new();
    let options = Req::new("OPTIONS", "z9hG4bKt4").build();
    let key = client_key_of(&options);
    h.send_request(0, options.clone(), UDP);
    assert!(h.send_response(10, &key, response_to(&options, 200, None)).is_empty());
    let mut unknown = server_key(&options);
    unknown.branch.push('x');
    assert!(h.send_response(20, &unknown, response_to(&options, 200, None)).is_empty());
    assert_eq!(h.next_ms(), Some(T1), "the client transaction is untouched");
}

// ===========================================================================
// Matching (RFC 3261 §17.1.3, §17.2.3)

#[test]
fn server_match_branch_sent_by_and_method() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "z9hG4bKm1").build();
    let key = start_server(&mut h, 0, &invite, UDP);

    // Same branch from another sent-by: another transaction.
    let mut other = Req::new("INVITE", "z9hG4bKm1");
    other.sent_by = "198.51.100.2:5060";
    let other = other.build();
    let other_key = start_server(&mut h, 10, &other, UDP);
    assert_ne!(other_key, key);
    assert_eq!(other_key.sent_by, "198.51.100.2:5060");

    // Same branch and sent-by, another method: another transaction.
    let info = Req::new("INFO", "z9hG4bKm1").build();
    let info_key = start_server(&mut h, 20, &info, UDP);
    assert_ne!(info_key, key);

    // CANCEL: its own transaction, which finds the INVITE.
    let cancel = Req::new("CANCEL", "z9hG4bKm1").build();
    assert_eq!(h.layer.invite_for_cancel(&cancel), Some(key.clone()));
    let cancel_key = start_server(&mut h, 30, &cancel, UDP);
    assert_eq!(cancel_key.method, "CANCEL");
    assert_ne!(cancel_key, key);
    assert_eq!(h.layer.len(), 4);
    let (_, ok) = only_transmit(&h.send_response(40, &cancel_key, response_to(&cancel, 200, Some("m1"))));
    assert_eq!(parse_response(&ok).core.cseq.method, "CANCEL");
    let (_, terminated) = only_transmit(&h.send_response(41, &key, response_to(&invite, 487, Some("m1"))));
    assert_eq!(parse_response(&terminated).code, 487);
    // The INVITE's own retransmission still matches only the INVITE.
    let (_, again) = only_transmit(&h.request(50, invite.clone(), UDP));
    assert_eq!(again, terminated);

    // A CANCEL with an unknown branch, or for a non-INVITE, finds nothing.
    assert_eq!(h.layer.invite_for_cancel(&Req::new("CANCEL", "z9hG4bKnone").build()), None);
    let options = Req::new("OPTIONS", "z9hG4bKm2").build();
    start_server(&mut h, 60, &options, UDP);
    assert_eq!(h.layer.invite_for_cancel(&Req::new("CANCEL", "z9hG4bKm2").build()), None);
}

#[test]
fn stray_ack_goes_to_the_tu_without_a_transaction() {
    let mut h = Harness::new();
    let mut ack = Req::new("ACK", "z9hG4bKm3");
    ack.to_tag = Some("x");
    let out = h.request(0, ack.build(), UDP);
    let (key, from) = assert_request_event(only_event(&out), "ACK");
    assert_eq!(from, peer(UDP));
    assert_eq!(key.method, "INVITE");
    assert!(h.layer.is_empty(), "an ACK never creates a transaction");
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn rfc2543_invite_retransmission_and_ack_match() {
    let mut h = Harness::new();
    let invite = Req::rfc2543("INVITE").build();
    assert_eq!(invite.core.top_branch(), None);
    let key = start_server(&mut h, 0, &invite, UDP);
    assert!(!key.branch.starts_with("z9hG4bK"));

    // A retransmission (the same request again) matches: 100 replayed.
    let (_, again) = only_transmit(&h.request(500, invite.clone(), UDP));
    assert_eq!(parse_response(&again).code, 100);
    assert_eq!(h.layer.len(), 1);

    // Another CSeq or Call-ID or From tag is another transaction.
    let mut next = Req::rfc2543("INVITE");
    next.cseq += 1;
    start_server(&mut h, 600, &next.build(), UDP);
    let mut next = Req::rfc2543("INVITE");
    next.call_id = "other-call";
    start_server(&mut h, 700, &next.build(), UDP);
    assert_eq!(h.layer.len(), 3);

    // A branch without the magic cookie is RFC 2543 too.
    let mut old_branch = Req::rfc2543("INVITE");
    old_branch.branch = Some("0a1b2c".into());
    let k = server_key(&old_branch.build());
    assert_eq!(k, key, "a pre-3261 branch is not used for matching");

    // Final, then the ACK (RFC 2543 too, with our To tag) confirms.
    h.send_response(1_000, &key, response_to(&invite, 404, Some("nf")));
    let mut ack = Req::rfc2543("ACK");
    ack.to_tag = Some("nf");
    ack.cseq_method = Some("ACK");
    assert!(h.request(1_200, ack.build(), UDP).is_empty());
    let log = h.run_until(1_200 + T4);
    // Only the Confirmed transaction had timers; it ends at I.
    assert!(transmit_times(&log).is_empty(), "no timer G after the ACK: {log:?}");
    assert_terminated(&timed_events(&log), 1_200 + T4, &key);
    assert_eq!(h.layer.len(), 2);
}

#[test]
fn rfc2543_non_invite_retransmission_matches() {
    let mut h = Harness::new();
    let options = Req::rfc2543("OPTIONS").build();
    let key = start_server(&mut h, 0, &options, UDP);
    assert!(h.request(500, options.clone(), UDP).is_empty(), "absorbed in Trying");
    let (_, ok) = only_transmit(&h.send_response(600, &key, response_to(&options, 200, Some("o"))));
    let (_, again) = only_transmit(&h.request(1_000, options.clone(), UDP));
    assert_eq!(again, ok);

    // Another Request-URI is another request for RFC 2543 non-INVITEs.
    let mut other = Req::rfc2543("OPTIONS");
    other.uri = "sip:carol@example.com";
    start_server(&mut h, 1_100, &other.build(), UDP);
    assert_eq!(h.layer.len(), 2);
}

#[test]
fn rfc2543_cancel_finds_its_invite() {
    let mut h = Harness::new();
    let invite = Req::rfc2543("INVITE").build();
    let key = start_server(&mut h, 0, &invite, UDP);
    let cancel = Req::rfc2543("CANCEL").build();
    assert_eq!(h.layer.invite_for_cancel(&cancel), Some(key.clone()));
    let cancel_key = start_server(&mut h, 100, &cancel, UDP);
    assert_ne!(cancel_key, key);
    assert_eq!(cancel_key.method, "CANCEL");
    // A CANCEL for another request (other CSeq number) finds nothing.
    let mut other = Req::rfc2543("CANCEL");
    other.cseq += 1;
    assert_eq!(h.layer.invite_for_cancel(&other.build()), None);
}

#[test]
fn client_match_branch_method_and_stray_responses() {
    let mut h = Harness::new();
    let invite = Req::new("INVITE", "z9hG4bKc1").build();
    let key = client_key_of(&invite);
    h.send_request(0, invite.clone(), UDP);

    // Unknown branch.
    let mut stranger = Req::new("INVITE", "z9hG4bKunknown");
    stranger.call_id = "somebody-else";
    let stray = reply(&stranger.build(), 200, Some("z"));
    let out = h.response(100, stray, UDP);
    match only_event(&out) {
        TxEvent::StrayResponse { response, peer: p } => {
            assert_eq!(response.core.top_branch(), Some("z9hG4bKunknown"));
            assert_eq!(*p, peer(UDP));
        }
        other => panic!("expected a stray response, got {other:?}"),
    }
    // Right branch, CSeq method of another transaction (e.g. the CANCEL's 200).
    let cancel = Req::new("CANCEL", "z9hG4bKc1").build();
    let out = h.response(200, reply(&cancel, 200, Some("z")), UDP);
    assert!(matches!(only_event(&out), TxEvent::StrayResponse { .. }));
    // Right branch, another sent-by.
    let mut elsewhere = Req::new("INVITE", "z9hG4bKc1");
    elsewhere.sent_by = "198.51.100.3:5070";
    let out = h.response(300, reply(&elsewhere.build(), 180, Some("z")), UDP);
    assert!(matches!(only_event(&out), TxEvent::StrayResponse { .. }));

    // None of that touched the transaction: A still runs from 0.
    assert_eq!(h.next_ms(), Some(T1));
    let out = h.response(400, reply(&invite, 180, Some("z")), UDP);
    assert_response_event(only_event(&out), &key, 180);

    // A CANCEL is its own client transaction next to the INVITE.
    let cancel_key = client_key_of(&cancel);
    h.send_request(500, cancel.clone(), UDP);
    assert_eq!(h.layer.len(), 2);
    let out = h.response(600, reply(&cancel, 200, Some("z")), UDP);
    assert_response_event(only_event(&out), &cancel_key, 200);
    let out = h.response(700, reply(&invite, 487, Some("z")), UDP);
    assert_response_event(events(&out)[0], &key, 487);
    let log = h.run_to_end();
    let evs = timed_events(&log);
    assert_eq!(evs.len(), 2);
    assert!(matches!(evs[0], (t, TxEvent::Terminated { key: k }) if t == 600 + T4 && *k == cancel_key));
    assert!(matches!(evs[1], (t, TxEvent::Terminated { key: k }) if t == 700 + 32_000 && *k == key));
}

#[test]
fn responses_never_match_server_transactions() {
    let mut h = Harness::new();
    let options = Req::new("OPTIONS", "z9hG4bKc2").build();
    start_server(&mut h, 0, &options, UDP);
    let out = h.response(10, reply(&options, 200, Some("x")), UDP);
    assert!(matches!(only_event(&out), TxEvent::StrayResponse { .. }));
    assert_eq!(h.layer.len(), 1);
}

// ===========================================================================
// Many transactions at once: poll_timeout is always the earliest deadline

#[test]
fn poll_timeout_is_the_earliest_deadline_across_transactions() {
    let mut h = Harness::new();
    // A client INVITE on UDP (A at 500, 1500, ...; B at 32 000).
    let inv = Req::new("INVITE", "z9hG4bKp1").build();
    h.send_request(0, inv.clone(), UDP);
    // A client non-INVITE on TCP (F at 100 + 32 000).
    let opt = Req::new("OPTIONS", "z9hG4bKp2").over(TCP).build();
    h.send_request(100, opt.clone(), TCP);
    assert_eq!(h.next_ms(), Some(500));
    // A server non-INVITE answered at once on UDP (J at 200 + 32 000).
    let reg = Req::new("REGISTER", "z9hG4bKp3").build();
    let reg_key = start_server(&mut h, 200, &reg, UDP);
    h.send_response(200, &reg_key, response_to(&reg, 200, Some("r")));
    // A server INVITE rejected on UDP at 300 (G at 800, 1800, ...; H at 32 300).
    let inv2 = Req::new("INVITE", "z9hG4bKp4").build();
    let inv2_key = start_server(&mut h, 300, &inv2, UDP);
    h.send_response(300, &inv2_key, response_to(&inv2, 480, Some("u")));
    assert_eq!(h.next_ms(), Some(500));

    // A 2xx at 400 stops the client INVITE's A: the earliest is G at 800.
    h.response(400, reply(&inv, 200, Some("b")), UDP);
    assert_eq!(h.next_ms(), Some(800));
    // The OPTIONS completes over TCP at 450: K = 0 is now the earliest.
    h.response(450, reply(&opt, 200, Some("o")), TCP);
    assert_eq!(h.next_ms(), Some(450));
    let (at, out) = h.step().unwrap();
    assert_eq!(at, 450);
    assert!(matches!(only_event(&out), TxEvent::Terminated { key } if *key == client_key_of(&opt)));
    assert_eq!(h.next_ms(), Some(800));

    let log = h.run_to_end();
    let ends: Vec<(u64, String)> = timed_events(&log)
        .into_iter()
        .map(|(t, e)| match e {
            TxEvent::Terminated { key } => (t, format!("end {}", key.branch)),
            TxEvent::Timeout { key } => (t, format!("timeout {}", key.branch)),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ends,
        vec![
            (200 + T64, "end z9hG4bKp3".to_string()),
            (300 + T64, "timeout z9hG4bKp4".to_string()),
            (300 + T64, "end z9hG4bKp4".to_string()),
            (400 + T64, "end z9hG4bKp1".to_string()),
        ]
    );
    // Only G retransmissions were sent, at their exact times.
    assert_eq!(transmit_times(&log), vec![800, 1_800, 3_800, 7_800, 11_800, 15_800, 19_800, 23_800, 27_800, 31_800]);
}

#[test]
fn late_wake_up_runs_every_due_timer() {
    let mut h = Harness::new();
    let a = Req::new("OPTIONS", "z9hG4bKl1").over(TCP).build();
    let b = Req::new("OPTIONS", "z9hG4bKl2").over(TCP).build();
    h.send_request(0, a.clone(), TCP);
    h.send_request(10, b.clone(), TCP);
    h.response(20, reply(&a, 200, None), TCP);
    h.response(30, reply(&b, 200, None), TCP);
    // One wake-up after both deadlines handles both.
    let out = h.tick(1_000);
    let ended: Vec<&TxKey> = events(&out)
        .into_iter()
        .map(|e| match e {
            TxEvent::Terminated { key } => key,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ended.len(), 2);
    assert!(h.layer.is_empty());
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn many_transactions_all_end() {
    let mut h = Harness::new();
    let mut n = 0;
    let mut log = Vec::new();
    for i in 0..40u64 {
        // K = 0 and J = 0 on TCP are due at once: run them as a shell would.
        log.extend(h.run_until(i));
        let tp = if i % 2 == 0 { UDP } else { TCP };
        let branch = format!("z9hG4bKmany{i}");
        match i % 4 {
            0 => {
                h.send_request(i, Req::new("INVITE", &branch).over(tp).build(), tp);
            }
            1 => {
                let r = Req::new("MESSAGE", &branch).over(tp).build();
                h.send_request(i, r.clone(), tp);
                h.response(i, reply(&r, 202, Some("m")), tp);
            }
            2 => {
                let r = Req::new("INVITE", &branch).over(tp).build();
                let k = start_server(&mut h, i, &r, tp);
                h.send_response(i, &k, response_to(&r, 404, Some("n")));
            }
            _ => {
                let r = Req::new("SUBSCRIBE", &branch).over(tp).build();
                let k = start_server(&mut h, i, &r, tp);
                h.send_response(i, &k, response_to(&r, 200, Some("s")));
            }
        }
        n += 1;
    }
    log.extend(h.run_to_end());
    let terminated = timed_events(&log).iter().filter(|(_, e)| matches!(e, TxEvent::Terminated { .. })).count();
    assert_eq!(terminated, n);
}

#[test]
fn resending_a_branch_replaces_the_old_transaction() {
    let mut h = Harness::new();
    let options = Req::new("OPTIONS", "z9hG4bKr1").build();
    let key = client_key_of(&options);
    h.send_request(0, options.clone(), UDP);
    h.send_request(100, options, UDP);
    assert_eq!(h.layer.len(), 1);
    assert_eq!(h.next_ms(), Some(100 + T1), "the first transaction's deadlines are gone");
    let log = h.run_to_end();
    assert_eq!(transmit_times(&log)[0], 600);
    assert_timeout_then_terminated(&timed_events(&log), 100 + T64, &key);
}

#[test]
fn rfc2543_ack_for_2xx_reaches_the_tu() {
    let mut h = Harness::new();
    let invite = Req::rfc2543("INVITE").build();
    let key = start_server(&mut h, 0, &invite, UDP);
    h.send_response(100, &key, response_to(&invite, 200, Some("ok")));
    let mut ack = Req::rfc2543("ACK");
    ack.to_tag = Some("ok");
    ack.uri = "sip:bob@192.0.2.9";
    let out = h.request(200, ack.build(), UDP);
    let (ack_key, _) = assert_request_event(only_event(&out), "ACK");
    assert_eq!(ack_key, key, "an RFC 2543 ACK matches the INVITE it acknowledges");
    let log = h.run_to_end();
    assert_terminated(&timed_events(&log), 100 + T64, &key);
}

#[test]
fn stateless_answer_forgets_the_transaction() {
    let mut h = Harness::new();
    let register = Req::new("REGISTER", "z9hG4bKst1").build();
    let key = start_server(&mut h, 0, &register, UDP);
    let challenge = response_to(&register, 401, Some("t"));
    let out = h.input(10, Input::SendStateless { key: key.clone(), response: challenge });
    assert_eq!(transmits(&out).len(), 1, "the 401 goes out");
    assert!(h.layer.is_empty(), "no state kept");
    assert_eq!(h.layer.poll_timeout(), None);
    // A retransmission is a new request for the TU (and gets a new answer).
    let again = h.request(500, register.clone(), UDP);
    assert_request_event(only_event(&again), "REGISTER");
    // INVITE transactions are never answered statelessly.
    let invite = Req::new("INVITE", "z9hG4bKst2").build();
    let ikey = start_server(&mut h, 600, &invite, UDP);
    let out = h.input(610, Input::SendStateless { key: ikey, response: response_to(&invite, 401, Some("t")) });
    assert!(transmits(&out).is_empty());
}
