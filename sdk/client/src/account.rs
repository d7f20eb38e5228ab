//! The driver of one account: a UDP socket towards the PBX, the RFC 3261
//! transaction layer (retransmissions, timeouts) and the [`Registration`]
//! engine, in one tokio task. The app talks to it through [`Account`] and
//! hears from it on an event channel.
//!
//! A connected UDP socket is used on purpose: the kernel then picks the
//! source address the route to the PBX takes, which is what Via and
//! Contact must name, and a network change (Wi-Fi -> LTE) is handled by
//! [`Account::network_changed`] opening a new socket and registering the
//! new flow at once.

use crate::registration::{Flow, RegEvent, RegOutput, RegState, Registration, RegistrationConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tsunagu_sip::{parse_message, response_to, Framing, Input, Limits, Message, Output, Peer, TimerConfig, TransactionLayer, TransportKind, TxEvent};

/// What the app hears from an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    Registration(RegEvent),
    /// A request from the PBX this version does not handle yet (an INVITE
    /// is answered 480 until calls are built).
    Unhandled { method: String },
}

enum Command {
    NetworkChanged,
    Close(oneshot::Sender<()>),
}

/// One account registered with one PBX. Cheap to clone; `close` ends it.
#[derive(Clone)]
pub struct Account {
    commands: mpsc::UnboundedSender<Command>,
    state: Arc<Mutex<RegState>>,
}

impl Account {
    /// Open a flow to `server` and register. Events arrive on the returned
    /// receiver.
    pub async fn start(server: SocketAddr, config: RegistrationConfig) -> Result<(Account, mpsc::UnboundedReceiver<AccountEvent>), StartError> {
        let registration = Registration::new(config, rand::random())?;
        let socket = connect(server).await?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(RegState::Idle));
        tokio::spawn(run(server, socket, registration, rx, events, state.clone()));
        Ok((Account { commands, state }, events_rx))
    }

    pub fn state(&self) -> RegState {
        self.state.lock().map(|s| s.clone()).unwrap_or(RegState::Idle)
    }

    /// The device's network changed: register over a new flow now.
    pub fn network_changed(&self) {
        let _ = self.commands.send(Command::NetworkChanged);
    }

    /// Unregister (waiting at most `timeout` for the PBX) and stop.
    pub async fn close(&self, timeout: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bad account settings: {0}")]
    Config(#[from] crate::registration::ConfigError),
    #[error("cannot open a socket to the PBX: {0}")]
    Io(#[from] std::io::Error),
}

async fn connect(server: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let s = UdpSocket::bind(bind).await?;
    s.connect(server).await?;
    Ok(s)
}

async fn run(
    server: SocketAddr,
    mut socket: UdpSocket,
    mut reg: Registration,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<AccountEvent>,
    state: Arc<Mutex<RegState>>,
) {
    let peer = Peer { addr: server, transport: TransportKind::Udp, flow: 0 };
    let mut tx = TransactionLayer::new(TimerConfig::default());
    let limits = Limits::default();
    let mut buf = vec![0u8; 65536];
    let mut closing: Option<oneshot::Sender<()>> = None;
    match socket.local_addr() {
        Ok(local) => reg.register(Instant::now(), Flow { transport: TransportKind::Udp, local }),
        Err(e) => reg.handle_failure(Instant::now(), &e.to_string()),
    }
    loop {
        // Drain the engines: registration -> transactions -> socket.
        loop {
            let mut progressed = false;
            while let Some(out) = reg.poll_output() {
                progressed = true;
                match out {
                    RegOutput::Send(request) => tx.handle_input(Instant::now(), Input::SendRequest { request, peer }),
                    RegOutput::Event(ev) => {
                        let done = matches!(ev, RegEvent::Unregistered);
                        let _ = events.send(AccountEvent::Registration(ev));
                        if done {
                            if let Ok(mut s) = state.lock() {
                                *s = reg.state().clone();
                            }
                            if let Some(c) = closing.take() {
                                let _ = c.send(());
                                return;
                            }
                        }
                    }
                }
            }
            while let Some(out) = tx.poll_output() {
                progressed = true;
                match out {
                    Output::Transmit { bytes, .. } => {
                        let _ = socket.send(&bytes).await;
                    }
                    Output::Event(TxEvent::Response { response, .. }) => reg.handle_response(Instant::now(), &response),
                    Output::Event(TxEvent::Timeout { .. }) => reg.handle_failure(Instant::now(), "no answer from the PBX"),
                    Output::Event(TxEvent::Request { key, request, .. }) => {
                        // Keep-alive OPTIONS get 200; calls are not built yet.
                        let code = match request.method.as_str() {
                            "OPTIONS" => 200,
                            "ACK" => continue,
                            m => {
                                let _ = events.send(AccountEvent::Unhandled { method: m.to_string() });
                                if m == "INVITE" {
                                    480
                                } else {
                                    501
                                }
                            }
                        };
                        let resp = response_to(&request, code, Some("sdk"));
                        tx.handle_input(Instant::now(), Input::SendResponse { key, response: resp });
                    }
                    Output::Event(_) => {}
                }
            }
            if !progressed {
                break;
            }
        }
        if let Ok(mut s) = state.lock() {
            *s = reg.state().clone();
        }
        let wake = [reg.poll_timeout(), tx.poll_timeout()].into_iter().flatten().min();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => match parse_message(&buf[..n], Framing::Datagram, &limits) {
                    Ok(Message::Response(response)) => tx.handle_input(Instant::now(), Input::Response { response, peer }),
                    Ok(Message::Request(request)) => tx.handle_input(Instant::now(), Input::Request { request, peer }),
                    // Garbage from the network is dropped; the PBX's own
                    // messages always parse.
                    Err(_) => {}
                },
                // ICMP port unreachable on a connected socket: the PBX is not
                // there. The transaction's timeout reports it.
                Err(_) => {}
            },
            _ = sleep => {
                let now = Instant::now();
                tx.handle_input(now, Input::Timeout);
                reg.handle_timeout(now);
            }
            cmd = commands.recv() => match cmd {
                Some(Command::NetworkChanged) => match connect(server).await {
                    Ok(s) => {
                        socket = s;
                        match socket.local_addr() {
                            Ok(local) => reg.register(Instant::now(), Flow { transport: TransportKind::Udp, local }),
                            Err(e) => reg.handle_failure(Instant::now(), &e.to_string()),
                        }
                    }
                    Err(e) => reg.handle_failure(Instant::now(), &e.to_string()),
                },
                Some(Command::Close(done)) => {
                    closing = Some(done);
                    reg.unregister(Instant::now());
                }
                None => return,
            },
        }
    }
}
