//! The transaction layer of RFC 3261 §17 (with the RFC 6026 "Accepted"
//! states), as a sans-IO engine: messages and the current time go in;
//! datagrams to send, events for the transaction user and the next wake-up
//! time come out.
//!
//! Timers: A/B/D (client INVITE), E/F/K (client non-INVITE), G/H/I (server
//! INVITE), J (server non-INVITE), L/M (RFC 6026). On reliable transports the
//! retransmission timers never run and the wait timers are zero.

use crate::message::{response_to, Request, Response};
use bytes::Bytes;
use ezk_sip_types::print::AppendCtx;
use crate::headers::Name;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// T1, T2, T4 of RFC 3261 §17.1.1.1.
#[derive(Debug, Clone, Copy)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
    Ws,
}

impl TransportKind {
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }
    pub fn via_name(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
            TransportKind::Ws => "WS",
        }
    }
}

/// Where a message came from or goes to: an address, and for connection
/// transports the flow (connection) id the shell gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: TransportKind,
    pub flow: u64,
}

/// Identifies one transaction (RFC 3261 §17.1.3 / §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxKey {
    pub server: bool,
    pub branch: String,
    /// `INVITE` for both INVITE and its ACK; otherwise the method.
    pub method: String,
    pub sent_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Calling,
    Trying,
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A or E: retransmit the request; G: retransmit the final response.
    Retransmit,
    /// B or F (client), H (server INVITE): give up.
    Timeout,
    /// D, I, J, K, L, M: leave the terminal wait state.
    Linger,
}

/// What the transaction user is told.
#[derive(Debug, Clone)]
pub enum TxEvent {
    /// A new request (not a retransmission). ACKs for 2xx and stray ACKs
    /// arrive here too, with `key` of a transaction that does not exist.
    Request { key: TxKey, request: Request, peer: Peer },
    /// A response for a client transaction (retransmitted 2xx to INVITE are
    /// passed up too: the UAC core must ACK each, RFC 6026).
    Response { key: TxKey, response: Response },
    /// A response no transaction matched (a proxy would forward it).
    StrayResponse { response: Response, peer: Peer },
    /// Timer B, F or H fired: no (final) response or no ACK arrived.
    Timeout { key: TxKey },
    /// The transaction is gone.
    Terminated { key: TxKey },
}

#[derive(Debug, Clone)]
pub enum Output {
    Transmit { peer: Peer, bytes: Bytes },
    Event(TxEvent),
}

/// Input to [`TransactionLayer::handle_input`].
pub enum Input {
    /// A parsed request from the network.
    Request { request: Request, peer: Peer },
    /// A parsed response from the network.
    Response { response: Response, peer: Peer },
    /// Start a client transaction; the request's top Via branch names it.
    SendRequest { request: Request, peer: Peer },
    /// Answer through the server transaction `key`.
    SendResponse { key: TxKey, response: Response },
    /// Answer a non-INVITE request statelessly (RFC 3261 §8.2.7) and forget
    /// its transaction: a retransmission is then handled as new. For cheap,
    /// repeatable answers such as a 401 challenge, so a registration storm
    /// keeps half the state.
    SendStateless { key: TxKey, response: Response },
    /// The clock reached the wake-up time.
    Timeout,
}

struct Transaction {
    state: State,
    invite: bool,
    peer: Peer,
    /// The request (client) as sent, for retransmission and building ACKs.
    request: Option<Box<Request>>,
    request_bytes: Bytes,
    /// The last response (server) as sent.
    last_response: Option<Bytes>,
    /// Current retransmit interval.
    interval: Duration,
    timers: Vec<(Timer, Instant)>,
    /// The instants this transaction has in `TransactionLayer::deadlines`.
    armed: Vec<Instant>,
}

impl Transaction {
    fn set(&mut self, timer: Timer, at: Instant) {
        self.timers.retain(|(t, _)| *t != timer);
        self.timers.push((timer, at));
    }
    fn cancel(&mut self, timer: Timer) {
        self.timers.retain(|(t, _)| *t != timer);
    }
    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }
}

/// All transactions of one endpoint.
pub struct TransactionLayer {
    config: TimerConfig,
    txs: HashMap<TxKey, Transaction>,
    /// (deadline, key) for every armed timer, so the next wake-up is cheap.
    deadlines: BTreeSet<(Instant, TxKey)>,
    out: VecDeque<Output>,
}

/// The key a request matches as a server transaction.
pub fn server_key(req: &Request) -> TxKey {
    let method = if req.method == "ACK" { "INVITE".to_string() } else { req.method.clone() };
    server_key_as(req, method)
}

/// The server key of `req` as if its method were `method` (a CANCEL looks
/// for its INVITE with the INVITE's key).
fn server_key_as(req: &Request, method: String) -> TxKey {
    let via = req.core.vias.first();
    let sent_by = via.map(|v| v.sent_by.default_print_ctx().to_string()).unwrap_or_default();
    match req.core.top_branch() {
        Some(b) if b.starts_with("z9hG4bK") && b.len() > 7 => TxKey { server: true, branch: b.to_string(), method, sent_by },
        // RFC 2543 peers: no usable branch. Match on what RFC 3261 §17.2.3
        // lists for them (the To tag is left out: the ACK carries ours).
        _ => TxKey {
            server: true,
            branch: format!(
                "2543|{}|{}|{}|{}",
                req.core.call_id,
                req.core.cseq.seq,
                req.core.from.tag.as_deref().unwrap_or(""),
                if method == "INVITE" { "" } else { req.uri.raw.as_str() }
            ),
            method,
            sent_by,
        },
    }
}

/// The key a response matches as a client transaction.
pub fn client_key(resp: &Response) -> TxKey {
    let method = if resp.core.cseq.method == "ACK" { "INVITE".to_string() } else { resp.core.cseq.method.clone() };
    let via = resp.core.vias.first();
    TxKey {
        server: false,
        branch: via.and_then(|v| v.params.get_val("branch")).map(|b| b.to_string()).unwrap_or_default(),
        method,
        sent_by: via.map(|v| v.sent_by.default_print_ctx().to_string()).unwrap_or_default(),
    }
}

impl TransactionLayer {
    pub fn new(config: TimerConfig) -> Self {
        Self { config, txs: HashMap::new(), deadlines: BTreeSet::new(), out: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Request { request, peer } => self.on_request(now, request, peer),
            Input::Response { response, peer } => self.on_response(now, response, peer),
            Input::SendRequest { request, peer } => self.send_request(now, request, peer),
            Input::SendResponse { key, response } => self.send_response(now, &key, response),
            Input::SendStateless { key, response } => self.send_stateless(&key, response),
            Input::Timeout => self.on_timeout(now),
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Input::Timeout`] should be given next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().next().map(|(at, _)| *at)
    }

    /// Whether the server INVITE transaction a CANCEL targets exists, and its
    /// key (RFC 3261 §9.2).
    pub fn invite_for_cancel(&self, cancel: &Request) -> Option<TxKey> {
        let key = server_key_as(cancel, "INVITE".into());
        self.txs.get(&key).filter(|t| t.invite).map(|_| key)
    }

    fn emit(&mut self, out: Output) {
        self.out.push_back(out);
    }

    /// Bring `deadlines` in line with the timers of `key`, touching only that
    /// transaction's entries.
    fn reschedule(&mut self, key: &TxKey) {
        let Some(tx) = self.txs.get_mut(key) else { return };
        for at in tx.armed.drain(..) {
            self.deadlines.remove(&(at, key.clone()));
        }
        for &(_, at) in &tx.timers {
            self.deadlines.insert((at, key.clone()));
            tx.armed.push(at);
        }
    }

    fn unschedule(&mut self, key: &TxKey, tx: &Transaction) {
        for at in &tx.armed {
            self.deadlines.remove(&(*at, key.clone()));
        }
    }

    fn terminate(&mut self, key: &TxKey) {
        if let Some(tx) = self.txs.remove(key) {
            self.unschedule(key, &tx);
            self.emit(Output::Event(TxEvent::Terminated { key: key.clone() }));
        }
    }

    // --- server side ---------------------------------------------------

    fn on_request(&mut self, now: Instant, request: Request, peer: Peer) {
        let key = server_key(&request);
        let Some(tx) = self.txs.get_mut(&key) else {
            if request.method == "ACK" {
                // ACK for a 2xx (or for a transaction long gone): the TU's.
                self.emit(Output::Event(TxEvent::Request { key, request, peer }));
                return;
            }
            let invite = request.method == "INVITE";
            let tx = Transaction {
                state: if invite { State::Proceeding } else { State::Trying },
                invite,
                peer,
                request: None,
                request_bytes: Bytes::new(),
                last_response: None,
                interval: self.config.t1,
                timers: Vec::new(),
                armed: Vec::new(),
            };
            self.txs.insert(key.clone(), tx);
            if invite {
                // Answer at once so the caller stops retransmitting (§17.2.1).
                let trying = response_to(&request, 100, None);
                self.send_response(now, &key, trying);
            }
            self.emit(Output::Event(TxEvent::Request { key, request, peer }));
            return;
        };
        match (tx.invite, request.method == "ACK", tx.state) {
            // A retransmitted request: replay the last response, if any.
            (_, false, State::Proceeding | State::Completed) | (false, false, State::Trying) => {
                if let Some(bytes) = tx.last_response.clone() {
                    let peer = tx.peer;
                    self.emit(Output::Transmit { peer, bytes });
                }
            }
            (true, true, State::Completed) => {
                // ACK for our non-2xx final: stop retransmitting (→ Confirmed).
                tx.state = State::Confirmed;
                tx.cancel(Timer::Retransmit);
                tx.cancel(Timer::Timeout);
                let linger = if tx.reliable() { Duration::ZERO } else { self.config.t4 };
                tx.set(Timer::Linger, now + linger);
                self.reschedule(&key);
            }
            (true, true, State::Accepted) => {
                // RFC 6026: an ACK for the 2xx reaches the TU.
                self.emit(Output::Event(TxEvent::Request { key, request, peer }));
            }
            _ => {} // absorbed
        }
    }

    fn send_stateless(&mut self, key: &TxKey, response: Response) {
        let Some(tx) = self.txs.get(key) else { return };
        if !key.server || tx.invite || !matches!(tx.state, State::Trying | State::Proceeding) {
            return;
        }
        let peer = tx.peer;
        self.emit(Output::Transmit { peer, bytes: response.to_bytes() });
        self.terminate(key);
    }

    fn send_response(&mut self, now: Instant, key: &TxKey, response: Response) {
        let Some(tx) = self.txs.get_mut(key) else { return };
        if !key.server {
            return;
        }
        match tx.state {
            State::Accepted if (200..300).contains(&response.code) => {
                // RFC 6026 §8.5: the TU retransmits its 2xx (or sends one of
                // another fork) through the transaction in Accepted.
                let peer = tx.peer;
                self.emit(Output::Transmit { peer, bytes: response.to_bytes() });
                return;
            }
            State::Completed | State::Confirmed | State::Accepted => return, // a final response was already sent
            _ => {}
        }
        let bytes = response.to_bytes();
        let peer = tx.peer;
        let code = response.code;
        tx.last_response = Some(bytes.clone());
        let c = self.config;
        if code < 200 {
            tx.state = State::Proceeding;
        } else if tx.invite && code < 300 {
            tx.state = State::Accepted;
            tx.set(Timer::Linger, now + 64 * c.t1); // timer L
        } else if tx.invite {
            tx.state = State::Completed;
            if !tx.reliable() {
                tx.interval = c.t1;
                tx.set(Timer::Retransmit, now + c.t1); // timer G
            }
            tx.set(Timer::Timeout, now + 64 * c.t1); // timer H
        } else {
            tx.state = State::Completed;
            let j = if tx.reliable() { Duration::ZERO } else { 64 * c.t1 };
            tx.set(Timer::Linger, now + j); // timer J
        }
        self.reschedule(key);
        self.emit(Output::Transmit { peer, bytes });
    }

    // --- client side ---------------------------------------------------

    fn send_request(&mut self, now: Instant, request: Request, peer: Peer) {
        let c = self.config;
        let invite = request.method == "INVITE";
        let via = request.core.vias.first();
        let key = TxKey {
            server: false,
            branch: request.core.top_branch().unwrap_or_default().to_string(),
            method: request.method.clone(),
            sent_by: via.map(|v| v.sent_by.default_print_ctx().to_string()).unwrap_or_default(),
        };
        let bytes = request.to_bytes();
        let mut tx = Transaction {
            state: if invite { State::Calling } else { State::Trying },
            invite,
            peer,
            request: Some(Box::new(request)),
            request_bytes: bytes.clone(),
            last_response: None,
            interval: c.t1,
            timers: Vec::new(),
            armed: Vec::new(),
        };
        if !peer.transport.is_reliable() {
            tx.set(Timer::Retransmit, now + c.t1); // A or E
        }
        tx.set(Timer::Timeout, now + 64 * c.t1); // B or F
        if key.method == "ACK" {
            // ACK is never a transaction; just send it.
            self.emit(Output::Transmit { peer, bytes });
            return;
        }
        if let Some(old) = self.txs.insert(key.clone(), tx) {
            // The same branch sent again replaces the old transaction.
            self.unschedule(&key, &old);
        }
        self.reschedule(&key);
        self.emit(Output::Transmit { peer, bytes });
    }

    fn on_response(&mut self, now: Instant, response: Response, peer: Peer) {
        let key = client_key(&response);
        let c = self.config;
        let Some(tx) = self.txs.get_mut(&key) else {
            self.emit(Output::Event(TxEvent::StrayResponse { response, peer }));
            return;
        };
        let code = response.code;
        let pass_up = match (tx.invite, tx.state, code) {
            (_, State::Calling | State::Trying | State::Proceeding, 100..=199) => {
                tx.state = State::Proceeding;
                if tx.invite {
                    // A stops on a provisional, and B only runs in Calling
                    // (§17.1.1.2): ringing may last as long as the TU wants.
                    tx.cancel(Timer::Retransmit);
                    tx.cancel(Timer::Timeout);
                }
                true
            }
            (true, State::Calling | State::Proceeding, 200..=299) => {
                tx.state = State::Accepted;
                tx.timers.clear();
                tx.set(Timer::Linger, now + 64 * c.t1); // timer M
                true
            }
            (true, State::Accepted, 200..=299) => true,
            (true, State::Calling | State::Proceeding, _) => {
                tx.state = State::Completed;
                tx.timers.clear();
                let d = if tx.reliable() { Duration::ZERO } else { Duration::from_secs(32) };
                tx.set(Timer::Linger, now + d); // timer D
                let ack = tx.request.as_ref().map(|r| ack_for(r, &response));
                if let Some(ack) = ack {
                    tx.request_bytes = ack.clone(); // what to resend on a retransmitted final
                    let p = tx.peer;
                    self.emit(Output::Transmit { peer: p, bytes: ack });
                }
                true
            }
            (true, State::Completed, 300..) => {
                let (p, ack) = (tx.peer, tx.request_bytes.clone());
                self.emit(Output::Transmit { peer: p, bytes: ack });
                false
            }
            (false, State::Trying | State::Proceeding, 200..) => {
                tx.state = State::Completed;
                tx.timers.clear();
                let k = if tx.reliable() { Duration::ZERO } else { c.t4 };
                tx.set(Timer::Linger, now + k); // timer K
                true
            }
            _ => false, // retransmission absorbed
        };
        self.reschedule(&key);
        if pass_up {
            self.emit(Output::Event(TxEvent::Response { key, response }));
        }
    }

    // --- timers -------------------------------------------------------

    fn on_timeout(&mut self, now: Instant) {
        let due: Vec<(Instant, TxKey)> = self.deadlines.iter().take_while(|(at, _)| *at <= now).cloned().collect();
        for entry in &due {
            self.deadlines.remove(entry);
        }
        for (_, key) in due {
            let Some(tx) = self.txs.get_mut(&key) else { continue };
            let mut fired: Vec<Timer> = tx.timers.iter().filter(|(_, at)| *at <= now).map(|(t, _)| *t).collect();
            fired.sort();
            for timer in fired {
                let Some(tx) = self.txs.get_mut(&key) else { break };
                tx.cancel(timer);
                match timer {
                    Timer::Retransmit => {
                        let c = self.config;
                        let bytes = if key.server { tx.last_response.clone().unwrap_or_default() } else { tx.request_bytes.clone() };
                        // A and G double without bound / up to T2; E doubles up
                        // to T2, and sits at T2 once a provisional came.
                        tx.interval = if tx.invite && !key.server {
                            tx.interval * 2
                        } else if !tx.invite && tx.state == State::Proceeding {
                            c.t2
                        } else {
                            (tx.interval * 2).min(c.t2)
                        };
                        let next = now + tx.interval;
                        tx.set(Timer::Retransmit, next);
                        let peer = tx.peer;
                        self.emit(Output::Transmit { peer, bytes });
                    }
                    Timer::Timeout => {
                        self.emit(Output::Event(TxEvent::Timeout { key: key.clone() }));
                        self.terminate(&key);
                    }
                    Timer::Linger => self.terminate(&key),
                }
            }
            self.reschedule(&key);
        }
    }
}

/// The ACK a client INVITE transaction sends for a non-2xx final response
/// (RFC 3261 §17.1.1.3).
fn ack_for(invite: &Request, response: &Response) -> Bytes {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(256);
    let _ = write!(s, "ACK {} SIP/2.0\r\n", invite.uri.raw);
    // Only the top Via, even if the INVITE's first Via line lists several.
    if let Some(via) = invite.core.vias.first() {
        let _ = write!(s, "Via: {}\r\n", via.default_print_ctx());
    }
    for route in invite.headers.get_raw(&Name::ROUTE) {
        let _ = write!(s, "Route: {route}\r\n");
    }
    let _ = write!(s, "Max-Forwards: 70\r\n");
    let _ = write!(s, "From: {}\r\n", invite.core.from.raw);
    let _ = write!(s, "To: {}\r\n", response.core.to.raw);
    let _ = write!(s, "Call-ID: {}\r\n", invite.core.call_id);
    let _ = write!(s, "CSeq: {} ACK\r\nContent-Length: 0\r\n\r\n", invite.core.cseq.seq);
    Bytes::from(s)
}
