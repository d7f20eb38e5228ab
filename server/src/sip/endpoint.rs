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

pub struct Endpoint {
    layer: Mutex<TransactionLayer>,
    transports: Arc<Transports>,
    handler: OnceLock<Arc<dyn RequestHandler>>,
}

impl Endpoint {
    pub fn new(transports: Arc<Transports>, timers: TimerConfig) -> Arc<Self> {
        Arc::new(Self { layer: Mutex::new(TransactionLayer::new(timers)), transports, handler: OnceLock::new() })
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

    /// Feed one input, then act on what came out, outside the lock (the
    /// handler may answer at once, which takes the lock again).
    fn run(self: &Arc<Self>, input: Input) {
        let outputs = {
            let Ok(mut layer) = self.layer.lock() else { return };
            layer.handle_input(Instant::now(), input);
            drain(&mut layer)
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
                Output::Event(TxEvent::Timeout { key }) => tracing::debug!(branch = %key.branch, "transaction timed out"),
                Output::Event(_) => {}
            }
        }
    }

    fn fire_timers(self: &Arc<Self>) -> Option<Instant> {
        let (outputs, next, count) = {
            let Ok(mut layer) = self.layer.lock() else { return None };
            let now = Instant::now();
            if layer.poll_timeout().is_some_and(|t| t <= now) {
                layer.handle_input(now, Input::Timeout);
            }
            (drain(&mut layer), layer.poll_timeout(), layer.len())
        };
        metrics::gauge!("tsunagu_sip_transactions").set(count as f64);
        self.act(outputs);
        next
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
