//! The driver of one account: a flow to the PBX (UDP, TCP or TLS), the
//! RFC 3261 transaction layer (retransmissions, timeouts) and the
//! [`Registration`] engine, in one tokio task. The app talks to it through
//! [`Account`] and hears from it on an event channel.
//!
//! UDP uses a connected socket on purpose: the kernel then picks the source
//! address the route to the PBX takes, which is what Via and Contact must
//! name. TCP and TLS flows are kept alive with RFC 5626 CRLF pings; a flow
//! that breaks or stops answering is replaced and the account registers
//! over the new one at once. [`Account::network_changed`] does the same
//! when the app learns the device changed networks (Wi-Fi -> LTE).

use crate::keepalive::{KeepAlive, KeepAliveAction};
use crate::registration::{Flow, RegEvent, RegOutput, RegState, Registration, RegistrationConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tsunagu_sip::{
    parse_message, response_to, Frame, Framing, Input, Limits, Message, Output, Peer, StreamFramer, TimerConfig, TransactionLayer, TransportKind, TxEvent,
};

/// How the account reaches the PBX.
#[derive(Debug, Clone)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS, trusting the certificates in `ca` (PEM): the PBX's CA, or its
    /// own certificate for a development server. The server is named by
    /// its IP address.
    Tls { ca: PathBuf },
}

impl Transport {
    fn kind(&self) -> TransportKind {
        match self {
            Transport::Udp => TransportKind::Udp,
            Transport::Tcp => TransportKind::Tcp,
            Transport::Tls { .. } => TransportKind::Tls,
        }
    }
}

/// What the app hears from an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    Registration(RegEvent),
    /// A request from the PBX this version does not handle yet (an INVITE
    /// is answered 480 until calls are built).
    Unhandled { method: String },
    /// The flow to the PBX broke (closed, or no pong); a new one is opened.
    FlowLost { reason: String },
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

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bad account settings: {0}")]
    Config(#[from] crate::registration::ConfigError),
    #[error("cannot reach the PBX: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// Keep-alive of TCP and TLS flows (RFC 5626 §4.4.1 recommends 95–120 s).
const PING_INTERVAL: Duration = Duration::from_secs(110);
const PONG_TIMEOUT: Duration = Duration::from_secs(10);

impl Account {
    /// Register over UDP. Events arrive on the returned receiver.
    pub async fn start(server: SocketAddr, config: RegistrationConfig) -> Result<(Account, mpsc::UnboundedReceiver<AccountEvent>), StartError> {
        Self::start_with(server, Transport::Udp, config).await
    }

    /// Open a flow of `transport` to `server` and register over it.
    pub async fn start_with(
        server: SocketAddr,
        transport: Transport,
        config: RegistrationConfig,
    ) -> Result<(Account, mpsc::UnboundedReceiver<AccountEvent>), StartError> {
        let registration = Registration::new(config, rand::random())?;
        let tls = match &transport {
            Transport::Tls { ca } => Some(tls_connector(ca)?),
            _ => None,
        };
        let dialer = Dialer { server, transport, tls };
        let conn = dialer.connect().await?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(RegState::Idle));
        tokio::spawn(run(dialer, conn, registration, rx, events, state.clone()));
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

fn tls_connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, StartError> {
    let pem = std::fs::read(ca).map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
        roots.add(cert).map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(StartError::Tls(format!("{}: no certificate in the file", ca.display())));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Opens flows to the PBX.
struct Dialer {
    server: SocketAddr,
    transport: Transport,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// One flow.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream, StreamFramer),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>, StreamFramer),
}

/// What a read from a flow gave.
enum Incoming {
    Messages(Vec<Message>),
    Pong,
    Closed(String),
}

impl Dialer {
    async fn connect(&self) -> std::io::Result<Conn> {
        let limits = Limits::default();
        let connect_tcp = || async {
            let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(self.server))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TCP connect timed out"))??;
            let _ = s.set_nodelay(true);
            Ok::<_, std::io::Error>(s)
        };
        match &self.transport {
            Transport::Udp => {
                let bind: SocketAddr = if self.server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
                let s = UdpSocket::bind(bind).await?;
                s.connect(self.server).await?;
                Ok(Conn::Udp(s))
            }
            Transport::Tcp => Ok(Conn::Tcp(connect_tcp().await?, StreamFramer::new(limits))),
            Transport::Tls { .. } => {
                let tcp = connect_tcp().await?;
                let connector = self.tls.clone().ok_or_else(|| std::io::Error::other("no TLS settings"))?;
                let name = rustls::pki_types::ServerName::IpAddress(self.server.ip().into());
                let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                Ok(Conn::Tls(Box::new(tls), StreamFramer::new(limits)))
            }
        }
    }
}

impl Conn {
    fn local(&self) -> std::io::Result<SocketAddr> {
        match self {
            Conn::Udp(s) => s.local_addr(),
            Conn::Tcp(s, _) => s.local_addr(),
            Conn::Tls(s, _) => s.get_ref().0.local_addr(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(bytes).await.map(|_| ()),
            Conn::Tcp(s, _) => s.write_all(bytes).await,
            Conn::Tls(s, _) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn recv(&mut self, buf: &mut [u8]) -> Incoming {
        let limits = Limits::default();
        let (n, framer) = match self {
            Conn::Udp(s) => {
                return match s.recv(buf).await {
                    // Garbage from the network is dropped.
                    Ok(n) => Incoming::Messages(parse_message(&buf[..n], Framing::Datagram, &limits).into_iter().collect()),
                    // ICMP port unreachable on a connected socket: the
                    // transaction's timeout reports the missing PBX.
                    Err(_) => Incoming::Messages(Vec::new()),
                };
            }
            Conn::Tcp(s, f) => (s.read(buf).await, f),
            Conn::Tls(s, f) => (s.read(buf).await, f),
        };
        match n {
            Ok(0) => Incoming::Closed("the PBX closed the connection".into()),
            Err(e) => Incoming::Closed(e.to_string()),
            Ok(n) => {
                framer.push(&buf[..n]);
                let mut out = Vec::new();
                let mut pong = false;
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(bytes))) => {
                            if let Ok(m) = parse_message(&bytes, Framing::Stream, &limits) {
                                out.push(m);
                            }
                        }
                        Ok(Some(Frame::Pong)) => pong = true,
                        // The PBX does not ping us; nothing to answer.
                        Ok(Some(Frame::Ping)) => {}
                        Ok(None) => break,
                        Err(e) => return Incoming::Closed(format!("framing lost: {e}")),
                    }
                }
                if out.is_empty() && pong {
                    Incoming::Pong
                } else {
                    Incoming::Messages(out)
                }
            }
        }
    }
}

async fn run(
    dialer: Dialer,
    conn: Conn,
    mut reg: Registration,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<AccountEvent>,
    state: Arc<Mutex<RegState>>,
) {
    let kind = dialer.transport.kind();
    let mut flow_id: u64 = 1;
    let mut conn = Some(conn);
    let mut tx = TransactionLayer::new(TimerConfig::default());
    let mut buf = vec![0u8; 65536];
    let mut closing: Option<oneshot::Sender<()>> = None;
    let new_keepalive = |now| (kind != TransportKind::Udp).then(|| KeepAlive::new(now, PING_INTERVAL, PONG_TIMEOUT, rand::random()));
    let mut keepalive = new_keepalive(Instant::now());
    if let Some(c) = &conn {
        register_over(&mut reg, c, kind);
    }
    loop {
        // Drain the engines: registration -> transactions -> flow.
        loop {
            let mut progressed = false;
            while let Some(out) = reg.poll_output() {
                progressed = true;
                match out {
                    RegOutput::Send(request) => {
                        if conn.is_none() {
                            // A retry is due but the flow is gone: open one.
                            match dialer.connect().await {
                                Ok(c) => {
                                    conn = Some(c);
                                    flow_id += 1;
                                    keepalive = new_keepalive(Instant::now());
                                }
                                Err(e) => {
                                    reg.flow_failed(Instant::now(), &format!("cannot reach the PBX: {e}"));
                                    continue;
                                }
                            }
                        }
                        let peer = Peer { addr: dialer.server, transport: kind, flow: flow_id };
                        tx.handle_input(Instant::now(), Input::SendRequest { request: *request, peer });
                    }
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
                    Output::Transmit { bytes, peer } => {
                        if peer.flow != flow_id {
                            continue; // for a flow that was replaced
                        }
                        let failed = match conn.as_mut() {
                            Some(c) => c.send(&bytes).await.err().map(|e| e.to_string()),
                            None => Some("no flow".to_string()),
                        };
                        if let Some(why) = failed {
                            if kind != TransportKind::Udp {
                                conn = None;
                                let _ = events.send(AccountEvent::FlowLost { reason: why.clone() });
                            }
                            reg.flow_failed(Instant::now(), &why);
                        }
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
        let wake = [reg.poll_timeout(), tx.poll_timeout(), keepalive.as_ref().filter(|_| conn.is_some()).map(|k| k.next_wake())].into_iter().flatten().min();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        let read = async {
            match conn.as_mut() {
                Some(c) => c.recv(&mut buf).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            incoming = read => match incoming {
                Incoming::Messages(msgs) => {
                    let peer = Peer { addr: dialer.server, transport: kind, flow: flow_id };
                    for m in msgs {
                        match m {
                            Message::Response(response) => tx.handle_input(Instant::now(), Input::Response { response, peer }),
                            Message::Request(request) => tx.handle_input(Instant::now(), Input::Request { request, peer }),
                        }
                    }
                }
                Incoming::Pong => {
                    if let Some(k) = keepalive.as_mut() {
                        k.pong();
                    }
                }
                Incoming::Closed(why) => {
                    let _ = events.send(AccountEvent::FlowLost { reason: why.clone() });
                    conn = None;
                    replace_flow(&dialer, &mut conn, &mut flow_id, &mut reg, kind, &why).await;
                    keepalive = new_keepalive(Instant::now());
                }
            },
            _ = sleep => {
                let now = Instant::now();
                tx.handle_input(now, Input::Timeout);
                reg.handle_timeout(now);
                match keepalive.as_mut().and_then(|k| k.poll(now)) {
                    Some(KeepAliveAction::SendPing) => {
                        if let Some(c) = conn.as_mut() {
                            if c.send(b"\r\n\r\n").await.is_err() {
                                conn = None;
                            }
                        }
                    }
                    Some(KeepAliveAction::Failed) => {
                        let why = "no keep-alive pong from the PBX";
                        let _ = events.send(AccountEvent::FlowLost { reason: why.into() });
                        conn = None;
                        replace_flow(&dialer, &mut conn, &mut flow_id, &mut reg, kind, why).await;
                        keepalive = new_keepalive(now);
                    }
                    None => {}
                }
            }
            cmd = commands.recv() => match cmd {
                Some(Command::NetworkChanged) => {
                    conn = None;
                    replace_flow(&dialer, &mut conn, &mut flow_id, &mut reg, kind, "network changed").await;
                    keepalive = new_keepalive(Instant::now());
                }
                Some(Command::Close(done)) => {
                    closing = Some(done);
                    reg.unregister(Instant::now());
                }
                None => return,
            },
        }
    }
}

fn register_over(reg: &mut Registration, conn: &Conn, kind: TransportKind) {
    match conn.local() {
        Ok(local) => reg.register(Instant::now(), Flow { transport: kind, local }),
        Err(e) => reg.handle_failure(Instant::now(), &e.to_string()),
    }
}

/// Open a new flow and register over it at once; if the PBX cannot be
/// reached, the registration's retry (with backoff) tries again later.
async fn replace_flow(dialer: &Dialer, conn: &mut Option<Conn>, flow_id: &mut u64, reg: &mut Registration, kind: TransportKind, why: &str) {
    match dialer.connect().await {
        Ok(c) => {
            *flow_id += 1;
            register_over(reg, &c, kind);
            *conn = Some(c);
        }
        Err(e) => {
            reg.flow_failed(Instant::now(), &format!("{why}; cannot reach the PBX: {e}"));
        }
    }
}
