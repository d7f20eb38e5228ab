//! The endpoint: tsunagu-sip's transaction layer behind a lock, driven in
//! place by whichever transport task received a message. Doing the whole
//! job on the receiving thread (parse, match, handle, answer) avoids a
//! hand-off between threads per message; a timer task fires the
//! transaction timers.

use super::transport::Transports;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tsunagu_sip::transaction::{Input, Output, TxEvent, TxKey};
use tsunagu_sip::via::{response_target, stamp_received};
use tsunagu_sip::{Message, Peer, Request, Response, TimerConfig, TransactionLayer};

/// The transaction user: what the PBX does with a new request.
pub trait RequestHandler: Send + Sync + 'static {
    /// Called once per new request (never for retransmissions), on the
    /// receiving task. Must not block: work that waits (database) is
    /// spawned and answers through the responder later.
    fn on_request(&self, request: Request, key: TxKey, peer: Peer, responder: &Responder);
    /// A response to a request the PBX sent (client transaction), including
    /// each retransmitted 2xx to an INVITE (the UAC core ACKs every one).
    fn on_response(&self, _key: TxKey, _response: Response) {}
    /// A client transaction got no (final) answer in time (timer B or F).
    fn on_client_timeout(&self, _key: TxKey) {}
}

/// Hands answers back to the server transaction; cheap to clone into
/// spawned work.
#[derive(Clone)]
pub enum Responder {
    Endpoint(Arc<Endpoint>),
    /// For tests of a handler alone: answers go to a channel.
    Channel(mpsc::UnboundedSender<(TxKey, Response)>),
}

impl Responder {
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<(TxKey, Response)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Responder::Channel(tx), rx)
    }

    pub fn respond(&self, key: TxKey, response: Response) {
        self.answer(key, response, false)
    }

    /// Answer and keep no transaction state (see `Input::SendStateless`).
    pub fn respond_stateless(&self, key: TxKey, response: Response) {
        self.answer(key, response, true)
    }

    fn answer(&self, key: TxKey, response: Response, stateless: bool) {
        count_response(response.code);
        match self {
            Responder::Endpoint(ep) if stateless => ep.run(Input::SendStateless { key, response }),
            Responder::Endpoint(ep) => ep.respond(key, response),
            Responder::Channel(tx) => {
                let _ = tx.send((key, response));
            }
        }
    }
}

/// Per-code response counters; the common codes skip formatting a label.
fn count_response(code: u16) {
    let label: std::borrow::Cow<'static, str> = match code {
        100 => "100".into(),
        200 => "200".into(),
        401 => "401".into(),
        403 => "403".into(),
        other => other.to_string().into(),
    };
    metrics::counter!("tsunagu_sip_responses_total", "code" => label).increment(1);
}

/// Transactions are split over this many independently locked layers by
/// branch: the two receiver threads rarely meet on a lock, and when a
/// layer's table grows it pauses only its own share of the traffic.
const SHARDS: usize = 32;

pub struct Endpoint {
    layers: Vec<Mutex<TransactionLayer>>,
    transports: Arc<Transports>,
    handler: OnceLock<Arc<dyn RequestHandler>>,
}

impl Endpoint {
    pub fn new(transports: Arc<Transports>, timers: TimerConfig) -> Arc<Self> {
        let layers = (0..SHARDS).map(|_| Mutex::new(TransactionLayer::new(timers))).collect();
        Arc::new(Self { layers, transports, handler: OnceLock::new() })
    }

    /// Set once, before traffic flows (the handler needs the endpoint to
    /// exist first).
    pub fn set_handler(&self, handler: Arc<dyn RequestHandler>) {
        let _ = self.handler.set(handler);
    }

    /// A parsed message from a transport.
    pub fn receive(self: &Arc<Self>, msg: Message, peer: Peer) {
        let input = match msg {
            Message::Request(mut request) => {
                stamp_received(&mut request, peer.addr);
                let target = response_target(&request, peer);
                Input::Request { request, peer: target }
            }
            Message::Response(response) => Input::Response { response, peer },
        };
        self.run(input);
    }

    pub fn respond(self: &Arc<Self>, key: TxKey, response: Response) {
        self.run(Input::SendResponse { key, response });
    }

    /// Start a client transaction; the request's top Via branch names it.
    pub fn send_request(self: &Arc<Self>, request: Request, peer: Peer) {
        self.run(Input::SendRequest { request, peer });
    }

    /// Send outside any transaction: an ACK for a 2xx (RFC 3261 §13.2.2.4)
    /// or a 2xx retransmitted by the UAS core.
    pub fn send_raw(&self, peer: Peer, bytes: bytes::Bytes) {
        self.transports.send_now(peer, bytes);
    }

    /// Feed one input to the layer that holds its transaction, then act on
    /// what came out outside the lock (the handler may answer at once,
    /// which takes the lock again).
    fn run(self: &Arc<Self>, input: Input) {
        let shard = shard_of(&input);
        let outputs = {
            let waited = Instant::now();
            let Ok(mut layer) = self.layers[shard].lock() else { return };
            let now = Instant::now();
            layer.handle_input(now, input);
            let out = drain(&mut layer);
            slow("input", waited, now, layer.len());
            out
        };
        self.act(outputs);
    }

    fn act(self: &Arc<Self>, outputs: Vec<Output>) {
        for out in outputs {
            match out {
                Output::Transmit { peer, bytes } => self.transports.send_now(peer, bytes),
                Output::Event(TxEvent::Request { key, request, peer }) => {
                    if let Some(h) = self.handler.get() {
                        h.on_request(request, key, peer, &Responder::Endpoint(self.clone()));
                    }
                }
                Output::Event(TxEvent::StrayResponse { response, peer }) => {
                    tracing::debug!(source = %peer.addr, code = response.code, "response matches no transaction; dropped");
                }
                Output::Event(TxEvent::Response { key, response }) => {
                    if let Some(h) = self.handler.get() {
                        h.on_response(key, response);
                    }
                }
                Output::Event(TxEvent::Timeout { key }) => {
                    tracing::debug!(branch = %key.branch, "transaction timed out");
                    if !key.server {
                        if let Some(h) = self.handler.get() {
                            h.on_client_timeout(key);
                        }
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    fn fire_timers(self: &Arc<Self>) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut count = 0;
        for shard in &self.layers {
            let outputs = {
                let waited = Instant::now();
                let Ok(mut layer) = shard.lock() else { continue };
                let now = Instant::now();
                if layer.poll_timeout().is_some_and(|t| t <= now) {
                    layer.handle_input(now, Input::Timeout);
                }
                slow("timers", waited, now, layer.len());
                count += layer.len();
                next = match (next, layer.poll_timeout()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                drain(&mut layer)
            };
            self.act(outputs);
        }
        metrics::gauge!("tsunagu_sip_transactions").set(count as f64);
        next
    }
}

/// Which layer an input belongs to: by the branch that names its
/// transaction (a CANCEL and an ACK share their INVITE's branch), or, for
/// RFC 2543 peers without one, by Call-ID.
fn shard_of(input: &Input) -> usize {
    let text = match input {
        Input::Request { request, .. } | Input::SendRequest { request, .. } => shard_text(request.core.top_branch(), &request.core.call_id),
        Input::Response { response, .. } => shard_text(response.core.top_branch(), &response.core.call_id),
        Input::SendResponse { key, .. } | Input::SendStateless { key, .. } => match key.branch.strip_prefix("2543|") {
            Some(rest) => rest.split('|').next().unwrap_or(""),
            None => key.branch.as_str(),
        },
        Input::Timeout => "",
    };
    // FNV-1a: the branch is random enough already; this only spreads it.
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (h % SHARDS as u64) as usize
}

fn shard_text<'a>(branch: Option<&'a str>, call_id: &'a str) -> &'a str {
    match branch {
        Some(b) if b.starts_with("z9hG4bK") && b.len() > 7 => b,
        _ => call_id,
    }
}

/// Log a transaction-layer step that waited for or held the lock long
/// enough to delay answers (SIP peers retransmit after 500 ms).
fn slow(what: &str, waited: Instant, locked: Instant, transactions: usize) {
    let held = locked.elapsed();
    let wait = locked - waited;
    if held > Duration::from_millis(20) || wait > Duration::from_millis(20) {
        tracing::warn!(step = what, held_ms = held.as_millis() as u64, waited_ms = wait.as_millis() as u64, transactions, "slow transaction layer step");
    }
}

fn drain(layer: &mut TransactionLayer) -> Vec<Output> {
    let mut v = Vec::new();
    while let Some(o) = layer.poll_output() {
        v.push(o);
    }
    v
}

/// Fires transaction timers. New transactions never need a wake-up sooner
/// than T1 except zero-length linger timers, so sleeping at most 50 ms
/// between looks keeps every timer within 50 ms of its deadline.
pub async fn run_timers(endpoint: Arc<Endpoint>) {
    let max_sleep = Duration::from_millis(50);
    loop {
        let next = endpoint.fire_timers();
        let now = Instant::now();
        let until = next.map_or(now + max_sleep, |t| t.min(now + max_sleep)).max(now + Duration::from_millis(1));
        tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
    }
}
