//! The driver of one account: a flow to the PBX (UDP, TCP or TLS), the
//! RFC 3261 transaction layer (retransmissions, timeouts), the
//! [`Registration`] engine and the account's [`Call`] engines, in one
//! tokio task (`Driver`). The app talks to it through [`Account`]
//! (register, dial, answer, reject, hold, transfer, hang up, close) and
//! hears from it on an event channel. A call either carries audio through
//! an [`AudioPort`] (the SDK makes the SDP and runs the media, see
//! [`crate::media`]; over TLS its offers are SDES-SRTP, and an encrypted
//! offer is always answered encrypted) or SDP the app supplies.
//!
//! UDP uses a connected socket on purpose: the kernel then picks the source
//! address the route to the PBX takes, which is what Via and Contact must
//! name. TCP and TLS flows are kept alive with RFC 5626 CRLF pings; a flow
//! that breaks or stops answering is replaced and the account registers
//! over the new one at once. A network change ([`Account::network_changed`]
//! from a mobile shell, or [`Account::watch_network`] on a desktop) moves
//! the calls too: their media first (new sockets, same SRTP contexts),
//! then a new flow, registration and a re-INVITE with the new address.

use crate::call::{Call, CallEvent, CallOutput, Credentials, PhoneAddress};
use crate::audio::AudioPort;
use crate::keepalive::{KeepAlive, KeepAliveAction};
use crate::media::{self, CallMedia, MediaSockets};
use bytes::Bytes;
use crate::netwatch::NetWatch;
use std::collections::{HashMap, HashSet};
use crate::registration::{Flow, RegEvent, RegOutput, RegState, Registration, RegistrationConfig};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tsunagu_sip::{
    parse_message, response_to, Frame, Framing, Input, Limits, Message, Output, Peer, StreamFramer, TimerConfig, TransactionLayer, TransportKind, TxEvent, TxKey,
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
    /// A request from the PBX this version does not handle (answered 501).
    Unhandled { method: String },
    /// The flow to the PBX broke (closed, or no pong); a new one is opened.
    FlowLost { reason: String },
    /// A call is coming in: answer or reject it by its Call-ID.
    IncomingCall { call_id: String, from: String, offer: Bytes },
    /// Something happened in a call.
    Call { call_id: String, event: CallEvent },
    /// A call's media could not start (no common codec, no ports); the call
    /// is hung up or rejected.
    MediaFailed { call_id: String, reason: String },
}

enum Command {
    NetworkChanged,
    Push,
    WatchNetwork,
    Close(oneshot::Sender<()>),
    Dial { target: String, sdp: Bytes, reply: oneshot::Sender<Result<String, String>> },
    DialWithAudio { target: String, port: Arc<dyn AudioPort>, reply: oneshot::Sender<Result<String, String>> },
    Answer { call_id: String, sdp: Bytes },
    AnswerWithAudio { call_id: String, port: Arc<dyn AudioPort> },
    Reject { call_id: String, code: u16 },
    Hangup { call_id: String },
    Dtmf { call_id: String, digits: String },
    AnswerOffer { call_id: String, sdp: Option<Bytes> },
    Hold { call_id: String, on: bool },
    Mute { call_id: String, muted: bool },
    Record { call_id: String, on: bool },
    Transfer { call_id: String, target: String },
    TransferAttended { call_id: String, to_call_id: String },
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
        let registration = Registration::new(config.clone(), rand::random())?;
        let tls = match &transport {
            Transport::Tls { ca } => Some(tls_connector(ca)?),
            _ => None,
        };
        let dialer = Dialer { server, transport, tls };
        let conn = dialer.connect().await?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(RegState::Idle));
        tokio::spawn(run(dialer, conn, registration, config, rx, events, state.clone()));
        Ok((Account { commands, state }, events_rx))
    }

    pub fn state(&self) -> RegState {
        self.state.lock().map(|s| s.clone()).unwrap_or(RegState::Idle)
    }

    /// Watch the device's network in the driver itself (desktop Linux:
    /// rtnetlink, else a 1 s poll of the route to the PBX) and act as if
    /// [`Account::network_changed`] were called whenever the address the
    /// PBX is reached from changes. Mobile shells, which hear of network
    /// changes from the OS, call `network_changed` instead.
    pub fn watch_network(&self) {
        let _ = self.commands.send(Command::WatchNetwork);
    }

    /// A push notification woke the app (RFC 8599: the PBX pushes when a
    /// call waits for a device that registered with pn-* parameters):
    /// open a fresh flow (the one from before the app slept is likely
    /// dead) and register over it at once, so the PBX can hand over the
    /// waiting call, which then arrives as [`AccountEvent::IncomingCall`].
    /// The payload is not needed to do that; it is taken for the app's
    /// logs and for later payload formats.
    pub fn handle_push(&self, payload: &str) {
        let _ = payload;
        let _ = self.commands.send(Command::Push);
    }

    /// The device's network changed: register over a new flow now.
    pub fn network_changed(&self) {
        let _ = self.commands.send(Command::NetworkChanged);
    }

    /// Call `target` (an extension or a number as dialled), offering `sdp`.
    /// Returns the call's id (its Call-ID); its progress arrives as
    /// [`AccountEvent::Call`].
    pub async fn dial(&self, target: &str, sdp: Bytes) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Dial { target: target.to_string(), sdp, reply }).map_err(|_| "the account is closed".to_string())?;
        rx.await.map_err(|_| "the account is closed".to_string())?
    }

    /// Call `target` with audio: RTP on this device, the audio going to and
    /// from `port` (a sound device, or a file or tone for tests and tools).
    pub async fn dial_with_audio(&self, target: &str, port: Arc<dyn AudioPort>) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::DialWithAudio { target: target.to_string(), port, reply }).map_err(|_| "the account is closed".to_string())?;
        rx.await.map_err(|_| "the account is closed".to_string())?
    }

    /// Answer an incoming call with audio through `port`. An offer with no
    /// codec we do is rejected with 488.
    pub fn answer_with_audio(&self, call_id: &str, port: Arc<dyn AudioPort>) {
        let _ = self.commands.send(Command::AnswerWithAudio { call_id: call_id.to_string(), port });
    }

    /// Answer with SDP the app made itself (no media in the SDK).
    pub fn answer(&self, call_id: &str, sdp: Bytes) {
        let _ = self.commands.send(Command::Answer { call_id: call_id.to_string(), sdp });
    }

    pub fn reject(&self, call_id: &str, code: u16) {
        let _ = self.commands.send(Command::Reject { call_id: call_id.to_string(), code });
    }

    /// Put the far end of a call with audio on hold (`true`: a re-INVITE
    /// offering sendonly, RFC 3264 §8.4) or resume it (sendrecv). The
    /// answer arrives as [`CallEvent::OfferAnswered`]; a call that is not
    /// connected yet, or has an offer under way, gets
    /// [`CallEvent::OfferRefused`] with 491.
    pub fn hold(&self, call_id: &str, on: bool) {
        let _ = self.commands.send(Command::Hold { call_id: call_id.to_string(), on });
    }

    /// Answer a new offer in a call without SDK media (see
    /// [`CallEvent::RemoteOffer`]); `None` refuses it with 488.
    pub fn answer_offer(&self, call_id: &str, sdp: Option<Bytes>) {
        let _ = self.commands.send(Command::AnswerOffer { call_id: call_id.to_string(), sdp });
    }

    /// Send key presses in a call with audio (RFC 4733 events, in order).
    pub fn send_dtmf(&self, call_id: &str, digits: &str) {
        let _ = self.commands.send(Command::Dtmf { call_id: call_id.to_string(), digits: digits.to_string() });
    }

    /// Mute or unmute our side of a call with audio.
    pub fn mute(&self, call_id: &str, muted: bool) {
        let _ = self.commands.send(Command::Mute { call_id: call_id.to_string(), muted });
    }

    /// Ask the PBX to record `call_id` from now on, or to stop (on-demand
    /// recording; the PBX's policy decides whether it may).
    pub fn request_recording(&self, call_id: &str, on: bool) {
        let _ = self.commands.send(Command::Record { call_id: call_id.to_string(), on });
    }

    pub fn hangup(&self, call_id: &str) {
        let _ = self.commands.send(Command::Hangup { call_id: call_id.to_string() });
    }

    /// Blind transfer: ask the far end of `call_id` to call `target` (an
    /// extension or a SIP URI) instead (REFER). Progress arrives as
    /// [`CallEvent::TransferProgress`]; on success this call is hung up.
    /// Refused at once (`done`) with 400 for an empty or malformed target,
    /// 481 for an unknown call, 491 for one that cannot transfer now.
    pub fn transfer(&self, call_id: &str, target: &str) {
        let _ = self.commands.send(Command::Transfer { call_id: call_id.to_string(), target: target.to_string() });
    }

    /// Attended transfer: connect the far ends of two of our calls to each
    /// other (REFER to `call_id`'s far end, with Replaces naming
    /// `to_call_id`'s dialog, RFC 3891/5589); on success both calls are
    /// hung up.
    pub fn transfer_attended(&self, call_id: &str, to_call_id: &str) {
        let _ = self.commands.send(Command::TransferAttended { call_id: call_id.to_string(), to_call_id: to_call_id.to_string() });
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
    reg: Registration,
    config: RegistrationConfig,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<AccountEvent>,
    state: Arc<Mutex<RegState>>,
) {
    // RFC 4733 digits the calls' media tasks receive.
    let (digits_tx, digits_rx) = mpsc::unbounded_channel::<(String, char)>();
    let kind = dialer.transport.kind();
    let creds = Credentials { user: config.user.clone(), password: config.password.clone() };
    let mut driver = Driver {
        dialer,
        kind,
        config,
        creds,
        conn: Some(conn),
        flow_id: 1,
        tx: TransactionLayer::new(TimerConfig::default()),
        reg,
        keepalive: None,
        calls: Calls { digits: Some(digits_tx), ..Calls::default() },
        flow_of_branch: HashMap::new(),
        calls_flow: 1,
        watch: None,
        events,
        state,
        closing: None,
    };
    driver.keepalive = driver.new_keepalive();
    if let (Some(c), true) = (&driver.conn, driver.config.register) {
        register_over(&mut driver.reg, c, kind);
    }
    driver.run(commands, digits_rx).await;
}

/// The account task: its flow to the PBX, the transaction layer, the
/// registration and the calls. One per account; the app talks to it
/// through [`Account`] commands and hears from it on the event channel.
struct Driver {
    dialer: Dialer,
    kind: TransportKind,
    config: RegistrationConfig,
    creds: Credentials,
    conn: Option<Conn>,
    /// Numbers flows, so that what was meant for a replaced one is dropped.
    flow_id: u64,
    tx: TransactionLayer,
    reg: Registration,
    keepalive: Option<KeepAlive>,
    calls: Calls,
    /// Which flow each client transaction went out on.
    flow_of_branch: HashMap<String, u64>,
    /// The flow the calls' media and Contact are on now.
    calls_flow: u64,
    watch: Option<NetWatch>,
    events: mpsc::UnboundedSender<AccountEvent>,
    state: Arc<Mutex<RegState>>,
    /// Set by `close`: answered once the unregistration is done.
    closing: Option<oneshot::Sender<()>>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>, mut digits: mpsc::UnboundedReceiver<(String, char)>) {
        let mut buf = vec![0u8; 65536];
        loop {
            self.follow_flow().await;
            if self.drain().await.is_break() {
                return;
            }
            if let Ok(mut s) = self.state.lock() {
                *s = self.reg.state().clone();
            }
            let wake = self.next_wake();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            let conn = &mut self.conn;
            let read = async {
                match conn.as_mut() {
                    Some(c) => c.recv(&mut buf).await,
                    None => std::future::pending().await,
                }
            };
            let watch = &mut self.watch;
            let network_moved = async {
                match watch.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                incoming = read => self.on_incoming(incoming).await,
                _ = sleep => self.on_timer().await,
                Some((call_id, digit)) = digits.recv() => self.emit(AccountEvent::Call { call_id, event: CallEvent::Dtmf { digit } }),
                ip = network_moved => self.moved_to_network(Some(ip), "network changed").await,
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return };
                    if self.on_command(cmd).await.is_break() {
                        return;
                    }
                }
            }
        }
    }

    fn emit(&self, event: AccountEvent) {
        let _ = self.events.send(event);
    }

    fn new_keepalive(&self) -> Option<KeepAlive> {
        (self.kind != TransportKind::Udp).then(|| KeepAlive::new(Instant::now(), PING_INTERVAL, PONG_TIMEOUT, rand::random()))
    }

    fn peer(&self) -> Peer {
        Peer { addr: self.dialer.server, transport: self.kind, flow: self.flow_id }
    }

    fn next_wake(&self) -> Option<Instant> {
        let ping = self.keepalive.as_ref().filter(|_| self.conn.is_some()).map(|k| k.next_wake());
        [self.reg.poll_timeout(), self.tx.poll_timeout(), ping, self.calls.next_timeout()].into_iter().flatten().min()
    }

    /// Open a new flow (the old one is gone or useless) and register over
    /// it at once.
    async fn new_flow(&mut self, why: &str) {
        self.conn = None;
        replace_flow(&self.dialer, &mut self.conn, &mut self.flow_id, &mut self.reg, self.kind, why).await;
        self.keepalive = self.new_keepalive();
    }

    /// The device is on another network (`ip`: where the route to the PBX
    /// now starts, if known). Media first: audio resumes as soon as packets
    /// leave from the new address (the PBX's relay latches onto them),
    /// without waiting for the new SIP flow, whose TCP/TLS set-up can take
    /// a SYN retransmission (1 s) or more.
    async fn moved_to_network(&mut self, ip: Option<std::net::IpAddr>, why: &str) {
        if let Some(ip) = ip {
            self.calls.rebind_media(ip).await;
        }
        self.new_flow(why).await;
    }

    /// On a new flow (network change, broken flow, retry) the calls move
    /// onto it at once, and the offers that tell the far ends go out.
    /// Never a BYE because a network went away.
    async fn follow_flow(&mut self) {
        if self.calls_flow != self.flow_id {
            if let Some(flow) = current_flow(&self.conn, self.kind) {
                self.calls_flow = self.flow_id;
                self.calls.move_to(flow, &self.config.user).await;
            }
        }
        // Only on the flow the calls are on: an offer sent over a dead flow
        // would be lost, and the next flow sends it again anyway.
        if self.calls_flow == self.flow_id && self.conn.is_some() {
            self.calls.send_due_offers();
        }
    }

    /// Run the engines until none has anything more to do: registration
    /// -> transactions -> flow, and the calls' outputs. Breaks when the
    /// account is closed.
    async fn drain(&mut self) -> ControlFlow<()> {
        loop {
            let mut progressed = false;
            while let Some(out) = self.reg.poll_output() {
                progressed = true;
                self.on_registration_output(out).await?;
            }
            for (call_id, out) in self.calls.drain_outputs() {
                progressed = true;
                self.on_call_output(call_id, out).await;
            }
            while let Some(out) = self.tx.poll_output() {
                progressed = true;
                self.on_transaction_output(out).await;
            }
            if !progressed {
                return ControlFlow::Continue(());
            }
        }
    }

    async fn on_registration_output(&mut self, out: RegOutput) -> ControlFlow<()> {
        match out {
            RegOutput::Send(request) => {
                if self.conn.is_none() {
                    // A retry is due but the flow is gone: open one.
                    match self.dialer.connect().await {
                        Ok(c) => {
                            self.conn = Some(c);
                            self.flow_id += 1;
                            self.keepalive = self.new_keepalive();
                        }
                        Err(e) => {
                            self.reg.flow_failed(Instant::now(), &format!("cannot reach the PBX: {e}"));
                            return ControlFlow::Continue(());
                        }
                    }
                }
                if let Some(b) = request.core.top_branch() {
                    self.flow_of_branch.insert(b.to_string(), self.flow_id);
                }
                let peer = self.peer();
                self.tx.handle_input(Instant::now(), Input::SendRequest { request: *request, peer });
            }
            RegOutput::Event(ev) => {
                let done = matches!(ev, RegEvent::Unregistered);
                self.emit(AccountEvent::Registration(ev));
                if done {
                    if let Ok(mut s) = self.state.lock() {
                        *s = self.reg.state().clone();
                    }
                    if let Some(c) = self.closing.take() {
                        let _ = c.send(());
                        return ControlFlow::Break(());
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    async fn on_call_output(&mut self, call_id: String, out: CallOutput) {
        match out {
            CallOutput::Request(request) => {
                if let Some(b) = request.core.top_branch() {
                    self.calls.by_branch.insert(b.to_string(), call_id.clone());
                    self.flow_of_branch.insert(b.to_string(), self.flow_id);
                }
                let peer = self.peer();
                self.tx.handle_input(Instant::now(), Input::SendRequest { request: *request, peer });
            }
            CallOutput::Response { key, response } => self.tx.handle_input(Instant::now(), Input::SendResponse { key, response: *response }),
            CallOutput::Raw(bytes) => {
                if let Some(c) = self.conn.as_mut() {
                    let _ = c.send(&bytes).await;
                }
            }
            CallOutput::Event(event) => self.on_call_event(call_id, event).await,
        }
    }

    /// What the SDK does itself on a call's event (media, transfers),
    /// before the app hears of it.
    async fn on_call_event(&mut self, call_id: String, event: CallEvent) {
        match &event {
            CallEvent::Connected { sdp: Some(answer) } => self.start_dialled_media(&call_id, answer),
            CallEvent::OfferAnswered { sdp } => {
                if let Some(m) = self.calls.media.get_mut(&call_id) {
                    if let Err(e) = m.take_answer(sdp) {
                        self.emit(AccountEvent::MediaFailed { call_id: call_id.clone(), reason: e.to_string() });
                    }
                }
            }
            CallEvent::RemoteOffer { sdp } => {
                // Calls with audio in the SDK answer new offers themselves;
                // others leave it to the app (`Account::answer_offer`).
                if let Some(m) = self.calls.media.get_mut(&call_id) {
                    let answer = m.answer_reoffer(sdp).ok();
                    if let Some(call) = self.calls.map.get_mut(&call_id) {
                        call.answer_offer(Instant::now(), answer);
                    }
                }
            }
            CallEvent::TransferRequested { target } => self.carry_out_transfer(&call_id, target).await,
            _ => {}
        }
        self.calls.follow_transfers(&call_id, &event);
        let ended = matches!(event, CallEvent::Ended { .. });
        self.emit(AccountEvent::Call { call_id: call_id.clone(), event });
        if ended {
            self.calls.remove(&call_id);
        }
    }

    /// Our offer was answered: start the media on the sockets it named.
    fn start_dialled_media(&mut self, call_id: &str, answer: &[u8]) {
        let Some((sockets, port)) = self.calls.pending_media.remove(call_id) else { return };
        // A call made for a transfer takes the audio over from the call it
        // replaces.
        if let Some(old) = self.calls.transfers.get(call_id) {
            self.calls.media.remove(old);
        }
        match sockets.take_answer(answer).and_then(|m| CallMedia::start(sockets, m, port.clone())) {
            Ok(m) => self.calls.add_media(call_id, m, port),
            Err(e) => {
                self.emit(AccountEvent::MediaFailed { call_id: call_id.to_string(), reason: e.to_string() });
                if let Some(call) = self.calls.map.get_mut(call_id) {
                    call.hangup();
                }
            }
        }
    }

    /// The far end asked us (REFER) to call `target` in `call_id`'s place.
    /// With the SDK's audio we do: call the target on the same port, and
    /// report to the transferor as the new call goes (`follow_transfers`).
    async fn carry_out_transfer(&mut self, call_id: &str, target: &str) {
        let Some(port) = self.calls.ports.get(call_id).cloned() else { return };
        let (uri, replaces) = crate::call::split_refer_uri(target);
        let headers: Vec<(&'static str, String)> = replaces.into_iter().map(|r| ("Replaces", r)).collect();
        match self.dial_with_audio(&uri, port, headers).await {
            Ok(new_id) => {
                self.calls.transfers.insert(new_id, call_id.to_string());
            }
            Err(e) => {
                if let Some(call) = self.calls.map.get_mut(call_id) {
                    call.notify_transfer(503, &e, true);
                }
            }
        }
    }

    /// Place a call whose audio the SDK runs: RTP sockets on the flow's
    /// address, our offer (SDES-SRTP over TLS, where the key in the SDP is
    /// itself protected), and the port for when it is answered. Returns the
    /// new call's Call-ID.
    async fn dial_with_audio(&mut self, target: &str, port: Arc<dyn AudioPort>, headers: Vec<(&'static str, String)>) -> Result<String, String> {
        let flow = current_flow(&self.conn, self.kind).ok_or_else(|| "not connected to the PBX".to_string())?;
        let sockets = MediaSockets::bind(flow.local.ip()).await.map_err(|e| format!("no RTP ports: {e}"))?;
        let sockets = if self.kind == TransportKind::Tls { sockets.with_srtp() } else { sockets };
        let sdp = sockets.offer(rand::random::<u32>() as u64);
        let local = PhoneAddress { user: self.config.user.clone(), flow };
        let call = Call::dial_with(local, self.peer(), &self.config.domain, target, sdp, Some(self.creds.clone()), rand::random(), headers);
        let call_id = call.call_id().to_string();
        self.calls.map.insert(call_id.clone(), call);
        self.calls.pending_media.insert(call_id.clone(), (sockets, port));
        Ok(call_id)
    }

    async fn on_transaction_output(&mut self, out: Output) {
        match out {
            Output::Transmit { bytes, peer } => {
                if peer.flow != self.flow_id {
                    return; // for a flow that was replaced
                }
                let failed = match self.conn.as_mut() {
                    Some(c) => c.send(&bytes).await.err().map(|e| e.to_string()),
                    None => Some("no flow".to_string()),
                };
                if let Some(why) = failed {
                    if self.kind != TransportKind::Udp {
                        self.conn = None;
                        self.emit(AccountEvent::FlowLost { reason: why.clone() });
                    }
                    self.reg.flow_failed(Instant::now(), &why);
                }
            }
            Output::Event(TxEvent::Response { response, key }) => {
                if response.code >= 200 {
                    self.flow_of_branch.remove(&key.branch);
                }
                if response.core.cseq.method == "REGISTER" {
                    self.reg.handle_response(Instant::now(), &response);
                } else if let Some(call) = self.calls.map.get_mut(&response.core.call_id) {
                    call.handle_response(&response);
                }
            }
            Output::Event(TxEvent::Timeout { key }) => {
                let flow = self.flow_of_branch.remove(&key.branch);
                let call = self.calls.by_branch.remove(&key.branch);
                if flow.is_some_and(|f| f != self.flow_id) {
                    // A transaction of a flow that was replaced: its engine
                    // already started over on the new flow.
                    return;
                }
                match call {
                    Some(call_id) => {
                        if let Some(call) = self.calls.map.get_mut(&call_id) {
                            call.handle_failure();
                        }
                    }
                    None => self.reg.handle_failure(Instant::now(), "no answer from the PBX"),
                }
            }
            Output::Event(TxEvent::Request { key, request, peer }) => self.on_request(key, request, peer).await,
            Output::Event(_) => {}
        }
    }

    /// A request from the PBX: in a call, to the call; a new INVITE is a
    /// new incoming call; keep-alive OPTIONS get 200.
    async fn on_request(&mut self, key: TxKey, request: tsunagu_sip::Request, peer: Peer) {
        if let Some(call) = self.calls.map.get_mut(&request.core.call_id) {
            call.handle_request(Instant::now(), &request, key);
            return;
        }
        let code = match request.method.as_str() {
            "OPTIONS" => 200,
            "ACK" => return,
            "INVITE" if request.core.to.tag.is_none() => {
                // An attended transfer's new call taking the place of one
                // of ours (RFC 3891): it must name a call we have.
                let replaced = match request.headers.get_raw(&tsunagu_sip::Name::from("Replaces")).next().map(|v| v.to_string()) {
                    Some(r) => match self.calls.map.iter().find(|(_, c)| c.matches_replaces(&r) && *c.state() == crate::call::CallState::Connected) {
                        Some((id, _)) => Some(id.clone()),
                        None => {
                            let resp = response_to(&request, 481, Some("sdk"));
                            self.tx.handle_input(Instant::now(), Input::SendResponse { key, response: resp });
                            return;
                        }
                    },
                    None => None,
                };
                let Some(flow) = current_flow(&self.conn, self.kind) else { return };
                let local = PhoneAddress { user: self.config.user.clone(), flow };
                let call_id = request.core.call_id.clone();
                let from = request.core.from.user().unwrap_or_default();
                let call = Call::incoming(local, request, key, peer, rand::random());
                let offer = call.remote_offer().clone();
                self.calls.map.insert(call_id.clone(), call);
                self.emit(AccountEvent::IncomingCall { call_id: call_id.clone(), from, offer });
                if let Some(old) = replaced {
                    // The replacing call is answered at once with the
                    // replaced call's audio (the user already talks to
                    // this party), and the replaced call ends.
                    if let Some(port) = self.calls.ports.get(&old).cloned() {
                        self.calls.media.remove(&old);
                        self.answer_with_audio(&call_id, port).await;
                    }
                    if let Some(c) = self.calls.map.get_mut(&old) {
                        c.hangup();
                    }
                }
                return;
            }
            "INVITE" | "BYE" | "CANCEL" => 481,
            m => {
                self.emit(AccountEvent::Unhandled { method: m.to_string() });
                501
            }
        };
        let resp = response_to(&request, code, Some("sdk"));
        self.tx.handle_input(Instant::now(), Input::SendResponse { key, response: resp });
    }

    async fn on_incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Messages(msgs) => {
                let peer = self.peer();
                for m in msgs {
                    match m {
                        Message::Response(response) => self.tx.handle_input(Instant::now(), Input::Response { response, peer }),
                        Message::Request(request) => self.tx.handle_input(Instant::now(), Input::Request { request, peer }),
                    }
                }
            }
            Incoming::Pong => {
                if let Some(k) = self.keepalive.as_mut() {
                    k.pong();
                }
            }
            Incoming::Closed(why) => {
                self.emit(AccountEvent::FlowLost { reason: why.clone() });
                self.new_flow(&why).await;
            }
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        self.tx.handle_input(now, Input::Timeout);
        self.reg.handle_timeout(now);
        for call in self.calls.map.values_mut() {
            call.handle_timeout(now);
        }
        self.calls.hang_up_due(now);
        match self.keepalive.as_mut().and_then(|k| k.poll(now)) {
            Some(KeepAliveAction::SendPing) => {
                if let Some(c) = self.conn.as_mut() {
                    if c.send(b"\r\n\r\n").await.is_err() {
                        self.conn = None;
                    }
                }
            }
            Some(KeepAliveAction::Failed) => {
                let why = "no keep-alive pong from the PBX";
                self.emit(AccountEvent::FlowLost { reason: why.into() });
                self.new_flow(why).await;
            }
            None => {}
        }
    }

    async fn on_command(&mut self, cmd: Command) -> ControlFlow<()> {
        match cmd {
            Command::NetworkChanged => {
                let ip = crate::netwatch::route_source(self.dialer.server);
                self.moved_to_network(ip, "network changed").await;
            }
            Command::Push => self.new_flow("woken by a push").await,
            Command::WatchNetwork => {
                let server = self.dialer.server;
                self.watch.get_or_insert_with(|| NetWatch::new(server));
            }
            Command::Close(done) => return self.close(done).await,
            Command::Dial { target, sdp, reply } => {
                let placed = match current_flow(&self.conn, self.kind) {
                    Some(flow) => {
                        let local = PhoneAddress { user: self.config.user.clone(), flow };
                        let call = Call::dial(local, self.peer(), &self.config.domain, &target, sdp, Some(self.creds.clone()), rand::random());
                        let call_id = call.call_id().to_string();
                        self.calls.map.insert(call_id.clone(), call);
                        Ok(call_id)
                    }
                    None => Err("not connected to the PBX".to_string()),
                };
                let _ = reply.send(placed);
            }
            Command::DialWithAudio { target, port, reply } => {
                let placed = self.dial_with_audio(&target, port, Vec::new()).await;
                let _ = reply.send(placed);
            }
            Command::AnswerWithAudio { call_id, port } => self.answer_with_audio(&call_id, port).await,
            Command::Answer { call_id, sdp } => {
                if let Some(call) = self.calls.map.get_mut(&call_id) {
                    call.answer(Instant::now(), sdp);
                }
            }
            Command::Reject { call_id, code } => {
                if let Some(call) = self.calls.map.get_mut(&call_id) {
                    call.reject(code);
                }
            }
            Command::Hold { call_id, on } => {
                let direction = if on { tsunagu_sip::sdp::Direction::SendOnly } else { tsunagu_sip::sdp::Direction::SendRecv };
                let sent = match (self.calls.media.get_mut(&call_id), self.calls.map.get_mut(&call_id)) {
                    (Some(m), Some(call)) if call.can_offer() => call.reinvite(m.offer(direction)),
                    _ => false,
                };
                if !sent {
                    // Not connected (with SDK audio) yet, or an offer is
                    // under way: refused like a glare, try again later.
                    self.emit(AccountEvent::Call { call_id, event: CallEvent::OfferRefused { code: 491 } });
                }
            }
            Command::AnswerOffer { call_id, sdp } => {
                if let Some(call) = self.calls.map.get_mut(&call_id) {
                    call.answer_offer(Instant::now(), sdp);
                }
            }
            Command::Dtmf { call_id, digits } => match (self.calls.media.get(&call_id), self.calls.map.get_mut(&call_id)) {
                (Some(m), _) if m.has_rfc4733() => digits.chars().for_each(|d| m.send_dtmf(d)),
                // The far end takes no RFC 4733 events: SIP INFO.
                (_, Some(call)) => digits.chars().filter(|d| d.is_ascii_digit() || "*#ABCDabcd".contains(*d)).for_each(|d| call.send_info_dtmf(d, 160)),
                _ => {}
            },
            Command::Record { call_id, on } => {
                if let Some(call) = self.calls.map.get_mut(&call_id) {
                    call.request_recording(on);
                }
            }
            Command::Transfer { call_id, target } => {
                let target = target.trim();
                if target.is_empty() || target.chars().any(|c| c.is_whitespace() || c == '<' || c == '>') {
                    // Nothing the far end could dial: refused here.
                    self.emit(AccountEvent::Call { call_id, event: CallEvent::TransferProgress { code: 400, done: true } });
                    return ControlFlow::Continue(());
                }
                let uri = if target.starts_with("sip:") || target.starts_with("sips:") { target.to_string() } else { format!("sip:{target}@{}", self.config.domain) };
                let sent = self.calls.map.get_mut(&call_id).is_some_and(|c| c.refer(&uri));
                self.referred(call_id, None, sent);
            }
            Command::TransferAttended { call_id, to_call_id } => {
                let refer_to = self.calls.map.get(&to_call_id).and_then(|c| c.replaces()).map(|(uri, id)| crate::call::attended_refer_uri(&uri, &id));
                let sent = match (refer_to, self.calls.map.get_mut(&call_id)) {
                    (Some(uri), Some(call)) => call.refer(&uri),
                    _ => false,
                };
                self.referred(call_id, Some(to_call_id), sent);
            }
            Command::Mute { call_id, muted } => {
                if let Some(m) = self.calls.media.get(&call_id) {
                    m.mute(muted);
                }
            }
            Command::Hangup { call_id } => {
                if let Some(call) = self.calls.map.get_mut(&call_id) {
                    call.hangup();
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// A REFER went out (or could not): remember what a success hangs up.
    /// Not sent: 481 for a call we do not have (or an unknown other call
    /// of an attended transfer), 491 for one that cannot refer now (not
    /// connected, or a REFER under way).
    fn referred(&mut self, call_id: String, joined: Option<String>, sent: bool) {
        if sent {
            self.calls.referring.insert(call_id, joined);
            return;
        }
        let known = self.calls.map.contains_key(&call_id) && joined.as_ref().is_none_or(|j| self.calls.map.contains_key(j));
        let code = if known { 491 } else { 481 };
        self.emit(AccountEvent::Call { call_id, event: CallEvent::TransferProgress { code, done: true } });
    }

    async fn answer_with_audio(&mut self, call_id: &str, port: Arc<dyn AudioPort>) {
        let Some(ip) = current_flow(&self.conn, self.kind).map(|f| f.local.ip()) else { return };
        let Some(offer) = self.calls.map.get(call_id).map(|c| c.remote_offer().clone()) else { return };
        let started = match MediaSockets::bind(ip).await {
            Ok(sockets) => sockets.answer(&offer, rand::random::<u32>() as u64).and_then(|(sdp, m)| CallMedia::start(sockets, m, port.clone()).map(|cm| (sdp, cm))),
            Err(e) => Err(media::MediaSetupError::Start(e.to_string())),
        };
        let Some(call) = self.calls.map.get_mut(call_id) else { return };
        match started {
            Ok((sdp, cm)) => {
                call.answer(Instant::now(), sdp);
                self.calls.add_media(call_id, cm, port);
            }
            Err(e) => {
                call.reject(488);
                self.emit(AccountEvent::MediaFailed { call_id: call_id.to_string(), reason: e.to_string() });
            }
        }
    }

    /// Hang up every call and unregister; the task ends when the PBX has
    /// confirmed (see `on_registration_output`). Without a registration,
    /// the BYEs go out and the task ends at once.
    async fn close(&mut self, done: oneshot::Sender<()>) -> ControlFlow<()> {
        for call in self.calls.map.values_mut() {
            call.hangup();
        }
        if self.config.register {
            self.closing = Some(done);
            self.reg.unregister(Instant::now());
            return ControlFlow::Continue(());
        }
        for (_, out) in self.calls.drain_outputs() {
            if let CallOutput::Request(request) = out {
                let peer = self.peer();
                self.tx.handle_input(Instant::now(), Input::SendRequest { request: *request, peer });
            }
        }
        while let Some(out) = self.tx.poll_output() {
            if let (Output::Transmit { bytes, .. }, Some(c)) = (out, self.conn.as_mut()) {
                let _ = c.send(&bytes).await;
            }
        }
        let _ = done.send(());
        ControlFlow::Break(())
    }
}

/// The account's calls, by Call-ID, and which call each client
/// transaction (by branch) belongs to, for timeouts.
#[derive(Default)]
struct Calls {
    map: HashMap<String, Call>,
    by_branch: HashMap<String, String>,
    /// Our offer's RTP sockets and the audio port, until the answer comes.
    pending_media: HashMap<String, (MediaSockets, Arc<dyn AudioPort>)>,
    /// Running media, stopped when dropped.
    media: HashMap<String, CallMedia>,
    /// Calls whose media moved to a new network but whose offer telling
    /// the far end could not go yet (not answered, or another offer under
    /// way): sent as soon as the call allows.
    reoffer_due: HashSet<String>,
    /// Each call's audio port, kept for a transfer's new call.
    ports: HashMap<String, Arc<dyn AudioPort>>,
    /// Calls we placed because the far end of another asked us to (REFER):
    /// new call -> the call it replaces.
    transfers: HashMap<String, String>,
    /// Calls we asked to transfer (REFER sent), with the call an attended
    /// transfer joins them to.
    referring: HashMap<String, Option<String>>,
    /// Where the media tasks report received digits.
    digits: Option<mpsc::UnboundedSender<(String, char)>>,
    /// Calls to hang up at a time (a transferred call the transferor has
    /// not ended).
    hangup_at: HashMap<String, Instant>,
}

/// How long a transferred call waits for the transferor's BYE.
const TRANSFEROR_BYE_WAIT: Duration = Duration::from_secs(2);

impl Calls {
    fn drain_outputs(&mut self) -> Vec<(String, CallOutput)> {
        let mut out = Vec::new();
        for (id, call) in self.map.iter_mut() {
            while let Some(o) = call.poll_output() {
                out.push((id.clone(), o));
            }
        }
        out
    }

    fn add_media(&mut self, call_id: &str, media: CallMedia, port: Arc<dyn AudioPort>) {
        if let Some(tx) = &self.digits {
            media.report_digits_to(call_id.to_string(), tx.clone());
        }
        self.media.insert(call_id.to_string(), media);
        self.ports.insert(call_id.to_string(), port);
    }

    /// Keep transfers going from the events of the calls involved: report
    /// a transfer call's progress to the transferor (NOTIFY), and hang up
    /// what a finished transfer leaves behind.
    fn follow_transfers(&mut self, call_id: &str, event: &CallEvent) {
        if let Some(old) = self.transfers.get(call_id).cloned() {
            let report = match event {
                CallEvent::Ringing => Some((180, "Ringing".to_string(), false)),
                CallEvent::Connected { .. } => Some((200, "OK".to_string(), true)),
                CallEvent::Ended { code, reason } => Some((if *code >= 300 { *code } else { 487 }, reason.clone(), true)),
                _ => None,
            };
            if let Some((code, reason, done)) = report {
                if let Some(call) = self.map.get_mut(&old) {
                    call.notify_transfer(code, &reason, done);
                    if code < 300 && done {
                        // Transferred: the transferor ends the old call
                        // once it reads our NOTIFY (RFC 5589); a BYE of
                        // ours now could overtake that NOTIFY on its way.
                        // If it does not, we end it a little later.
                        self.hangup_at.insert(old.clone(), Instant::now() + TRANSFEROR_BYE_WAIT);
                    }
                }
                if done {
                    self.transfers.remove(call_id);
                }
            }
        }
        if let CallEvent::TransferProgress { code, done: true } = event {
            if let Some(joined) = self.referring.remove(call_id) {
                if (200..300).contains(code) {
                    for id in std::iter::once(call_id.to_string()).chain(joined) {
                        if let Some(call) = self.map.get_mut(&id) {
                            call.hangup();
                        }
                    }
                }
            }
        }
    }

    /// The device is on a new flow: Via/Contact of every call name it, and
    /// media moves to sockets on the new address (same SRTP keys and
    /// contexts), announced by a re-INVITE.
    async fn move_to(&mut self, flow: Flow, user: &str) {
        for (call_id, call) in self.map.iter_mut() {
            call.handover(PhoneAddress { user: user.to_string(), flow: flow.clone() });
            // Our Contact changed: the far end must learn it (a target
            // refresh) even when the media address did not.
            if self.media.contains_key(call_id) || self.pending_media.contains_key(call_id) {
                self.reoffer_due.insert(call_id.clone());
            }
        }
        self.rebind_media(flow.local.ip()).await;
    }

    /// Move every call's media to sockets on `ip` (where the route to the
    /// PBX now starts), keeping keys and SRTP contexts; the re-INVITEs that
    /// tell the far end go once the calls can send them.
    async fn rebind_media(&mut self, ip: std::net::IpAddr) {
        for call_id in self.map.keys() {
            if let Some(m) = self.media.get_mut(call_id) {
                if m.local_ip() != ip {
                    if let Ok(sockets) = MediaSockets::bind(ip).await {
                        m.rebind(sockets);
                        self.reoffer_due.insert(call_id.clone());
                    }
                }
            } else if let Some((sockets, _)) = self.pending_media.get_mut(call_id) {
                // Not answered yet: media starts on the new address, and
                // the far end learns it by a new offer once connected.
                if let Ok(moved) = sockets.moved_to(ip).await {
                    *sockets = moved;
                    self.reoffer_due.insert(call_id.clone());
                }
            }
        }
    }

    /// Send the handover offers that are due, where the call allows now.
    fn send_due_offers(&mut self) {
        if self.reoffer_due.is_empty() {
            return;
        }
        let due: Vec<String> = self.reoffer_due.iter().cloned().collect();
        for call_id in due {
            let (Some(call), Some(m)) = (self.map.get_mut(&call_id), self.media.get_mut(&call_id)) else {
                if !self.map.contains_key(&call_id) {
                    self.reoffer_due.remove(&call_id);
                }
                continue;
            };
            if call.can_offer() && call.reinvite(m.current_offer()) {
                self.reoffer_due.remove(&call_id);
            }
        }
    }

    fn remove(&mut self, call_id: &str) {
        self.reoffer_due.remove(call_id);
        self.hangup_at.remove(call_id);
        self.ports.remove(call_id);
        self.referring.remove(call_id);
        self.map.remove(call_id);
        self.pending_media.remove(call_id);
        self.media.remove(call_id);
        self.by_branch.retain(|_, c| c != call_id);
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.map.values().filter_map(|c| c.poll_timeout()).chain(self.hangup_at.values().copied()).min()
    }

    /// Hang up the calls whose time has come (see `hangup_at`).
    fn hang_up_due(&mut self, now: Instant) {
        let due: Vec<String> = self.hangup_at.iter().filter(|(_, at)| **at <= now).map(|(id, _)| id.clone()).collect();
        for id in due {
            self.hangup_at.remove(&id);
            if let Some(call) = self.map.get_mut(&id) {
                call.hangup();
            }
        }
    }
}

fn current_flow(conn: &Option<Conn>, kind: TransportKind) -> Option<Flow> {
    conn.as_ref().and_then(|c| c.local().ok()).map(|local| Flow { transport: kind, local })
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
            if reg.config().register {
                register_over(reg, &c, kind);
            }
            *conn = Some(c);
        }
        Err(e) => {
            reg.flow_failed(Instant::now(), &format!("{why}; cannot reach the PBX: {e}"));
        }
    }
}
