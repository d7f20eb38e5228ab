//! The one task that owns the transaction layer: messages from every
//! transport come in, retransmissions are absorbed there, new requests go
//! to the request handler, and responses go back out on their flow.

use super::transport::Transports;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tsunagu_sip::transaction::{Input, Output, TxEvent, TxKey};
use tsunagu_sip::via::{response_target, stamp_received};
use tsunagu_sip::{Message, Peer, Request, Response, TimerConfig, TransactionLayer};

pub enum EndpointInput {
    /// A parsed message from a transport.
    Network { msg: Message, peer: Peer },
    /// The answer to a server transaction.
    Respond { key: TxKey, response: Response },
}

/// Hands answers back to the endpoint; cheap to clone into spawned work.
#[derive(Clone)]
pub struct Responder {
    tx: mpsc::UnboundedSender<EndpointInput>,
}

impl Responder {
    pub fn new(tx: mpsc::UnboundedSender<EndpointInput>) -> Self {
        Self { tx }
    }

    pub fn respond(&self, key: TxKey, response: Response) {
        metrics::counter!("tsunagu_sip_responses_total", "code" => response.code.to_string()).increment(1);
        let _ = self.tx.send(EndpointInput::Respond { key, response });
    }
}

/// The transaction user: what the PBX does with a new request.
pub trait RequestHandler: Send + Sync + 'static {
    /// Called once per new request (never for retransmissions). Must not
    /// block: work that waits (database) is spawned and answers through the
    /// responder later.
    fn on_request(&self, request: Request, key: TxKey, peer: Peer, responder: &Responder);
}

pub fn channel() -> (mpsc::UnboundedSender<EndpointInput>, mpsc::UnboundedReceiver<EndpointInput>) {
    mpsc::unbounded_channel()
}

pub async fn run_endpoint(
    mut rx: mpsc::UnboundedReceiver<EndpointInput>,
    tx: mpsc::UnboundedSender<EndpointInput>,
    transports: Arc<Transports>,
    handler: Arc<dyn RequestHandler>,
    timers: TimerConfig,
) {
    let responder = Responder::new(tx);
    let mut layer = TransactionLayer::new(timers);
    loop {
        while let Some(out) = layer.poll_output() {
            match out {
                Output::Transmit { peer, bytes } => transports.send(peer, bytes).await,
                Output::Event(TxEvent::Request { key, request, peer }) => handler.on_request(request, key, peer, &responder),
                Output::Event(TxEvent::StrayResponse { response, peer }) => {
                    tracing::debug!(source = %peer.addr, code = response.code, "response matches no transaction; dropped");
                }
                Output::Event(TxEvent::Timeout { key }) => tracing::debug!(branch = %key.branch, "transaction timed out"),
                Output::Event(_) => {}
            }
        }
        metrics::gauge!("tsunagu_sip_transactions").set(layer.len() as f64);
        let deadline = layer.poll_timeout();
        let input = tokio::select! {
            input = rx.recv() => match input {
                Some(i) => Some(i),
                None => return,
            },
            _ = sleep_until(deadline) => None,
        };
        let now = Instant::now();
        match input {
            None => layer.handle_input(now, Input::Timeout),
            Some(first) => {
                // Take what is queued in one go: fewer wake-ups under load.
                let mut next = Some(first);
                let mut taken = 0;
                while let Some(input) = next {
                    feed(&mut layer, now, input);
                    taken += 1;
                    next = if taken < 256 { rx.try_recv().ok() } else { None };
                }
                if layer.poll_timeout().is_some_and(|t| t <= now) {
                    layer.handle_input(now, Input::Timeout);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn feed(layer: &mut TransactionLayer, now: Instant, input: EndpointInput) {
    match input {
        EndpointInput::Network { msg: Message::Request(mut request), peer } => {
            stamp_received(&mut request, peer.addr);
            let target = response_target(&request, peer);
            layer.handle_input(now, Input::Request { request, peer: target });
        }
        EndpointInput::Network { msg: Message::Response(response), peer } => {
            layer.handle_input(now, Input::Response { response, peer });
        }
        EndpointInput::Respond { key, response } => layer.handle_input(now, Input::SendResponse { key, response }),
    }
}
